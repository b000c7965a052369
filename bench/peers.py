"""Peer benchmarks: other libraries doing the work our event store does.

Every function here builds its own fresh database, measures with
``time.perf_counter`` and returns plain numbers, so the benchmark command can
print the peers next to threadline's own figures.

Locations
---------
SQLite functions take a *directory*: a fresh temporary directory is created
inside it (``None`` means the system temp dir), the database file lives there,
and the directory is removed afterwards. Pass a directory on the filesystem
you want to measure, because fsync cost is what these numbers are about.

PostgreSQL functions take a libpq DSN. Each run creates a fresh schema named
``bench_<peer>_<random>``, points the peer at it, and drops it (CASCADE)
afterwards, so runs never see each other's tables.

Run ``python -m bench.peers`` from the repository root for a smoke run. Set
``THREADLINE_BENCH_PG_DSN`` to choose the PostgreSQL server; otherwise
``user=postgres`` and then the current OS user are tried on 127.0.0.1:5432,
database ``test``.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import platform
import random
import sqlite3
import statistics
import string
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

Backend = Literal["sqlite", "postgres"]
PathLike = str | os.PathLike[str]

#: Environment variable that selects the PostgreSQL server for the smoke run.
DSN_ENV = "THREADLINE_BENCH_PG_DSN"

RAW_BLOB_BYTES = 300
MESSAGE_CHARS = 250


# --------------------------------------------------------------------------- helpers


def _texts(count: int, length: int = MESSAGE_CHARS, seed: int = 7) -> list[str]:
    """Distinct pseudo-random texts, so no peer gains from compressing repeats."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + "      "
    return ["".join(rng.choices(alphabet, k=length)) for _ in range(count)]


@contextmanager
def _fresh_dir(base: PathLike | None, tag: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"threadline-bench-{tag}-", dir=base) as tmp:
        yield Path(tmp)


@contextmanager
def _fresh_schema(dsn: str, tag: str) -> Iterator[str]:
    """A new, empty schema, dropped with everything in it on exit."""
    name = f"bench_{tag}_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))


def _schema_bytes(conn: psycopg.Connection[Any], schema: str) -> int:
    """Heap + TOAST + indexes of every table in ``schema``."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (schema,),
    ).fetchone()
    assert row is not None
    value = row["coalesce"] if isinstance(row, dict) else row[0]
    return int(value)


def _sqlite_bytes(db_path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        candidate = Path(f"{db_path}{suffix}")
        if candidate.exists():
            total += candidate.stat().st_size
    return total


def _check_backend(backend: str) -> None:
    if backend not in ("sqlite", "postgres"):
        raise ValueError(f"backend must be 'sqlite' or 'postgres', not {backend!r}")


def find_postgres_dsn(timeout_s: int = 3) -> str | None:
    """First DSN that answers ``select 1``: $THREADLINE_BENCH_PG_DSN, postgres, OS user."""
    candidates: list[str] = []
    if os.environ.get(DSN_ENV):
        candidates.append(os.environ[DSN_ENV])
    for user in ("postgres", getpass.getuser()):
        candidates.append(f"host=127.0.0.1 port=5432 dbname=test user={user}")
    for dsn in candidates:
        try:
            with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            continue
        return dsn
    return None


# --------------------------------------------------------------------------- raw drivers


def raw_sqlite_commits(path: PathLike | None = None, n: int = 2000) -> float:
    """Durable single-row commits per second with :mod:`sqlite3`.

    WAL mode, ``synchronous=FULL``; each transaction is BEGIN, one INSERT of a
    300-byte blob, COMMIT. ``path`` is the directory to create the database in.
    """
    blobs = [os.urandom(RAW_BLOB_BYTES) for _ in range(64)]
    with _fresh_dir(path, "raw-sqlite") as tmp:
        conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"could not switch to WAL, journal_mode={mode}")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            insert = "INSERT INTO events (body) VALUES (?)"
            start = time.perf_counter()
            for i in range(n):
                conn.execute("BEGIN")
                conn.execute(insert, (blobs[i % len(blobs)],))
                conn.execute("COMMIT")
            elapsed = time.perf_counter() - start
        finally:
            conn.close()
    return n / elapsed


def raw_postgres_commits(dsn: str, n: int = 2000) -> float:
    """Single-row commits per second with psycopg 3 (sync, autocommit).

    One INSERT of a 300-byte ``bytea`` per commit, server default
    ``synchronous_commit`` (normally ``on``).
    """
    blobs = [os.urandom(RAW_BLOB_BYTES) for _ in range(64)]
    with _fresh_schema(dsn, "raw") as schema, psycopg.connect(dsn, autocommit=True) as conn:
        table = sql.Identifier(schema, "events")
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, body bytea NOT NULL)").format(table)
        )
        insert = sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(table)
        start = time.perf_counter()
        for i in range(n):
            conn.execute(insert, (blobs[i % len(blobs)],))
        elapsed = time.perf_counter() - start
    return n / elapsed


# --------------------------------------------------------------------------- eventsourcing


class BenchConversation(Aggregate):
    """One conversation; every message is one stored event."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.message_count = 0

    @event("MessageAdded")
    def add_message(self, text: str) -> None:
        self.message_count += 1


