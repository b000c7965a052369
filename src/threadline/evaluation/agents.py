"""The agents an evaluation can run, by name (``threadline eval --agent NAME``).

A factory takes an :class:`AgentSetup` and returns an object implementing
:class:`~threadline.agents.protocol.Agent`. It is called once per conversation
run, on that run's fresh store and systems, so nothing one scenario did (a
booking, a wrong postcode counted against a caller) leaks into the next.
Register another agent with :func:`register_agent`; ``--agent-option KEY=VALUE``
reaches it as ``setup.options`` (a model's URL, say), and what it opens (a
provider's connections) it pushes on ``setup.stack``, closed when the run ends.
An agent whose runs share something, as a service's turns share one model provider,
registers an opener too: called once per evaluation (:class:`EvaluationSetup`), it opens
what the runs share on a stack closed when the evaluation ends, and returns the factory
every run calls.

Two agents are registered:

- ``embedded``: the embedded agent alone, as the service runs it with no model.
- ``model``: the model-backed agent (:class:`~threadline.agents.model_agent.ModelAgent`)
  over one OpenAI-compatible provider for the evaluation, as a service has one. By
  default it asks the pack's test provider (:mod:`threadline.testing.pack_model`), a
  deterministic double served locally for the evaluation: that measures the model *path*
  (HTTP, redaction, tool rounds under the proof rules, approvals, guardrails, handovers,
  fallback), never a real model. Options: ``url=`` an OpenAI-compatible API to ask
  instead (a vLLM or Ollama server's ``.../v1``; its key is ``THREADLINE_MODEL_API_KEY``),
  ``model=`` the model's name there, ``retries=`` and ``timeout=`` (seconds) per request
  (default: the pack's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import SecretStr

from threadline.agents.configured import agent_for
from threadline.agents.protocol import Agent
from threadline.business import Business
from threadline.core.errors import ConfigurationError
from threadline.core.model import ModelProvider
from threadline.core.ports import Storage
from threadline.engine.conversations import Conversations
from threadline.identity.lockouts import Lockouts
from threadline.models import CircuitBreaker, OpenAICompatible
from threadline.settings import Settings
from threadline.systems import Systems


@dataclass(frozen=True, slots=True)
class AgentSetup:
    """What a factory builds an agent from: one conversation run's parts."""

    business: Business
    #: The pack's own systems (its tools and customer records), fresh for this run.
    systems: Systems
    #: The settings ``threadline eval`` read (THREADLINE_* from the environment).
    settings: Settings
    #: The run's event store (an embedded SQLite store of its own), and the engine over it
    #: (a model reads the conversation so far from it).
    store: Storage
    conversations: Conversations
    #: The suite's clock for this scenario: every turn happens at this moment.
    clock: Callable[[], datetime]
    #: Closed when the run ends: push what the agent opens (``stack.push_async_callback``).
    stack: AsyncExitStack
    #: ``--agent-option KEY=VALUE`` pairs, as given.
    options: Mapping[str, str] = field(default_factory=dict)


AgentFactory = Callable[[AgentSetup], Agent]


@dataclass(frozen=True, slots=True)
class EvaluationSetup:
    """What an opener builds an evaluation's shared parts from."""

    business: Business
    settings: Settings
    #: Closed when the evaluation ends, after its last run.
    stack: AsyncExitStack
    options: Mapping[str, str] = field(default_factory=dict)


#: Opens what every run of an evaluation shares; returns the factory each run calls.
AgentOpener = Callable[[EvaluationSetup], Awaitable[AgentFactory]]


@dataclass(frozen=True, slots=True)
class RegisteredAgent:
    """An agent ``--agent`` names: its factory, and its opener (None: the runs share
    nothing, every run calls the factory)."""

    factory: AgentFactory
    opener: AgentOpener | None = None


AGENTS: dict[str, RegisteredAgent] = {}


def register_agent(name: str, factory: AgentFactory, *, opener: AgentOpener | None = None) -> None:
    """Make ``factory`` the agent ``--agent name`` evaluates (opened by ``opener`` once per
    evaluation, if it has one)."""
    AGENTS[name] = RegisteredAgent(factory, opener)


