"""A minimal WebSocket client for the load generator (RFC 6455, text frames, no extensions).

The load generator shares the machine's two cores with the service it measures,
so what it spends per message is taken from the service. This client does only
what the chat protocol needs: the opening handshake (checked), masked text
frames out (random key per frame, masked by websockets' C helper), text frames
in (fragments joined, pings answered, close honoured), each frame handed on as
parsed JSON. It measures the same thing as any other client: the service sees
ordinary WebSocket frames.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


class Closed(Exception):
    """The connection closed."""


class _Protocol(asyncio.Protocol):
    def __init__(self, on_frame: Callable[[dict[str, Any]], None]) -> None:
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 4])
            del self.buffer[: end + 4]
            self.open = True
            self.handshake.set_result(head)
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            size, at = second & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, at = struct.unpack_from(">H", buffer, 2)[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, at = struct.unpack_from(">Q", buffer, 2)[0], 10
            if second & 0x80:  # a server never masks
                raise ConnectionError("masked frame from the server")
            if len(buffer) < at + size:
                return
            payload = bytes(buffer[at : at + size])
            del buffer[: at + size]
            self._frame(first & 0x80, first & 0x0F, payload)

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (TEXT, CONTINUATION):
            self.fragments.append(payload)
            if fin:
                text = b"".join(self.fragments)
                self.fragments.clear()
                self.on_frame(orjson.loads(text))
        elif opcode == PING:
            self.send(PONG, payload)
        elif opcode == CLOSE and self.transport is not None and not self.transport.is_closing():
            self.send(CLOSE, payload[:2])
            self.transport.close()

    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        key = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack(">BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, size)
        self.transport.write(header + key + apply_mask(payload, key))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(Closed("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_frame({"type": "closed"})


class Socket:
    """One open WebSocket: ``send`` a JSON frame; frames that arrive go to ``on_frame``."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @classmethod
    async def connect(
        cls, url: str, on_frame: Callable[[dict[str, Any]], None],
        headers: dict[str, str] | None = None,
    ) -> Socket:  # fmt: skip
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: _Protocol(on_frame), host, port)
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}",
                 "Sec-WebSocket-Version: 13",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]  # fmt: skip
        assert protocol.transport is not None
        protocol.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(protocol.handshake, 30)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        status, *fields = head.decode("latin-1").split("\r\n")
        answered = {n.strip().lower(): v.strip() for n, _, v in (f.partition(":") for f in fields)}
        if " 101 " not in status or answered.get("sec-websocket-accept") != accept.decode():
            protocol.transport.close()
            raise ConnectionError(f"handshake refused: {status}")
        return cls(protocol)

    def send(self, frame: dict[str, Any]) -> None:
        self._protocol.send(TEXT, orjson.dumps(frame))

    async def close(self) -> None:
        protocol = self._protocol
        if protocol.transport is not None and not protocol.transport.is_closing():
            protocol.send(CLOSE, struct.pack(">H", 1000))
            try:
                await asyncio.wait_for(asyncio.shield(protocol.closed), 5)
            except TimeoutError:
                protocol.transport.close()