class BenchConversations(Application[uuid.UUID]):
    """Plain eventsourcing application; no snapshots, no aggregate cache."""


def _es_postgres_env(dsn: str, schema: str, pool_size: int) -> dict[str, str]:
    params = conninfo_to_dict(dsn)

    def param(key: str, env_key: str, default: str) -> str:
        value = params.get(key)
        return str(value) if value not in (None, "") else os.environ.get(env_key, default)

    user = param("user", "PGUSER", getpass.getuser())
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": param("dbname", "PGDATABASE", user),
        "POSTGRES_HOST": param("host", "PGHOST", ""),
        "POSTGRES_PORT": param("port", "PGPORT", "5432"),
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": param("password", "PGPASSWORD", ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
    }


@contextmanager
def _es_app(backend: Backend, location: Any, pool_size: int) -> Iterator[BenchConversations]:
    _check_backend(backend)
    if backend == "sqlite":
        with _fresh_dir(location, "eventsourcing") as tmp:
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(tmp / "eventsourcing.db"),
            }
            app = BenchConversations(env=env)
            try:
                yield app
            finally:
                app.close()
    else:
        with _fresh_schema(location, "es") as schema:
            app = BenchConversations(env=_es_postgres_env(location, schema, pool_size))
            try:
                yield app
            finally:
                app.close()


def eventsourcing_saves(
    backend: Backend,
    dsn_or_path: Any = None,
    threads: int = 16,
    conversations: int = 64,
    events_per_conversation: int = 20,
    duration: float | None = None,
) -> float:
    """Concurrent saves per second through an ``eventsourcing`` Application.

    ``conversations`` aggregates are created (untimed), then ``threads`` threads
    each own ``conversations[i::threads]`` and, round-robin over their own
    aggregates, add one message and ``app.save()`` it: one event per save. The
    run stops after ``events_per_conversation`` rounds, or after ``duration``
    seconds if given. ``dsn_or_path`` is a directory for SQLite, a DSN for
    PostgreSQL.
    """
    if threads < 1 or conversations < threads:
        raise ValueError("need threads >= 1 and conversations >= threads")
    texts = _texts(256)
    with _es_app(backend, dsn_or_path, pool_size=threads) as app:
        aggregates = [BenchConversation(channel="chat") for _ in range(conversations)]
        app.save(*aggregates)

        barrier = threading.Barrier(threads + 1)
        counts = [0] * threads
        errors: list[BaseException] = []

        def work(index: int) -> None:
            mine = aggregates[index::threads]
            done = 0
            try:
                barrier.wait()
                deadline = time.perf_counter() + duration if duration is not None else None
                rounds = 0
                while True:
                    if deadline is None and rounds >= events_per_conversation:
                        break
                    for aggregate in mine:
                        aggregate.add_message(texts[done % len(texts)])
                        app.save(aggregate)
                        done += 1
                    rounds += 1
                    if deadline is not None and time.perf_counter() >= deadline:
                        break
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()
            finally:
                counts[index] = done

        workers = [
            threading.Thread(target=work, args=(i,), name=f"es-bench-{i}") for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        with suppress(threading.BrokenBarrierError):
            barrier.wait()
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"{len(errors)} eventsourcing worker(s) failed") from errors[0]
    return sum(counts) / elapsed


