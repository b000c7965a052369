"""The people around a running service, through its public interfaces only.

:class:`Narration` prints what they do as it happens. :class:`Watcher`
follows one conversation's events on its WebSocket stream (as an
administrator watching the floor). :class:`Desk` is a human agent at the
desk: presence through the desk API, offers from the live work stream, and
taking one. :class:`StoreCounter` is a store associate: check-in by code, the
journey, and the visit's outcome. Each takes a token the service issued for
its person.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import httpx
import orjson
import websockets

from threadline.core.errors import ThreadlineError
from threadline.core.events import new_id

T = TypeVar("T")


class DemoStopped(ThreadlineError):
    """Something the journey waits for did not happen (in time)."""


async def within(seconds: float, what: str, waiting: Awaitable[T]) -> T:
    """The result of awaiting ``waiting``; DemoStopped naming ``what`` if it takes longer."""
    try:
        async with asyncio.timeout(seconds):
            return await waiting
    except TimeoutError:
        raise DemoStopped(f"{what} did not happen within {seconds:g} s") from None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def checked(response: httpx.Response, what: str) -> Any:
    """The response's JSON body, or DemoStopped with the problem the service answered."""
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        raise DemoStopped(f"{what} was refused ({response.status_code}): {detail}")
    return response.json() if response.content else None


@dataclass
class Narration:
    """Prints each step with the seconds since the journey began."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    began: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def step(self, channel: str, who: str, what: str) -> None:
        print(f"{self.elapsed():7.1f}s  {channel:<9}  {who:<14}  {what}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class Watcher:
    """One conversation's events as its stream sends them (``/conversations/{id}/stream``)."""

    def __init__(self, socket: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self._socket = socket
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws_base: str, conversation_id: str, token: str) -> Watcher:
        url = f"{ws_base}/conversations/{conversation_id}/stream"
        return cls(await websockets.connect(url, additional_headers=bearer(token)))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._socket:
                frame = orjson.loads(raw)
                if frame.get("type") == "error":
                    raise DemoStopped(f"the conversation stream refused: {frame['detail']}")
                self.events.append(frame)
                self._arrived.set()

    async def event(
        self, matches: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first event that ``matches``, once it is recorded."""

        async def found() -> dict[str, Any]:
            while True:
                hit = next((e for e in self.events if matches(e)), None)
                if hit is not None:
                    return hit
                if self._reader.done():
                    self._reader.result()
                    raise DemoStopped("the conversation stream closed")
                self._arrived.clear()
                await self._arrived.wait()

        return await within(timeout, what, found())

    def said(self, channel: str, after: int) -> list[dict[str, Any]]:
        """The messages sent to the customer on ``channel`` after seq ``after``."""
        return [e for e in self.events if e["type"] == "message.sent"
                and e["channel"] == channel and e["seq"] > after]  # fmt: skip

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, DemoStopped):
            await self._reader
        await self._socket.close()


class Desk:
    """A human agent at the desk: available, watching their work stream for offers."""

    def __init__(self, agent_id: str, http: httpx.AsyncClient, socket: Any,
                 offers: asyncio.Queue[tuple[Desk, dict[str, Any]]]) -> None:  # fmt: skip
        self.agent_id = agent_id
        self.http = http
        self._socket = socket
        self._offers = offers
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def sign_in(
        cls,
        base: str,
        ws_base: str,
        agent_id: str,
        token: str,
        offers: asyncio.Queue[tuple[Desk, dict[str, Any]]],
    ) -> Desk:
        """Open the desk's work stream and become available."""
        http = httpx.AsyncClient(base_url=base, headers=bearer(token))
        socket = await websockets.connect(f"{ws_base}/agents/me/stream",
                                          additional_headers=bearer(token))  # fmt: skip
        desk = cls(agent_id, http, socket, offers)
        checked(await http.put("/agents/me/presence", json={"presence": "available"},
                               headers={"Idempotency-Key": new_id()}),
                f"{agent_id}'s presence")  # fmt: skip
        return desk

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._socket:
                frame = orjson.loads(raw)
                if frame["type"] == "snapshot":
                    for offer in frame["offers"]:
                        await self._offers.put((self, offer))
                elif frame["type"] == "handoff.offered" and frame["agent_id"] == self.agent_id:
                    await self._offers.put((self, frame))

    async def accept(self, offer: Mapping[str, Any]) -> Any:
        path = f"/conversations/{offer['conversation_id']}/accept"
        return checked(await self.http.post(path, json={"offer_id": offer["offer_id"]},
                                            headers={"Idempotency-Key": new_id()}),
                       f"{self.agent_id} accepting the offer")  # fmt: skip

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()
        await self.http.aclose()


class StoreCounter:
    """A store associate at the counter, on the in-person API."""

    def __init__(self, associate_id: str, base: str, token: str) -> None:
        self.associate_id = associate_id
        self.http = httpx.AsyncClient(base_url=base, headers=bearer(token))

    async def _post(self, path: str, body: Mapping[str, Any], what: str) -> Any:
        response = await self.http.post(path, json=dict(body),
                                        headers={"Idempotency-Key": new_id()})  # fmt: skip
        return checked(response, what)

    async def check_in(self, digits: str) -> Any:
        return await self._post("/visits/checkin", {"code": digits}, "the check-in")

    async def journey(self, conversation_id: str) -> tuple[list[dict[str, Any]], Any]:
        """The conversation's events and its handoff packet, as the associate app reads them."""
        events = checked(await self.http.get(f"/conversations/{conversation_id}/events"),
                         "reading the journey")  # fmt: skip
        packet = checked(await self.http.get(f"/conversations/{conversation_id}/packet"),
                         "reading the packet")  # fmt: skip
        return events, packet

    async def resolve(self, conversation_id: str, outcome: str, note: str) -> Any:
        return await self._post(f"/conversations/{conversation_id}/visit/resolve",
                                {"outcome": outcome, "note": note}, "resolving")  # fmt: skip

    async def close(self) -> None:
        await self.http.aclose()
