"""A local fake of an OpenAI-compatible speech API, served for real on a loopback port.

``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ``language``,
``prompt``, ``response_format``) answers with the configured text, and
``POST /v1/audio/speech`` (JSON) streams raw 16-bit PCM: a tone as long as the
input text would take to say. Every request is recorded, so tests can check
what the client sent; ``status`` makes it fail on purpose.
"""

from __future__ import annotations

import asyncio
import io
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Upload:
    """One transcription request as the server saw it."""

    fields: dict[str, str]
    filename: str
    content_type: str
    wav_rate: int
    wav_channels: int
    pcm: bytes
    authorization: str | None


@dataclass
class SpeechServer:
    """The fake's behaviour and what it has seen."""

    text: str = "Where is my order 1,042?"
    avg_logprob: float | None = -0.2
    words: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    speech_rate: int = 24000
    #: Seconds of speech per character of input text.
    seconds_per_char: float = 0.06
    #: Bytes per streamed piece of speech, and the pause between pieces.
    piece_bytes: int = 4800
    piece_delay: float = 0.0
    uploads: list[Upload] = field(default_factory=list)
    speech_requests: list[dict[str, Any]] = field(default_factory=list)
    pieces_sent: int = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", self._speech, methods=["POST"]),
            ]
        )

    async def _transcriptions(self, request: Request) -> Response:
        body = await request.body()
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        upload: tuple[str, str, bytes] | None = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                return JSONResponse({"error": {"message": "nested multipart"}}, 400)
            if filename := part.get_filename():
                upload = (filename, part.get_content_type(), payload)
            else:
                fields[str(name)] = payload.decode()
        if upload is None:
            return JSONResponse({"error": {"message": "file is required"}}, 400)
        with wave.open(io.BytesIO(upload[2])) as reader:
            rate, channels = reader.getframerate(), reader.getnchannels()
            pcm = reader.readframes(reader.getnframes())
        self.uploads.append(
            Upload(fields, upload[0], upload[1], rate, channels, pcm,
                   request.headers.get("authorization"))
        )  # fmt: skip
        if self.status != 200:
            return JSONResponse({"error": {"message": "failing on purpose"}}, self.status)
        answer: dict[str, Any] = {"text": self.text, "duration": len(pcm) / 2 / rate}
        if self.avg_logprob is not None:
            answer["segments"] = [{"text": self.text, "avg_logprob": self.avg_logprob}]
        if self.words:
            answer["words"] = self.words
        return JSONResponse(answer)

    async def _speech(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        body["authorization"] = request.headers.get("authorization")
        self.speech_requests.append(body)
        if self.status != 200:
            return JSONResponse({"error": {"message": "failing on purpose"}}, self.status)
        seconds = len(str(body.get("input", ""))) * self.seconds_per_char
        t = np.arange(int(self.speech_rate * seconds)) / self.speech_rate
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(pcm), self.piece_bytes):
                if self.piece_delay:
                    await asyncio.sleep(self.piece_delay)
                self.pieces_sent += 1
                yield pcm[start : start + self.piece_bytes]

        return StreamingResponse(pieces(), media_type="audio/pcm")


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]
    sock: socket.socket


async def start(fake: SpeechServer) -> RunningServer:
    """Serve ``fake`` on a free loopback port inside the running event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(fake.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return RunningServer(f"http://{host}:{port}", server, task, sock)


async def stop(running: RunningServer) -> None:
    running.server.should_exit = True
    await running.task
    running.sock.close()