def eventsourcing_sequential(backend: Backend, dsn_or_path: Any = None, n: int = 2000) -> float:
    """Sequential saves per second: one aggregate, one new event per ``app.save()``."""
    texts = _texts(256)
    with _es_app(backend, dsn_or_path, pool_size=1) as app:
        aggregate = BenchConversation(channel="chat")
        app.save(aggregate)
        start = time.perf_counter()
        for i in range(n):
            aggregate.add_message(texts[i % len(texts)])
            app.save(aggregate)
        elapsed = time.perf_counter() - start
    return n / elapsed


# --------------------------------------------------------------------------- LangGraph


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _chat_graph(checkpointer: Any, texts: Sequence[str]) -> Any:
    def reply(state: ChatState) -> dict[str, list[dict[str, str]]]:
        turn = len(state["messages"])
        return {"messages": [{"role": "assistant", "content": texts[turn % len(texts)]}]}

    builder = StateGraph(ChatState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=checkpointer)


def _sample_windows(turns: int, sample_at: Sequence[int]) -> dict[int, range]:
    """Five 1-based turns centred on each sample point, shifted to fit in the run."""
    windows: dict[int, range] = {}
    for point in sample_at:
        point = min(max(point, 1), turns)
        lo = max(1, point - 2)
        hi = min(turns, lo + 4)
        lo = max(1, hi - 4)
        windows[point] = range(lo, hi + 1)
    return windows


def _run_turns(graph: Any, turns: int, durability: str | None) -> list[float]:
    config: RunnableConfig = {"configurable": {"thread_id": "bench-thread"}}
    kwargs: dict[str, Any] = {} if durability is None else {"durability": durability}
    latencies: list[float] = []
    for _ in range(turns):
        start = time.perf_counter()
        graph.invoke({"messages": []}, config, **kwargs)
        latencies.append(time.perf_counter() - start)
    final = graph.get_state(config).values["messages"]
    if len(final) != turns:
        raise RuntimeError(f"expected {turns} messages in the thread, found {len(final)}")
    return latencies


