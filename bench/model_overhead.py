"""The model-backed agent's own overhead per chat turn, at 200 concurrent conversations.

``python -m bench.model_overhead [--customers 200] [--turns 5] [--runs 3] [--rates 10,20]
[--flat-out] [--alone 20] [--store sqlite|postgres] [--profile SECONDS]`` starts
``threadline serve`` on the embedded default (SQLite, or with ``--store postgres`` a
PostgreSQL database of its own; the in-process bus, the agent in its supervised worker
process) with the Northwind pack, twice per run in alternating order: once with the model-backed
agent pointed at :mod:`bench.model_server` (a local OpenAI-compatible server that answers
at once, by rule: for a message naming an order, the triage agent's transfer to the
orders agent, then ``lookup_order``, then a text answer; a text answer otherwise), and
once with the embedded agent alone, the peer. Each time, after an untimed warm-up, N chat
customers connect over the real WebSocket path and talk at once, as in
:mod:`bench.chat_load` (the same client and the same five questions, each customer from a
place of its own in their cycle; two of them name an order: two turns in five have a tool
round), paced so that all of them together offer each rate in turn (then flat out, with
``--flat-out``); then, as the floor, customers talk one at a time, flat out (``--alone N``
of them, one after another).

The service runs with :mod:`bench.timed_turns` on its path, which times every customer
turn inside the bot worker: from the runtime being handed the customer's message to the
reply recorded, and within it the model provider's calls (client side: the whole HTTP
exchange with the model) and the business's tools. The agent's own overhead per turn is
that turn time minus the provider's; for the embedded agent it is the whole turn time.
CPU per turn of each process is read from ``/proc``. ``--profile`` first runs the first
round once more for each agent, not counted, sampling the bot worker with py-spy
(:mod:`bench.profiles`), and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import uvloop

from bench import profiles, serve_env
from bench.chat_load import (
    QUESTIONS,
    SERVICE,
    Customer,
    Round,
    _children,
    cpu_by_process,
    percentile,
    service,
    threadline_round,
)
from bench.peers import find_postgres_dsn
from bench.voice_latency import machine_note

MODEL: Final = "model-backed"
EMBEDDED: Final = "embedded"
SERVE: Final = ("-m", "threadline.cli", "serve")
MODEL_SERVER: Final = ("-m", "bench.model_server")
HOOK: Final = Path(__file__).resolve().parent / "timed_turns"
#: Seconds after a round for the worker's last lines to land.
SETTLE: Final = 0.5
#: Seconds into a profiled round before sampling starts (the customers connect first).
PROFILE_AFTER: Final = 4.0
PROFILES: Final = Path("var/profiles")


@dataclass
class Sample:
    """One round of one agent: every customer turn as the worker timed it (seconds)."""

    turns: list[dict[str, Any]]
    rate: float
    client: list[float] = field(default_factory=list)
    #: CPU ms per turn of each process in the round (the load generator, service, bot worker)
    cpu: dict[str, float] = field(default_factory=dict)

    def values(self, what: str, tool_round: bool | None = None) -> list[float]:
        rows = self.turns
        if tool_round is not None:
            rows = [t for t in rows if (t["tool_calls"] > 0) == tool_round]
        return [_measure(t, what) for t in rows]


def _measure(turn: dict[str, Any], what: str) -> float:
    if what == "overhead":  # all but the provider's time
        return float(turn["handled"] - turn["provider"])
    if what == "agent":  # the agent's own part of it, without the business's tools
        return float(turn["agent"] - turn["provider"] - turn["tools"])
    if what == "runtime":  # rehydrating, authorizing, appending around the agent
        return float(turn["handled"] - turn["agent"])
    if what == "around":  # the runtime's part less the appends
        return float(turn["handled"] - turn["agent"] - turn.get("append", 0.0))
    return float(turn.get(what) or 0.0)


def _turns_since(path: Path, began: float, ended: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in path.parent.glob(path.name + ".*"):
        for line in part.read_bytes().splitlines():
            row = orjson.loads(line)
            if began <= row["at"] <= ended:
                rows.append(row)
    return rows


def _env(
    folder: str, tag: str, turns: Path, model_url: str | None, store: str | None
) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HOOK), os.environ.get("PYTHONPATH")]))
    env = {**serve_env(folder, tag), "BENCH_TURNS": str(turns), "PYTHONPATH": path}
    if store is not None:  # shared: the token secret must be given (any will do here)
        env |= {"THREADLINE_STORE": store, "THREADLINE_TOKEN_SECRET": os.urandom(32).hex()}
    if model_url is not None:
        env |= {"THREADLINE_MODEL_URL": model_url, "THREADLINE_MODEL": "bench-model-1"}
    return env


async def _profiled(address: str, seconds: float, out: Path) -> None:
    """py-spy on the service's bot worker for ``seconds``, once the customers are talking."""
    (worker,) = _children(SERVICE[address])
    await asyncio.sleep(PROFILE_AFTER)
    await profiles.record(worker, seconds, out)


