"""``threadline demo``: the product, serving a business pack, plays the reference journey.

The service runs for real in this process (uvicorn on a loopback port; a fresh
SQLite store and data folder unless ``THREADLINE_STORE`` names one), with
Twilio's REST API faked in-process, and the journey's people play their parts
through its public interfaces (:mod:`threadline.testing.journey`). Then the
conversation is read back from the log. Nothing in it is a pre-written event:
what the bot says comes from the pack and its systems.

The bot runs in-process (unless ``THREADLINE_BOT_PROCESS`` says otherwise): it is
the same agent as in the worker ``serve`` starts, and one process starts faster
and leaves nothing behind when the demo ends.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import structlog
import websockets
import yaml
from pydantic import SecretStr

from threadline.core.conversation import ConversationState
from threadline.core.errors import ConfigurationError
from threadline.core.events import Event, utcnow
from threadline.settings import Settings
from threadline.testing.people import DemoStopped

if TYPE_CHECKING:
    from threadline.business import Business
    from threadline.core.ports import Storage


@dataclass(frozen=True)
class Script:
    """The demo's script: who the customer is and what she does and says, read from the
    pack's ``demo.yaml``. Her phone number and the answer to the pack's knowledge check (her
    postcode) come from the business's records of her, the staff and stores from the pack,
    and every reply from the service."""

    customer_id: str
    problem: str  # her first chat message
    come_in: str  # asking to pick it up at a store
    knowledge: str  # "... {answer}": the answer to the pack's knowledge check, on the phone
    person: str  # asking for a person, on the phone
    outcome: str  # what the associate resolves with
    note: str  # the associate's note on resolving

    @classmethod
    def of_pack(cls, pack: Path) -> Script:
        """The journey the pack at ``pack`` describes in its ``demo.yaml``."""
        path = pack / SCRIPT_FILE
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError:
            raise ConfigurationError(f"{path}: the pack has no demo journey ({SCRIPT_FILE})"
                                     ) from None  # fmt: skip
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ConfigurationError(f"{path}: a demo journey names exactly "
                                     f"{', '.join(sorted(names))}")  # fmt: skip
        return cls(**{k: str(v) for k, v in data.items()})


#: The file in a pack that holds the journey the demo plays.
SCRIPT_FILE = "demo.yaml"
#: The width of the timeline's detail column.
DETAIL = 90


def demo_pack(given: Path | None, settings: Settings) -> Path:
    """The pack to serve: ``--business``, else ``THREADLINE_BUSINESS``."""
    pack = given or settings.business
    if pack is not None:
        return pack
    raise ConfigurationError(
        "the demo needs a business pack: pass --business PATH or set THREADLINE_BUSINESS"
        " (the example packs are in examples/)"
    )


def refusal() -> str | None:
    """Why the demo cannot play its phone call here, or None."""
    from threadline.channels import voice
    from threadline.testing.voice import espeak_missing

    hint = voice.missing() or espeak_missing()
    return f"the demo makes a phone call: {hint}" if hint else None


@contextmanager
def demo_settings(
    settings: Settings, pack: Path, environ: Mapping[str, str] | None = None
) -> Iterator[tuple[Settings, str]]:
    """``settings`` for the demo's own service, and where its store is said to be: the pack,
    a fresh store and data folder (unless THREADLINE_STORE names a store), fresh secrets for
    its tokens and its phone line."""
    env = os.environ if environ is None else environ
    with tempfile.TemporaryDirectory(prefix="threadline-demo-") as folder:
        update: dict[str, object] = {
            "business": pack,
            "token_secret": SecretStr(secrets.token_urlsafe(32)),
            "token_key_file": None,
            "twilio_auth_token": SecretStr(secrets.token_urlsafe(24)),
            "twilio_account_sid": "AC" + secrets.token_hex(16),
            "public_url": None,  # the phone network reaches the loopback port
        }
        if "THREADLINE_STORE" in env:  # named by scheme only: a URL may carry a password
            where = f"the store THREADLINE_STORE names ({settings.store.partition(':')[0]})"
        else:
            update |= {"store": f"sqlite:///{folder}/threadline.db", "data_dir": Path(folder)}
            where = "a fresh SQLite file in a temporary folder"
        yield settings.model_copy(update=update), where


@contextmanager
def service_logs_to_stderr() -> Iterator[None]:
    """While the demo runs, the service's own log says warnings only, on stderr."""
    before = structlog.get_config()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    try:
        yield
    finally:
        structlog.configure(**before)