def _langgraph_sqlite(
    base: PathLike | None, texts: Sequence[str], turns: int, durability: str | None
) -> tuple[list[float], float, int]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with _fresh_dir(base, "langgraph") as tmp:
        db_path = tmp / "checkpoints.sqlite"
        conn = sqlite3.connect(db_path, check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            start = time.perf_counter()
            latencies = _run_turns(_chat_graph(saver, texts), turns, durability)
            total = time.perf_counter() - start
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            storage = _sqlite_bytes(db_path)
        finally:
            conn.close()
    return latencies, total, storage


def _langgraph_postgres(
    dsn: str, texts: Sequence[str], turns: int, durability: str | None
) -> tuple[list[float], float, int]:
    from langgraph.checkpoint.postgres import PostgresSaver

    with (
        _fresh_schema(dsn, "langgraph") as schema,
        psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn,
    ):
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        saver = PostgresSaver(conn)
        saver.setup()
        start = time.perf_counter()
        latencies = _run_turns(_chat_graph(saver, texts), turns, durability)
        total = time.perf_counter() - start
        storage = _schema_bytes(conn, schema)
    return latencies, total, storage


def langgraph_turns(
    backend: Backend,
    dsn_or_path: Any = None,
    turns: int = 1000,
    sample_at: Sequence[int] = (10, 1000),
    durability: str | None = None,
) -> dict[str, float]:
    """Per-turn latency and storage of a LangGraph chat thread with a checkpointer.

    The graph's state is ``messages: Annotated[list[AnyMessage], add_messages]``;
    each ``graph.invoke`` on one ``thread_id`` runs a node that appends one
    250-character assistant message (no LLM). Returns, for every sample point
    ``s`` (clamped to ``turns``), ``turn_<s>_ms``: the median latency of the five
    turns around it; plus ``storage_bytes`` and ``bytes_per_turn`` after the run
    and ``total_s``/``turns``. ``durability`` is passed to ``invoke`` when set
    (LangGraph's default is ``"async"``).
    """
    _check_backend(backend)
    texts = _texts(turns, seed=11)
    windows = _sample_windows(turns, sample_at)

    run = _langgraph_sqlite if backend == "sqlite" else _langgraph_postgres
    latencies, total, storage = run(dsn_or_path, texts, turns, durability)

    result: dict[str, float] = {"turns": float(turns), "total_s": total}
    for point, window in windows.items():
        result[f"turn_{point}_ms"] = statistics.median(latencies[t - 1] for t in window) * 1e3
    result["storage_bytes"] = float(storage)
    result["bytes_per_turn"] = storage / turns
    return result


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _postgres_version(dsn: str | None) -> str:
    if dsn is None:
        return "unavailable (no server answered)"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
    except psycopg.Error as exc:
        return f"unavailable ({exc.__class__.__name__})"
    assert row is not None and sync is not None
    return f"{row[0]} (synchronous_commit={sync[0]})"


def describe_machine(dsn: str | None = None) -> str:
    """One line per fact: CPU, cores, memory, Python, SQLite, PostgreSQL, libraries."""
    dsn = dsn if dsn is not None else find_postgres_dsn()
    probe = sqlite3.connect(":memory:")
    try:
        default_sync = probe.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        probe.close()
    libraries = (
        "eventsourcing",
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-sqlite",
        "langgraph-checkpoint-postgres",
        "langchain-core",
        "psycopg",
    )
    lines = [
        f"CPU: {_cpu_model()}",
        f"Cores: {os.cpu_count()}",
        f"Memory: {_memory()}",
        f"OS: {platform.platform()}",
        f"Python: {platform.python_version()} ({sys.implementation.name})",
        f"SQLite: {sqlite3.sqlite_version} (default synchronous={default_sync})",
        f"PostgreSQL: {_postgres_version(dsn)}",
        f"psycopg libpq: {psycopg.pq.version()} ({psycopg.pq.__impl__})",
        "Libraries: " + ", ".join(f"{name} {_version(name)}" for name in libraries),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- smoke run


def _timed(label: str, func: Callable[[], Any]) -> None:
    start = time.perf_counter()
    value = func()
    took = time.perf_counter() - start
    if isinstance(value, dict):
        shown = ", ".join(f"{key}={val:,.2f}" for key, val in value.items())
    else:
        shown = f"{value:,.1f}/s"
    print(f"{label:<40} {shown}   [{took:.1f}s]", flush=True)


def main() -> None:
    dsn = find_postgres_dsn()
    print(describe_machine(dsn))
    print()
    backends: list[Backend] = ["sqlite", "postgres"] if dsn is not None else ["sqlite"]
    if dsn is None:
        print("PostgreSQL not reachable; skipping PostgreSQL peers")

    def location(backend: Backend) -> Any:
        return dsn if backend == "postgres" else None

    _timed("raw sqlite3 commits", lambda: raw_sqlite_commits(None, n=2000))
    if dsn is not None:
        _timed("raw psycopg commits", lambda: raw_postgres_commits(dsn, n=2000))
    for backend in backends:
        where = location(backend)
        _timed(
            f"eventsourcing sequential ({backend})",
            partial(eventsourcing_sequential, backend, where, n=1000),
        )
        _timed(
            f"eventsourcing 16 threads ({backend})",
            partial(
                eventsourcing_saves,
                backend,
                where,
                threads=16,
                conversations=64,
                events_per_conversation=20,
            ),
        )
    for backend in backends:
        _timed(
            f"langgraph turns ({backend})",
            partial(langgraph_turns, backend, location(backend), turns=200, sample_at=(10, 200)),
        )


if __name__ == "__main__":
    main()
