"""Load on the chat path: N concurrent WebSocket customers talking to the bot.

``python -m bench.chat_load [--customers 200] [--turns 10] [--runs 3]`` starts
the service on the embedded default in a child process, serving the Northwind
pack with a store and data folder of its own each run, connects N customers
through the chat protocol (not timed), then lets every customer talk to the
bot at once, each sending its next message as soon as the bot has answered
the last (flat out), or paced so that all of them together offer a fixed
rate of turns per second. Latency is from sending a message to the bot's
reply arriving; throughput is bot turns per second of the talking phase. As a floor for the
transport, the same client also drives a bare uvicorn WebSocket echo server
with the same frames in the same run.

The load generator shares the cores with what it measures, so it is kept lean:
it runs on uvloop and speaks through :mod:`bench.ws_client`, a minimal
WebSocket client (handshake, masked text frames, JSON parsed per frame), with
the customers' chat protocol written out here (hello, welcome, message, the
bot's ``message.sent``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench import serve_env
from bench.ws_client import Socket

QUESTIONS = (
    "where is my order 1042?",
    "when are you open on Sunday in Oakland?",
    "can I book a repair tomorrow?",
    "what are the hours at Market Street?",
    "track order 1057 please",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Round:
    turns: int
    seconds: float
    latencies: list[float]
    #: CPU seconds each process spent in the round (user and system), where /proc tells.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.turns / self.seconds


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu(pid: int) -> float:
    """CPU seconds (user and system) that process ``pid`` has used, 0 if /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    out: list[int] = []
    for task in tasks:
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_by_process(service_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the load generator, the service and its bot worker."""
    own = os.times()
    out = {"load generator": own.user + own.system}
    if service_pid is not None:
        out["service"] = _cpu(service_pid)
        out["bot worker"] = sum(_cpu(child) for child in _children(service_pid))
    return out


#: The pid of the service the load generator talks to, while one runs.
SERVICE: dict[str, int] = {}


@contextlib.asynccontextmanager
async def service(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """A child process serving on a free port; yields ``host:port`` once it answers."""
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, *args, "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(400):
                if child.returncode is not None:  # a bad configuration stops it at once
                    raise RuntimeError(f"{' '.join(args)} exited with {child.returncode}")
                try:
                    await http.get(f"http://{address}/openapi.json")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        SERVICE[address] = child.pid
        yield address
    finally:
        SERVICE.pop(address, None)
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
        await child.wait()


class Customer:
    """One chat customer: says hello, then waits for the bot's reply to each message."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.welcome: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.reply: asyncio.Future[dict[str, Any]] | None = None
        self.socket: Socket | None = None

    @classmethod
    async def connect(cls, address: str, token: str) -> Customer:
        customer = cls()
        url = f"ws://{address}/chat/ws"
        customer.socket = await Socket.connect(
            url, customer.on_frame, {"Authorization": f"Bearer {token}"}
        )
        customer.socket.send({"type": "hello", "after_seq": 0})
        await asyncio.wait_for(customer.welcome, 60)
        return customer

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "welcome":
            self.welcome.set_result(frame)
        elif kind == "event" and frame["event"] == "message.sent":
            if self.reply is not None and not self.reply.done():
                self.reply.set_result(frame)
        elif kind in ("error", "closed"):
            for waiting in (self.welcome, self.reply):
                if waiting is not None and not waiting.done():
                    waiting.set_exception(ConnectionError(f"{kind}: {frame}"))

    async def say(self, text: str, client_id: str) -> None:
        """Send a message and wait for the bot's reply."""
        assert self.socket is not None
        self.reply = asyncio.get_running_loop().create_future()
        self.socket.send({"type": "message", "client_id": client_id, "text": text})
        await asyncio.wait_for(self.reply, 60)

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


async def _talk(
    chat: Customer, turns: int, start: asyncio.Event, out: list[float], interval: float
) -> None:
    """Send, await the bot's reply, then the next message ``interval`` after the last one."""
    await start.wait()
    # Spread the customers over the first interval, so the offered rate is even.
    due = time.perf_counter() + random.random() * interval
    for i in range(turns):
        if interval:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += interval
        began = time.perf_counter()
        await chat.say(QUESTIONS[i % 5], f"m{i}-{began}")
        out.append(time.perf_counter() - began)


async def threadline_round(
    address: str, customers: int, turns: int, rate: float | None = None
) -> Round:
    """One round: as fast as the bot answers, or at ``rate`` turns/s across all customers."""
    interval = customers / rate if rate else 0.0
    async with httpx.AsyncClient() as http:
        tokens = [(await http.post(f"http://{address}/chat/session")).json()["token"]
                  for _ in range(customers)]  # fmt: skip
    chats = [await Customer.connect(address, t) for t in tokens]
    try:
        latencies: list[float] = []
        start = asyncio.Event()
        tasks = [asyncio.create_task(_talk(c, turns, start, latencies, interval)) for c in chats]
        await asyncio.sleep(0.2)
        pid = SERVICE.get(address)
        before = cpu_by_process(pid)
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - began
        after = cpu_by_process(pid)
        cpu = {name: after[name] - before[name] for name in after}
        return Round(len(latencies), seconds, latencies, cpu)
    finally:
        await asyncio.gather(*(c.close() for c in chats))


async def echo_round(address: str, customers: int, turns: int) -> Round:
    async def one(start: asyncio.Event, out: list[float]) -> None:
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        ws = await Socket.connect(f"ws://{address}/echo", replies.put_nowait)
        try:
            await start.wait()
            for i in range(turns):
                began = time.perf_counter()
                ws.send({"type": "message", "text": QUESTIONS[i % 5]})
                await replies.get()
                out.append(time.perf_counter() - began)
        finally:
            await ws.close()

    latencies: list[float] = []
    start = asyncio.Event()
    tasks = [asyncio.create_task(one(start, latencies)) for _ in range(customers)]
    await asyncio.sleep(1.0)
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return Round(len(latencies), time.perf_counter() - began, latencies)


def summary(rounds: list[Round]) -> dict[str, str]:
    rates = [r.rate for r in rounds]
    p50s = [statistics.median(r.latencies) * 1000 for r in rounds]
    p99s = [percentile(r.latencies, 0.99) * 1000 for r in rounds]

    def spread(values: list[float], fmt: str) -> str:
        return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"

    row = {"turns/s": spread(rates, ",.0f"), "p50 ms": spread(p50s, ".1f"),
           "p99 ms": spread(p99s, ".1f")}  # fmt: skip
    if all(r.cpu for r in rounds):
        # CPU per turn, in ms, of each process during the talking phase.
        per_turn = {n: [r.cpu[n] / r.turns * 1000 for r in rounds] for n in rounds[0].cpu}
        row["CPU ms/turn"] = ", ".join(f"{n} {statistics.median(v):.2f}"
                                       for n, v in per_turn.items())  # fmt: skip
    return row


async def main(customers: int, turns: int, runs: int, rates: list[float]) -> None:
    folder = tempfile.mkdtemp(prefix="tl-chat-load-")
    print(f"{customers} customers x {turns} turns, {runs} runs, on {os.cpu_count()} cores "
          "(client and server on one machine); median (min–max)")  # fmt: skip
    results: dict[str, list[Round]] = {}
    for run in range(runs):
        env = serve_env(folder, f"load-{run}")
        async with service("-m", "threadline.cli", "serve", env=env) as address:
            for rate in rates:
                round_ = await threadline_round(address, customers, turns, rate)
                results.setdefault(f"Threadline at {rate:,.0f} turns/s offered", []).append(round_)
            round_ = await threadline_round(address, customers, turns)
            results.setdefault("Threadline, flat out", []).append(round_)
        async with service("-m", "bench.echo_server") as address:
            round_ = await echo_round(address, customers, turns)
            results.setdefault("bare WebSocket echo, flat out", []).append(round_)
    for label, rounds in results.items():
        row = summary(rounds)
        print(f"  {label:<40} " + "  ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="250,500,1000",
                        help="offered turns/s across all customers, comma-separated")  # fmt: skip
    args = parser.parse_args()
    offered = [float(r) for r in args.rates.split(",") if r]
    uvloop.run(main(args.customers, args.turns, args.runs, offered))
