"""The agents an evaluation can run, by name (``threadline eval --agent NAME``).

A factory takes an :class:`AgentSetup` and returns an object implementing
:class:`~threadline.agents.protocol.Agent`. It is called once per conversation
run, on that run's fresh store and systems, so nothing one scenario did (a
booking, a wrong postcode counted against a caller) leaks into the next.
Register another agent with :func:`register_agent`; ``--agent-option KEY=VALUE``
reaches it as ``setup.options`` (a model's URL, say), and what it opens (a
provider's connections) it pushes on ``setup.stack``, closed when the run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

from threadline.agents.configured import agent_for
from threadline.agents.protocol import Agent
from threadline.business import Business
from threadline.core.errors import ConfigurationError
from threadline.core.ports import Storage
from threadline.engine.conversations import Conversations
from threadline.identity.lockouts import Lockouts
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

AGENTS: dict[str, AgentFactory] = {}


def register_agent(name: str, factory: AgentFactory) -> None:
    """Make ``factory`` the agent ``--agent name`` evaluates."""
    AGENTS[name] = factory


def agent_factory(name: str) -> AgentFactory:
    """The factory registered as ``name``; ConfigurationError naming the known ones."""
    factory = AGENTS.get(name)
    if factory is None:
        known = ", ".join(sorted(AGENTS))
        raise ConfigurationError(f"unknown agent {name!r} (known: {known})")
    return factory


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
