"""`threadline serve` starts the service on the embedded default."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_prints_its_urls_and_answers(tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "THREADLINE_STORE": f"sqlite:///{tmp_path / 'serve.db'}"}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.cli", "serve", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20), httpx.AsyncClient() as http:
            while True:
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/openapi.json")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
        assert response.status_code == 200
    finally:
        child.send_signal(signal.SIGINT)
        output = (await child.communicate())[0].decode()
    assert f"customer chat   http://127.0.0.1:{port}/chat" in output
    assert "agent-ana" in output and "sup-sam" in output
    assert child.returncode in (0, 130)  # a clean stop on Ctrl-C
