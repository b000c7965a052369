"""Conversations recorded straight through the engine, for the listing and directory tests.

Nothing here sends a customer message, so the bot stays quiet; with no agent
available the router offers nothing. What the tests record is what they read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event, utcnow
from threadline.settings import Settings

PROBLEM = "application/problem+json"
ANA = Actor("human", "agent-ana")


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient

    def token(self, subject: str, scope: str, **claims: object) -> dict[str, str]:
        return bearer(self.app, subject, scope, **claims)

    def agent(self, subject: str, *queues: str) -> dict[str, str]:
        return self.token(subject, "agent", queues=list(queues))

    @property
    def admin(self) -> dict[str, str]:
        return self.token("root", "admin")

    @property
    def sam(self) -> dict[str, str]:
        return self.token("sup-sam", "supervisor")

    async def record(self, cid: str, *steps: Event | Iterable[Event], settle: bool = True) -> None:
        """Record the events; with ``settle``, wait until the index has them too.

        On PostgreSQL ``read_all`` holds an event back while an older transaction
        in the cluster is still open, so the index may briefly lag a commit.
        """
        events: list[Event] = []
        for step in steps:
            events.extend([step] if isinstance(step, Event) else step)
        result = await service_of(self.app).conversations.record(cid, events)
        index = service_of(self.app).index
        async with asyncio.timeout(10):
            while settle and (
                (entry := index.get(cid)) is None or entry.state.seq < result.last_seq
            ):
                await asyncio.sleep(0.01)
                await index.catch_up()

    async def get(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return await self.client.get(path, headers=headers, params=params)


@asynccontextmanager
async def serve(store: Any) -> AsyncIterator[Service]:
    """The app on ``store``, started and stopped like the real service."""
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Service(app, client)


def _at(at: datetime | None) -> datetime:
    return at or utcnow()


def started(
    cid: str, customer: str = "cus-maya", origin: str = "chat", at: datetime | None = None
) -> list[Event]:
    """A conversation opened by ``customer`` on ``origin``, with that leg live."""
    who = Actor("customer", customer)
    leg = {"leg_id": f"{cid}-{origin}", "channel": origin}
    return [
        Event(cid, "conversation.started", {"origin": origin}, channel=origin, actor=who,
              customer_id=customer, occurred_at=_at(at)),
        Event(cid, "leg.started", leg, channel=origin, actor=who, customer_id=customer,
              leg_id=leg["leg_id"], occurred_at=_at(at)),
    ]  # fmt: skip


def leg(cid: str, channel: str, at: datetime | None = None) -> Event:
    payload = {"leg_id": f"{cid}-{channel}", "channel": channel}
    return Event(cid, "leg.started", payload, channel=channel, leg_id=payload["leg_id"],
                 occurred_at=_at(at))  # fmt: skip


def leg_ended(cid: str, channel: str, at: datetime | None = None) -> Event:
    payload = {"leg_id": f"{cid}-{channel}"}
    return Event(cid, "leg.ended", payload, channel=channel, occurred_at=_at(at))


def handoff(cid: str, queue: str, at: datetime | None = None) -> Event:
    payload = {"queue": queue, "reason_code": "customer_request"}
    return Event(cid, "handoff.requested", payload, occurred_at=_at(at))


def offered(cid: str, agent: str, queue: str, at: datetime | None = None) -> Event:
    payload = {"offer_id": f"{cid}-offer", "agent_id": agent, "queue": queue,
               "expires_at": (utcnow() + timedelta(hours=1)).isoformat()}  # fmt: skip
    return Event(cid, "handoff.offered", payload, actor=Actor("system", "router"),
                 occurred_at=_at(at))  # fmt: skip


def accepted(cid: str, agent: str, at: datetime | None = None) -> Event:
    payload = {"offer_id": f"{cid}-offer", "agent_id": agent}
    return Event(cid, "handoff.accepted", payload, actor=Actor("human", agent),
                 occurred_at=_at(at))  # fmt: skip


def held_by(cid: str, agent: str, queue: str, at: datetime | None = None) -> list[Event]:
    """Handed off to ``queue``, offered to ``agent`` and accepted by them."""
    return [handoff(cid, queue, at), offered(cid, agent, queue, at), accepted(cid, agent, at)]


def sent(cid: str, text: str, channel: str = "chat", at: datetime | None = None) -> Event:
    return Event(cid, "message.sent", {"text": text}, channel=channel, actor=ANA,
                 occurred_at=_at(at))  # fmt: skip


def resolved(cid: str, at: datetime | None = None) -> Event:
    return Event(cid, "conversation.resolved", {"outcome": "answered"}, occurred_at=_at(at))


def waiting(cid: str, at: datetime | None = None) -> Event:
    return Event(cid, "conversation.waiting", {"reason": "photo"}, occurred_at=_at(at))


def abandoned(cid: str, at: datetime | None = None) -> Event:
    return Event(cid, "conversation.abandoned", {"reason": "left"}, occurred_at=_at(at))
