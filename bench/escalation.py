"""Escalation latency: from the customer's message that makes the bot hand off to the offer
arriving on the agent's desk stream.

``python -m bench.escalation [--handoffs 100] [--background 200] [--runs 3]``
starts the service on the embedded default (the Northwind pack, a store and
data folder of its own each run, a strong token secret shared with the desk),
signs Ana in on the desk's work stream (``/agents/me/stream``) and makes her
available, keeps ``--background`` chat customers talking to the bot at
``--rate`` turns/s, and then, one customer at a time, asks for a person. Each
offer is accepted and resolved at once so that Ana's capacity never runs out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import tempfile
import time
from datetime import timedelta
from typing import Any

import httpx
import orjson
import uvloop
import websockets

from bench import serve_env
from bench.chat_load import percentile, service, threadline_round
from threadline.channels.chat.client import ChatClient
from threadline.security import TokenIssuer
from threadline.settings import Settings

#: The service and the desk clients share it for one run.
SECRET = secrets.token_urlsafe(32)
ASK = "my order 1042 is late, I want to talk to a person"


async def _offers(desk: Any, queue: asyncio.Queue[dict[str, Any]]) -> None:
    async for raw in desk:
        frame = orjson.loads(raw)
        if frame["type"] == "handoff.offered":
            await queue.put(frame)


async def escalations(address: str, token: str, handoffs: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    async with (
        httpx.AsyncClient(base_url=f"http://{address}", headers=headers) as http,
        websockets.connect(f"ws://{address}/agents/me/stream", additional_headers=headers) as desk,
    ):
        snapshot = orjson.loads(await desk.recv())
        assert snapshot["type"] == "snapshot", snapshot
        (await http.put("/agents/me/presence", json={"presence": "available"})).raise_for_status()
        offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        reader = asyncio.create_task(_offers(desk, offers))
        try:
            for _ in range(handoffs):
                session = (await http.post("/chat/session")).json()["token"]
                url = f"ws://{address}/chat/ws"
                async with ChatClient.connect(url, token=session, timeout=30) as chat:
                    began = time.perf_counter()
                    await chat.send({"type": "message", "client_id": f"e-{began}", "text": ASK})
                    while True:
                        offer = await asyncio.wait_for(offers.get(), 30)
                        if offer["conversation_id"] == chat.conversation_id:
                            break
                    latencies.append(time.perf_counter() - began)
                    path = f"/conversations/{chat.conversation_id}"
                    accepted = await http.post(
                        f"{path}/accept", json={"offer_id": offer["offer_id"]}
                    )
                    accepted.raise_for_status()
                    resolved = await http.post(f"{path}/resolve", json={"outcome": "answered"})
                    resolved.raise_for_status()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return latencies


async def main(handoffs: int, background: int, rate: float, runs: int) -> None:
    settings = Settings(token_secret=SECRET, chat_sessions_per_hour=100_000)
    ana = TokenIssuer.from_settings(settings).issue(
        "agent-ana", ["agent"], timedelta(hours=1), {"queues": ["orders", "billing"]}
    )
    folder = tempfile.mkdtemp(prefix="tl-escalation-")
    print(f"{handoffs} handoffs one after another, {background} chat customers at {rate:,.0f} "
          f"turns/s meanwhile, {runs} runs, {os.cpu_count()} cores")  # fmt: skip
    p50s, p99s, maxes = [], [], []
    for run in range(runs):
        env = {**serve_env(folder, f"esc-{run}"), "THREADLINE_TOKEN_SECRET": SECRET}
        async with service("-m", "threadline.cli", "serve", env=env) as address:
            load = None
            if background:
                turns = 10_000  # cancelled when the handoffs are done
                load = asyncio.create_task(threadline_round(address, background, turns, rate))
                await asyncio.sleep(2.0)
            try:
                latencies = await escalations(address, ana.token, handoffs)
            finally:
                if load is not None:
                    load.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await load
        p50s.append(statistics.median(latencies) * 1000)
        p99s.append(percentile(latencies, 0.99) * 1000)
        maxes.append(max(latencies) * 1000)

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

    print(f"  message → offer on the desk   p50 ms {spread(p50s)}  p99 ms {spread(p99s)}  "
          f"max ms {spread(maxes)}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handoffs", type=int, default=100)
    parser.add_argument("--background", type=int, default=200)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    uvloop.run(main(args.handoffs, args.background, args.rate, args.runs))
