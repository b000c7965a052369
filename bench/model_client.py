"""The model provider's client side: its CPU per request, by the requests in flight.

``python -m bench.model_client [--in-flight 1,10,50,150] [--requests 600] [--runs 3]``
serves :mod:`bench.model_server` in a child process and sends it the same request (a
Northwind-sized prompt: a 3,000-character system message and six tools) through the
product's :class:`~threadline.models.OpenAICompatible` (aiohttp), N requests in flight at
a time (N tasks, each awaiting its answer before its next), on uvloop as the bot worker
runs; the peer, in the same run and on the same server, sends the same bytes through an
httpx ``AsyncClient`` with its defaults and reads the answer the same way. Per client and
level: requests/s, latency p50/p99, and CPU ms per request of this process (the client)
and of the server, from ``/proc``. The server answers at once, so what grows with N is the
client's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass

import httpx
import orjson
import uvloop

from bench.chat_load import SERVICE, _cpu, percentile, service
from threadline.core.model import ChatMessage, Completion, ModelRequest, ToolSpec
from threadline.models import OpenAICompatible
from threadline.models.openai_compatible import _body, _completion

SYSTEM = "You are Northwind Devices' assistant. " * 80
TOOLS = tuple(
    ToolSpec(f"tool_{i}", "looks something up in the business's systems " * 3,
             {"type": "object", "properties": {"order_number": {"type": "string"}}})
    for i in range(6)
)  # fmt: skip
REQUEST = ModelRequest((ChatMessage("system", SYSTEM), ChatMessage("user", "hours?")), TOOLS)


class HttpxPeer:
    """The same request and answer as the product's provider, over httpx (the peer)."""

    def __init__(self, url: str) -> None:
        self.endpoint = f"{url}/chat/completions"
        self.client = httpx.AsyncClient(timeout=20.0)

    async def complete(self, request: ModelRequest) -> Completion:
        body = orjson.dumps(_body("bench-model-1", request, False))
        response = await self.client.post(self.endpoint, content=body,
                                          headers={"content-type": "application/json"})  # fmt: skip
        response.raise_for_status()
        return _completion(orjson.loads(response.content), request, 1)

    async def close(self) -> None:
        await self.client.aclose()


CLIENTS = {"aiohttp (the product)": lambda url: OpenAICompatible(url, "bench-model-1", retries=0),
           "httpx (peer)": HttpxPeer}  # fmt: skip


@dataclass
class Level:
    client: str
    in_flight: int
    rate: float
    p50: float
    p99: float
    client_cpu: float
    server_cpu: float


async def level(address: str, client: str, in_flight: int, requests: int) -> Level:
    provider = CLIENTS[client](f"http://{address}/v1")
    try:
        await provider.complete(REQUEST)  # a connection, warm
        latencies: list[float] = []
        each = max(1, requests // in_flight)

        async def one() -> None:
            for _ in range(each):
                began = time.perf_counter()
                await provider.complete(REQUEST)
                latencies.append(time.perf_counter() - began)

        server = SERVICE[address]
        mine, theirs = os.times(), _cpu(server)
        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(in_flight)))
        seconds = time.perf_counter() - began
        spent, served = os.times(), _cpu(server)
        n = len(latencies)
        client = (spent.user + spent.system - mine.user - mine.system) / n * 1000
        return Level(client, in_flight, n / seconds, statistics.median(latencies) * 1000,
                     percentile(latencies, 0.99) * 1000, client,
                     (served - theirs) / n * 1000)  # fmt: skip
    finally:
        await provider.close()


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


async def main(levels: list[int], requests: int, runs: int) -> None:
    results: dict[tuple[str, int], list[Level]] = {(c, n): [] for c in CLIENTS for n in levels}
    for run in range(runs):
        async with service("-m", "bench.model_server") as address:
            for n in levels:
                for client in CLIENTS if run % 2 == 0 else reversed(CLIENTS):
                    got = await level(address, client, n, requests)
                    results[client, n].append(got)
                    print(f"run {run + 1} {client} in flight {n:>3}: {got.rate:,.0f} requests/s,"
                          f" p50 {got.p50:.1f} ms, p99 {got.p99:.1f} ms, CPU ms/request client"
                          f" {got.client_cpu:.2f}, server {got.server_cpu:.2f}",
                          flush=True)  # fmt: skip
    print()
    print("| client | in flight | requests/s | p50 ms | p99 ms | client CPU ms/request "
          "| server CPU ms/request |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for (client, n), levels_ in results.items():
        print(f"| {client} | {n} | {spread([g.rate for g in levels_], ',.0f')} | "
              f"{spread([g.p50 for g in levels_], '.1f')} | "
              f"{spread([g.p99 for g in levels_], '.1f')} | "
              f"{spread([g.client_cpu for g in levels_], '.2f')} | "
              f"{spread([g.server_cpu for g in levels_], '.2f')} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", default="1,10,50,150")
    parser.add_argument("--requests", type=int, default=600, help="per level")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    levels = [int(n) for n in args.in_flight.split(",") if n]
    uvloop.run(main(levels, args.requests, args.runs))