@dataclass(frozen=True)
class Load:
    """A round's load: ``customers`` talking at once, ``turns`` each, offering ``rate``
    turns/s all together (0: each sends as soon as the last reply arrived); ``repeat``
    times over, with new conversations each time."""

    customers: int
    turns: int
    rate: float
    repeat: int = 1

    def __str__(self) -> str:
        pace = f"{self.rate:,.0f} turns/s offered" if self.rate else "flat out"
        who = f"{self.customers} conversations" if self.customers > 1 else "1 conversation"
        times = f" ({self.repeat} in turn)" if self.repeat > 1 else ""
        return f"{who}{times}, {pace}"


async def _rounds(
    address: str, turns_file: Path, loads: Sequence[Load], profile: tuple[float, Path] | None
) -> list[Sample]:
    await threadline_round(address, 20, 5)  # warm: imports, caches, the first compile
    out = []
    for n, load in enumerate(loads):
        began = time.monotonic()
        talking = _talk(address, load)
        if profile is not None and n == 0:
            round_, _ = await asyncio.gather(talking, _profiled(address, *profile))
            print(f"where the bot worker's time goes ({load}; {profile[1]}):", flush=True)
            print(profiles.table(profile[1], 60), flush=True)
        else:
            round_ = await talking
        await asyncio.sleep(SETTLE)
        rows = _turns_since(turns_file, began, time.monotonic())
        cpu = {name: seconds / round_.turns * 1000 for name, seconds in round_.cpu.items()}
        out.append(Sample(rows, round_.rate, round_.latencies, cpu))
        if len(rows) != round_.turns:
            print(f"  note: the worker timed {len(rows)} turns of {round_.turns}", flush=True)
    return out


async def _converse(
    chat: Customer, turns: int, start: asyncio.Event, out: list[float], interval: float
) -> None:
    """As :func:`bench.chat_load._talk`, from a question of the cycle of its own, so that
    the turns with a tool round (and each conversation's first, with its transfer) are
    spread over the round instead of all falling in its first interval."""
    await start.wait()
    phase = random.randrange(len(QUESTIONS))
    due = time.perf_counter() + random.random() * interval
    for i in range(turns):
        if interval:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += interval
        began = time.perf_counter()
        await chat.say(QUESTIONS[(phase + i) % len(QUESTIONS)], f"m{i}-{began}")
        out.append(time.perf_counter() - began)


async def _round(address: str, customers: int, turns: int, rate: float) -> Round:
    """As :func:`bench.chat_load.threadline_round`, the customers talking by :func:`_converse`."""
    interval = customers / rate if rate else 0.0
    async with httpx.AsyncClient() as http:
        tokens = [(await http.post(f"http://{address}/chat/session")).json()["token"]
                  for _ in range(customers)]  # fmt: skip
    chats = [await Customer.connect(address, t) for t in tokens]
    try:
        latencies: list[float] = []
        start = asyncio.Event()
        tasks = [asyncio.create_task(_converse(c, turns, start, latencies, interval))
                 for c in chats]  # fmt: skip
        await asyncio.sleep(0.2)
        before = cpu_by_process(SERVICE.get(address))
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - began
        after = cpu_by_process(SERVICE.get(address))
        return Round(len(latencies), seconds, latencies,
                     {name: after[name] - before[name] for name in after})  # fmt: skip
    finally:
        await asyncio.gather(*(c.close() for c in chats))