def registered(name: str) -> RegisteredAgent:
    """The agent registered as ``name``; ConfigurationError naming the known ones."""
    agent = AGENTS.get(name)
    if agent is None:
        known = ", ".join(sorted(AGENTS))
        raise ConfigurationError(f"unknown agent {name!r} (known: {known})")
    return agent


def agent_factory(name: str) -> AgentFactory:
    """The factory registered as ``name`` (each run on its own); ConfigurationError naming
    the known ones."""
    return registered(name).factory


async def open_agent(name: str, setup: EvaluationSetup) -> AgentFactory:
    """The factory every run of an evaluation of ``name`` calls, what they share opened."""
    agent = registered(name)
    return agent.factory if agent.opener is None else await agent.opener(setup)


def embedded(setup: AgentSetup) -> Agent:
    """The embedded agent as the service builds it with no model configured. One-time
    codes need a notifier, which an evaluation has none of, so it offers none (as a
    service with notifiers off)."""
    if setup.options:
        named = ", ".join(setup.options)
        raise ConfigurationError(f"the embedded agent takes no options ({named})")
    lockouts = Lockouts(setup.store, clock=setup.clock)
    return agent_for(setup.systems, None, codes=None, lockouts=lockouts)


register_agent("embedded", embedded)

#: ``--agent-option`` keys the model agent reads.
MODEL_OPTIONS: Final = frozenset({"url", "model", "retries", "timeout"})
#: The name the pack's test provider answers as.
PACK_MODEL: Final = "pack-model"


def model(setup: AgentSetup) -> Agent:
    """The model-backed agent over a provider of this run's own, at the ``url`` option."""
    provider = _provider(setup.business, setup.settings, setup.options)
    setup.stack.push_async_callback(provider.close)
    return _model_agent(setup, provider)


async def open_model(setup: EvaluationSetup) -> AgentFactory:
    """The model agent's factory for an evaluation: one provider for every run, asking the
    ``url`` option's server, else the pack's test provider served for the evaluation."""
    options = dict(setup.options)
    unknown = sorted(set(options) - MODEL_OPTIONS)
    if unknown:
        known = ", ".join(sorted(MODEL_OPTIONS))
        raise ConfigurationError(f"the model agent takes {known}; not {', '.join(unknown)}")
    key = setup.settings.model_api_key
    if "url" not in options:
        from threadline.testing.live import LiveServer
        from threadline.testing.pack_model import PackModel

        served = PackModel(setup.business, options.get("model", PACK_MODEL))
        server = await setup.stack.enter_async_context(LiveServer(served.app))
        options["url"] = f"{server.http}/v1"
        key = None  # a key is for the server it was issued by
    provider = _provider(setup.business, setup.settings, options, key)
    setup.stack.push_async_callback(provider.close)
    return lambda run: _model_agent(run, provider)


def _provider(
    business: Business, settings: Settings, options: Mapping[str, str],
    key: SecretStr | None = None,
) -> OpenAICompatible:  # fmt: skip
    """The provider the options name: its url and model, the pack's timeout and retries
    unless the options say others. ConfigurationError for options it cannot use."""
    url = options.get("url")
    if not url:
        raise ConfigurationError("the model agent needs --agent-option url=... here")
    spec = business.pack.model
    try:
        timeout = float(options.get("timeout", spec.timeout if spec else 20.0))
        retries = int(options.get("retries", spec.retries if spec else 2))
    except ValueError:
        raise ConfigurationError("the model agent's timeout is seconds, its retries a whole"
                                 " number") from None  # fmt: skip
    if timeout <= 0 or retries < 0:
        raise ConfigurationError("the model agent's timeout and retries may not be negative")
    name = options.get("model") or (spec.model if spec and spec.model else PACK_MODEL)
    try:
        return OpenAICompatible(url, name, key, timeout=timeout, retries=retries,
                                breaker=CircuitBreaker(failures=3, cooldown=30.0))  # fmt: skip
    except ValueError as exc:
        raise ConfigurationError(f"the model agent's url: {exc}") from None


def _model_agent(setup: AgentSetup, provider: ModelProvider) -> Agent:
    """The model-backed agent as the service builds it with a model configured."""
    lockouts = Lockouts(setup.store, clock=setup.clock)
    return agent_for(setup.systems, provider, codes=None, lockouts=lockouts,
                     conversations=setup.conversations)  # fmt: skip


register_agent("model", model, opener=open_model)
