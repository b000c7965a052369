"""`threadline serve` in a child process: started, awaited on its port, stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without ``THREADLINE_*`` settings, plus ``settings`` (the
    Northwind pack unless they name another)."""
    from tests.conftest import NORTHWIND

    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    return {**env, "THREADLINE_BUSINESS": str(NORTHWIND), **settings}


@dataclass
class Served:
    """A running service: its base URL; ``output`` (stdout and stderr) once it has stopped."""

    http: str
    port: int
    pid: int = 0
    output: str = ""
    returncode: int | None = None


@asynccontextmanager
async def serving(
    env: Mapping[str, str], *, python: tuple[str, ...] = ("-m", "threadline.cli"), wait: float = 30
) -> AsyncIterator[Served]:
    """``python … serve --port P`` with ``env``, once it answers ``/openapi.json``.

    ``python`` replaces ``-m threadline.cli`` (for a ``-c`` prelude that ends by
    calling ``threadline.cli.main(sys.argv[1:])``).
    """
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, *python, "serve", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=dict(env),
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", port, child.pid)
    try:
        async with asyncio.timeout(wait), httpx.AsyncClient() as http:
            while True:
                if child.returncode is not None:
                    raise AssertionError(f"serve exited with {child.returncode}")
                try:
                    await http.get(f"{served.http}/openapi.json")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
        yield served
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
        output = (await child.communicate())[0].decode()
        served.output, served.returncode = output, child.returncode
        if sys.exc_info()[0] is not None:
            print(output)  # shown with the failure


async def refused(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """``threadline serve`` that is expected to stop at start-up: its status, stdout, stderr."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.cli", "serve", "--port", str(free_port()), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(env),
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()