async def _talk(address: str, load: Load) -> Round:
    """The round(s) of ``load``, as one."""
    rounds = [await _round(address, load.customers, load.turns, load.rate)
              for _ in range(load.repeat)]  # fmt: skip
    return Round(sum(r.turns for r in rounds), sum(r.seconds for r in rounds),
                 [x for r in rounds for x in r.latencies],
                 {n: sum(r.cpu.get(n, 0.0) for r in rounds) for n in rounds[0].cpu})  # fmt: skip


@contextlib.asynccontextmanager
async def _database(dsn: str | None, name: str) -> AsyncIterator[str | None]:
    """A PostgreSQL database of its own for one service (None: the service's SQLite file)."""
    if dsn is None:
        yield None
        return
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://{admin.info.user}@{admin.info.host}:{admin.info.port}/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def one_run(
    run: int, folder: str, loads: Sequence[Load], profile: float, delay: float,
    dsn: str | None = None,
) -> dict[str, list[Sample]]:  # fmt: skip
    """Both agents, in an order that alternates from run to run, each on a service of its own
    (on PostgreSQL with ``dsn``, each in a database of its own)."""
    results: dict[str, list[Sample]] = {}
    for system in [MODEL, EMBEDDED] if run % 2 == 0 else [EMBEDDED, MODEL]:
        turns_file = Path(folder) / f"turns-{system}-{run}"
        traced = (profile, PROFILES / f"model-overhead-{system}.txt") if profile else None
        async with contextlib.AsyncExitStack() as stack:
            url = None
            if system == MODEL:
                model = service(*MODEL_SERVER, "--delay", str(delay))
                url = f"http://{await stack.enter_async_context(model)}/v1"
            name = f"tl_overhead_{os.getpid()}_{system.replace('-', '_')}_{run + 1}"
            store = await stack.enter_async_context(_database(dsn, name))
            env = _env(folder, f"{system}-{run}", turns_file, url, store)
            address = await stack.enter_async_context(service(*SERVE, env=env))
            results[system] = await _rounds(address, turns_file, loads, traced)
        for load, sample in zip(loads, results[system], strict=True):
            print(f"run {run + 1} {system:<12} {load!s:<40} {_brief(sample)}", flush=True)
    return results


def _ms(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return (statistics.median(values) if q == 0.5 else percentile(list(values), q)) * 1000


def _brief(sample: Sample) -> str:
    o = sample.values("overhead")
    p = sample.values("provider")
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in sample.cpu.items())
    return (f"{len(o)} turns at {sample.rate:,.1f}/s: overhead p50 {_ms(o, 0.5):.2f} p95 "
            f"{_ms(o, 0.95):.2f} p99 {_ms(o, 0.99):.2f} ms; provider p50 {_ms(p, 0.5):.2f} ms;"
            f" client p99 {_ms(sample.client, 0.99):.1f} ms; CPU ms/turn: {cpu}")  # fmt: skip


def spread(values: Iterable[float], fmt: str = ".2f") -> str:
    v = list(values)
    return f"{statistics.median(v):{fmt}} ({min(v):{fmt}}–{max(v):{fmt}})"