async def run_demo(pack: Path | None, settings: Settings) -> str:
    """Serve the pack, play the reference journey, print it and its timeline; its id."""
    from threadline.business import load
    from threadline.security.master_key import key_provider_from_settings
    from threadline.store import encrypt, open_store

    path = demo_pack(pack, settings)
    business = load(path)  # a bad pack stops here, every problem said
    script = Script.of_pack(path)
    reason = refusal()
    if reason is not None:
        raise ConfigurationError(reason)
    if settings.stt == "off":
        raise ConfigurationError("the demo speaks on its call: THREADLINE_STT must not be off")
    original = settings
    with demo_settings(settings, path) as (settings, where), service_logs_to_stderr():
        store = await open_store(settings.store)
        try:
            if settings.store == original.store:
                # A store the operator named keeps the master key `threadline replay` reads
                # it back with, not one derived from the demo's throwaway token secret.
                encrypt(store, key_provider_from_settings(original))
            return await _serve_and_play(settings, store, business, script,
                                         f"{path}; store: {where}")  # fmt: skip
        except (httpx.HTTPError, websockets.WebSocketException) as exc:
            raise DemoStopped(f"the demo stopped: {type(exc).__name__}: {exc}") from None
        except DemoStopped as exc:
            raise DemoStopped(f"the demo stopped: {exc}") from None
        finally:
            await store.close()


async def _serve_and_play(
    settings: Settings, store: Storage, business: Business, script: Script, described: str
) -> str:
    from threadline.api.app import create_app
    from threadline.api.deps import service_of
    from threadline.testing.journey import Journey, Line
    from threadline.testing.live import LiveServer
    from threadline.testing.people import Narration
    from threadline.testing.twilio import FakeTwilio

    twilio = FakeTwilio()
    async with LiveServer(twilio.app()) as network:
        settings = settings.model_copy(update={"twilio_api_base": network.http})
        async with LiveServer(create_app(settings, store)) as served:
            service = service_of(served.app)
            bot = "a worker process" if settings.bot_process else "in-process"
            print(f"Threadline demo: {business.name} on {served.http}\n  pack: {described}\n"
                  f"  bot: {bot}; phone network: played here, with a fake of Twilio's REST API\n",
                  flush=True)  # fmt: skip
            assert settings.twilio_auth_token is not None and settings.twilio_account_sid
            line = Line(served.http, served.ws, service.tokens, service.systems.customers,
                        twilio, settings.twilio_auth_token.get_secret_value(),
                        settings.twilio_account_sid)  # fmt: skip
            started = utcnow()
            journey = Journey(line, business, script, Narration())
            try:
                await journey.play()
            finally:  # what happened is shown, also when the journey stopped
                if journey.conversation_id:
                    timeline = await service.conversations.timeline(journey.conversation_id)
                    print(f"\nconversation {journey.conversation_id}  (read back from the log)\n")
                    print(render_timeline(timeline, started), flush=True)
            state = await service.conversations.rehydrate(journey.conversation_id)
            print(f"\n{render_state(state)}")
            customer = script.customer_id
            print(f"conversations of {customer}: {len(service.index.of_customer(customer))}")
            return journey.conversation_id


def describe(event: Event) -> str:
    """One line of what an event says."""
    p = event.payload
    text = p.get("text") or p.get("intent") or p.get("outcome") or p.get("origin")
    if event.type == "slot.filled":
        text = f"{p['name']} = {p['value']}"
    elif event.type.startswith("leg."):
        text = p.get("reason") or p.get("location") or p.get("channel")
    elif event.type == "action.completed":
        text = "done"
    elif event.type.startswith("action."):
        text = p.get("tool") or p.get("action") or p.get("error") or p["action_id"]
    elif event.type == "message.heard":
        text = f"{p['played_ms'] / 1000:.1f} s played" + ("" if p["complete"] else ", cut short")
    elif event.type == "identity.linked":
        text = f"{p['kind']} {'verified' if p['verified'] else 'unverified'} ({p['method']})"
    elif event.type.startswith("handoff."):
        text = p.get("agent_id") or p.get("queue")
    text = " ".join(str(text or "").split())
    return text if len(text) <= DETAIL else text[: DETAIL - 1] + "…"


def render_timeline(events: Sequence[Event], start: datetime | None = None) -> str:
    """The events, one a line, with the seconds since ``start`` (else the first event)."""
    origin = start or (events[0].occurred_at if events else utcnow())
    lines = [f"{'seq':>3}  {'time':>7}  {'channel':<9} {'actor':<15} {'event':<22} detail"]
    for e in events:
        at = (e.occurred_at - origin).total_seconds()
        lines.append(f"{e.seq:>3}  {at:>6.1f}s  {e.channel:<9} {e.actor.id[:15]:<15}"
                     f" {e.type:<22} {describe(e)}")  # fmt: skip
    return "\n".join(lines)


def render_state(state: ConversationState) -> str:
    channels = ", ".join(sorted({leg["channel"] for leg in state.legs.values()}))
    slots = ", ".join(f"{k}={v['value']}" for k, v in state.slots.items())
    identities = ", ".join(f"{kind} ({'verified' if verified else 'unverified'})"
                           for kind, verified in state.identities.items())  # fmt: skip
    return "\n".join([
        f"status      {state.status} ({state.outcome})",
        f"legs        {len(state.legs)} across {channels}; live now: {len(state.live_legs)}",
        f"slots       {slots}",
        f"assignee    {state.assignee or '-'}; identities {identities or '-'}",
        "summary     " + "\n            ".join(state.summary),
    ])  # fmt: skip
