"""The command path on both stores: a command is authorised on the state it is appended
after, a conflict is judged again on the fresh state, an If-Match conflict is reported,
and a repeated command answers with its first result."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.errors import ConflictError
from threadline.core.events import Actor, Event, EventRecord
from threadline.engine.commands import AppendEvents, Commands
from threadline.engine.conversations import Conversations
from threadline.engine.desk import Reply, Resolve
from threadline.security import Forbidden, Principal
from threadline.settings import Settings
from threadline.testing.factories import CODEC

CID = "conv-race"
MAYA = Actor("customer", "cus-maya")
ROUTER = Actor("system", "router")
NOW = datetime.now(UTC)


def agent(subject: str, *queues: str) -> Principal:
    return Principal(subject=subject, kind="agent", scopes=frozenset({"agent"}), token_id="t",
                     issued_at=NOW, expires_at=NOW + timedelta(hours=1),
                     queues=frozenset(queues))  # fmt: skip


SUPERVISOR = Principal(subject="sup-sam", kind="supervisor", scopes=frozenset({"supervisor"}),
                       token_id="t", issued_at=NOW,
                       expires_at=NOW + timedelta(hours=1))  # fmt: skip
ANA = agent("agent-ana", "orders")


def event(type_: str, payload: dict[str, Any], key: str, actor: Actor = ROUTER, **kw: Any) -> Event:
    kw.setdefault("channel", "system")
    return Event(CID, type_, payload, actor=actor, customer_id="cus-maya", idempotency_key=key,
                 **kw)  # fmt: skip


def handed_to(agent_id: str, queue: str, n: int) -> list[Event]:
    """The router hands the conversation to ``agent_id`` in ``queue``, who takes it."""
    offer = {"offer_id": f"offer-{n}", "agent_id": agent_id, "queue": queue,
             "expires_at": (NOW + timedelta(minutes=5)).isoformat()}  # fmt: skip
    return [
        event("handoff.requested", {"queue": queue, "reason_code": "customer_request"},
              f"ask-{n}"),
        event("handoff.offered", offer, f"offer-{n}"),
        event("handoff.accepted", {"offer_id": f"offer-{n}", "agent_id": agent_id},
              f"take-{n}", Actor("human", agent_id)),
    ]  # fmt: skip


def opening() -> list[Event]:
    return [
        event("conversation.started", {"origin": "chat"}, "start", MAYA, channel="chat"),
        event("leg.started", {"leg_id": "chat-1", "channel": "chat"}, "leg", MAYA,
              channel="chat", leg_id="chat-1"),
        event("message.received", {"text": "a person, please"}, "ask", MAYA, channel="chat",
              leg_id="chat-1"),
    ]  # fmt: skip


class Interloper:
    """A store that, just before the first append ``when`` matches, appends ``events``
    itself, as another process would; everything else is forwarded."""

    def __init__(self, store: Any, when: Callable[[list[EventRecord]], bool]) -> None:
        self._store = store
        self._when = when
        self.injected: list[Event] = []
        self.appends = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def before(self, events: list[Event]) -> None:
        self.injected = events

    async def append(self, conversation_id: str, records: list[EventRecord], *args: Any) -> Any:
        if self.injected and self._when(records):
            self.appends += 1
            injected, self.injected = self.injected, []
            await self._store.append(conversation_id, [CODEC.encode(e) for e in injected])
        return await self._store.append(conversation_id, records, *args)


def by(actor_id: str) -> Callable[[list[EventRecord]], bool]:
    return lambda records: any(r.actor_id == actor_id for r in records)


async def types_of(store: Any, actor_id: str | None = None) -> list[str]:
    records = await store.read(CID)
    return [r.type for r in records if actor_id is None or r.actor_id == actor_id]


@pytest.fixture
async def setting(any_store) -> tuple[Interloper, Commands]:
    store = Interloper(any_store, by("agent-ana"))
    conversations = Conversations(store)
    await conversations.record(CID, [*opening(), *handed_to("agent-ana", "orders", 1)])
    return store, Commands(conversations)


async def test_a_reply_authorised_before_a_transfer_is_refused_after_it(setting) -> None:
    store, commands = setting
    store.before([
        event("handoff.requested", {"queue": "billing", "reason_code": "transfer"}, "move",
              Actor("human", "sup-sam")),
        *handed_to("agent-ben", "billing", 2)[1:],
    ])  # fmt: skip
    with pytest.raises(Forbidden, match=r"queue billing"):
        await commands.execute(Reply(CID, "reply-1", "Ana here, one moment"), ANA)
    assert store.appends == 1  # it was judged on the old state, and the append conflicted
    assert "message.sent" not in await types_of(store, "agent-ana")
    state = await commands.conversations.rehydrate(CID)
    assert state.assignee == "agent-ben"


async def test_a_conflict_is_judged_again_and_appended_after_the_news(setting) -> None:
    store, commands = setting
    store.before([event("message.received", {"text": "still there?"}, "again", MAYA,
                        channel="chat", leg_id="chat-1")])  # fmt: skip
    executed = await commands.execute(Reply(CID, "reply-1", "Yes, one moment"), ANA)
    assert store.appends == 1
    assert executed.state.messages_in == 2  # decided on the state with the customer's news
    records = await store.read(CID)
    assert [r.type for r in records][-2:] == ["message.received", "message.sent"]
    assert executed.last_seq == records[-1].seq


async def test_a_refusal_on_the_kept_state_is_judged_again_on_the_store(setting) -> None:
    store, commands = setting
    # Another process hands the conversation over to Ben, behind this one's back.
    await store.append(CID, [CODEC.encode(e) for e in [
        event("handoff.requested", {"queue": "orders", "reason_code": "transfer"}, "move",
              Actor("human", "sup-sam")),
        *handed_to("agent-ben", "orders", 2)[1:],
    ]])  # fmt: skip
    ben = agent("agent-ben", "orders")
    executed = await commands.execute(Reply(CID, "reply-ben", "Ben here"), ben)
    assert not executed.duplicate
    assert (await types_of(store, "agent-ben"))[-1] == "message.sent"


async def test_a_stale_if_match_is_reported_not_retried(setting) -> None:
    store, commands = setting
    seq = (await commands.conversations.rehydrate(CID)).seq
    note = event("note.added", {"author_id": "sup-sam", "text": "checking"}, "note-1",
                 Actor("human", "sup-sam"))  # fmt: skip
    with pytest.raises(ConflictError) as stale:
        await commands.execute(AppendEvents.of([note]), SUPERVISOR, expected_seq=seq - 1)
    assert stale.value.actual == seq
    # Pinned to the seq it saw, a command that loses a race is refused, not retried.
    moved = Interloper(store, by("sup-sam"))
    moved.before([event("message.received", {"text": "hello?"}, "hello", MAYA,
                        channel="chat", leg_id="chat-1")])  # fmt: skip
    pinned = Commands(Conversations(moved))
    with pytest.raises(ConflictError):
        await pinned.execute(AppendEvents.of([note]), SUPERVISOR, expected_seq=seq)
    assert "note.added" not in await types_of(store)


async def test_a_repeat_answers_with_the_first_result_after_the_state_moved_on(setting) -> None:
    store, commands = setting
    first = await commands.execute(Reply(CID, "reply-1", "Hi Maya"), ANA)
    resolved = await commands.execute(Resolve(CID, "done-1", "answered"), ANA)
    again = await commands.execute(Reply(CID, "reply-1", "Hi Maya"), ANA)
    assert again.duplicate and again.last_seq == first.last_seq < resolved.last_seq
    assert (await types_of(store, "agent-ana")).count("message.sent") == 1


# -- the desk API: the race on a real service ------------------------------------------


async def test_the_desk_refuses_a_reply_that_lost_the_conversation_to_a_transfer(
    any_store,
) -> None:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        conversations = service_of(app).conversations
        await conversations.record(CID, [*opening(), *handed_to("agent-ana", "orders", 1)])
        store = Interloper(conversations.store, by("agent-ana"))
        conversations.store = store
        store.before([
            event("handoff.requested", {"queue": "billing", "reason_code": "transfer"},
                  "move", Actor("human", "sup-sam")),
            *handed_to("agent-ben", "billing", 2)[1:],
        ])  # fmt: skip
        ana = bearer(app, "agent-ana", "agent", queues=["orders"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(
                f"/conversations/{CID}/reply", json={"text": "Ana here"}, headers=ana
            )
        assert response.status_code == 403, response.text
        assert store.appends == 1
        assert "message.sent" not in await types_of(any_store, "agent-ana")