def table(results: list[dict[str, list[Sample]]], loads: Sequence[Load]) -> str:
    """Markdown: per agent and load, each percentile's median over the runs (min–max)."""
    lines = [
        "| agent | load | turns/s | overhead p50 ms | p95 ms | p99 ms | provider p50 ms "
        "| tool-round turns p99 ms | client p99 ms | bot worker CPU ms/turn |",
        "|---" * 10 + "|",
    ]
    for system in (MODEL, EMBEDDED):
        for i, load in enumerate(loads):
            samples = [r[system][i] for r in results]
            cells = [
                system, str(load), spread([s.rate for s in samples], ",.0f"),
                *(spread(_ms(s.values("overhead"), q) for s in samples) for q in (0.5, 0.95, 0.99)),
                spread(_ms(s.values("provider"), 0.5) for s in samples),
                spread(_ms(s.values("overhead", tool_round=True), 0.99) for s in samples),
                spread((_ms(s.client, 0.99) for s in samples), ".1f"),
                spread(s.cpu.get("bot worker", 0.0) for s in samples),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parts(results: list[dict[str, list[Sample]]], loads: Sequence[Load]) -> str:
    """Markdown: where each agent's turn goes, medians over the runs of each part's p50/p99."""
    lines = ["| agent | load | part | p50 ms | p99 ms |", "|---" * 5 + "|"]
    names = {"runtime": "runtime (rehydrate, authorize, append)",
             "append": "of which appends", "store_append": "of the appends, the store's",
             "around": "of which the rest",
             "reads": "store reads (in the runtime's part or the agent's)",
             "agent": "agent (without provider and tools)", "tools": "business tools",
             "provider": "provider (HTTP exchange)", "lag": "service → worker hop"}  # fmt: skip
    for system in (MODEL, EMBEDDED):
        for i, load in enumerate(loads):
            samples = [r[system][i] for r in results]
            for part, label in names.items():
                if system == EMBEDDED and part == "provider":
                    continue
                cells = [system, str(load), label,
                         spread(_ms(s.values(part), 0.5) for s in samples),
                         spread(_ms(s.values(part), 0.99) for s in samples)]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main(
    loads: list[Load], runs: int, profile: float, delay: float, store: str = "sqlite"
) -> None:
    folder = tempfile.mkdtemp(prefix="tl-model-overhead-")
    PROFILES.mkdir(parents=True, exist_ok=True)
    dsn = None
    if store == "postgres":
        dsn = find_postgres_dsn()
        if dsn is None:
            raise SystemExit("no PostgreSQL answers on 127.0.0.1:5432 (THREADLINE_BENCH_PG_DSN)")
    print(machine_note(), flush=True)
    print(f"{runs} runs on {store}, the model answering in {delay * 1000:.0f} ms; median"
          " (min–max) of the runs", flush=True)  # fmt: skip
    if profile:
        print("profiling (not counted):", flush=True)
        await one_run(-1, folder, loads[:1], profile, delay, dsn)
    results = [await one_run(run, folder, loads, 0.0, delay, dsn) for run in range(runs)]
    if not results:  # --runs 0: the profile alone
        return
    print()
    print(table(results, loads))
    print()
    print(parts(results, loads))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5, help="turns per customer")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="10,20",
                        help="offered turns/s across all customers, comma-separated")  # fmt: skip
    parser.add_argument("--flat-out", action="store_true", help="then a round flat out")
    parser.add_argument("--alone", type=int, default=20, metavar="N",
                        help="then N conversations one after another, each alone and flat"
                        " out (0: none)")  # fmt: skip
    parser.add_argument("--model-delay", type=float, default=0.0, metavar="SECONDS",
                        help="the model takes this long per answer (default: at once)")  # fmt: skip
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                        help="the services' store: the embedded default, or PostgreSQL on"
                        " 127.0.0.1:5432 (a database of its own per service)")  # fmt: skip
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="first sample the bot worker with py-spy this long in a round"
                        " not counted, and print where its time goes")  # fmt: skip
    args = parser.parse_args()
    chosen = [Load(args.customers, args.turns, float(r)) for r in args.rates.split(",") if r]
    chosen += [Load(args.customers, args.turns, 0.0)] if args.flat_out else []
    chosen += [Load(1, args.turns, 0.0, args.alone)] if args.alone else []
    uvloop.run(main(chosen, args.runs, args.profile, args.model_delay, args.store))
