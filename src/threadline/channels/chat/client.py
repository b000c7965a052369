"""A Python client for the chat protocol, for other front ends and for tests.

::

    async with ChatClient.connect("ws://127.0.0.1:8080/chat/ws") as chat:
        await chat.say("where is my order 5120?")
        reply = await chat.wait_for(lambda e: e["event"] == "message.sent")
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import websockets

from threadline.core.errors import ThreadlineError
from threadline.core.events import new_id


class ChatError(ThreadlineError):
    """The server refused a frame (``code`` says why)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


class ChatClient:
    """One customer chat session; resumable by ``conversation_id`` and ``last_seq``."""

    def __init__(self, socket: Any, welcome: dict[str, Any], after_seq: int) -> None:
        self._socket = socket
        self.conversation_id: str = welcome["conversation_id"]
        self.leg_id: str = welcome["leg_id"]
        self.last_seq = after_seq
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[ChatError] = asyncio.Queue()
        self._acks: dict[str, asyncio.Future[int]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        conversation_id: str | None = None,
        after_seq: int = 0,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> AsyncIterator[ChatClient]:
        """Open a chat on ``url`` as the customer ``token`` (from ``POST /chat/session``)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with websockets.connect(url, additional_headers=headers) as socket:
            hello: dict[str, Any] = {"type": "hello", "after_seq": after_seq}
            if conversation_id:
                hello["conversation_id"] = conversation_id
            with contextlib.suppress(websockets.ConnectionClosed):
                # A refused socket may be closed already; its reason is still readable.
                await socket.send(orjson.dumps(hello).decode())
            first = orjson.loads(await asyncio.wait_for(socket.recv(), timeout))
            if first["type"] != "welcome":
                raise ChatError(first.get("code", "refused"), first.get("detail", ""))
            client = cls(socket, first, after_seq)
            try:
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client._reader

    async def _read(self) -> None:
        async for raw in self._socket:
            frame = orjson.loads(raw)
            kind = frame["type"]
            if kind == "ack":
                future = self._acks.pop(frame["client_id"], None)
                if future is not None and not future.done():
                    future.set_result(frame["seq"])
            elif kind == "event":
                self.last_seq = max(self.last_seq, frame["seq"])
                await self.events.put(frame)
            elif kind == "error":
                await self.errors.put(ChatError(frame["code"], frame["detail"]))

    async def say(self, text: str, client_id: str | None = None, timeout: float = 10.0) -> int:
        """Send a message and wait until it is durably recorded; its seq."""
        client_id = client_id or new_id()
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[client_id] = ack
        await self.send({"type": "message", "client_id": client_id, "text": text})
        return await asyncio.wait_for(ack, timeout)

    async def consent(self, purpose: str, granted: bool, timeout: float = 10.0) -> int:
        """Give or withdraw consent for ``purpose``; the seq it is recorded at."""
        client_id = new_id()
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[client_id] = ack
        await self.send({"type": "consent", "client_id": client_id, "purpose": purpose,
                         "granted": granted})  # fmt: skip
        return await asyncio.wait_for(ack, timeout)

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a raw frame (for example an attachment, which the server refuses)."""
        await self._socket.send(orjson.dumps(frame).decode())

    async def wait_for(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The next event that ``matches``, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if matches(event):
                    return event
