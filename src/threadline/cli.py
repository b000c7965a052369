"""The ``threadline`` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import orjson

from threadline.core.catalogue import CATALOGUE
from threadline.core.errors import ThreadlineError
from threadline.engine.conversations import Conversations
from threadline.security.commands import add_token_parser, run_token_command
from threadline.settings import load_settings
from threadline.store import open_store

# One OpenBLAS thread, set before numpy loads (the speech pipeline loads it later): under
# uvloop every espeak-ng sentence is a fork, and a fork while Whisper's feature extraction is
# inside a multi-threaded OpenBLAS call hangs in OpenBLAS's fork handler, and with it the whole
# service (bench/uvloop_fork_repro.py). An explicit setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline", description="One canonical conversation across every channel."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service (HTTP API, chat, streams)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    commands.add_parser("demo", help="run the demo journey (chat → voice → in person)")
    replay = commands.add_parser("replay", help="print a conversation's timeline and state")
    replay.add_argument("conversation_id")
    schema = commands.add_parser("schema", help="event schemas")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write one JSON Schema per type and version")
    export.add_argument("directory", type=Path)
    add_token_parser(commands)
    bench = commands.add_parser("bench", help="run the storage benchmark")
    bench.add_argument("--runs", type=int, default=5)
    bench.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    bench.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    return parser


def _serve(host: str, port: int) -> None:
    import uvicorn

    from threadline.api.app import create_app
    from threadline.runtime_tuning import tune_collector
    from threadline.security import TokenIssuer

    settings = load_settings()
    if "THREADLINE_BOT_PROCESS" not in os.environ:  # the service's default: a core for the bot
        settings = settings.model_copy(update={"bot_process": True})
    issuer = TokenIssuer.from_settings(settings)
    base = f"http://{host}:{port}"
    print(f"Threadline on {base}  (store: {settings.store})")
    print(f"  customer chat   {base}/chat")
    print(f"  agent desk      {base}/desk?token=<a token below>")
    print(f"  associate app   {base}/associate?token=<an assoc- token below>")
    print(f"  store kiosk     {base}/kiosk?token=<the kiosk token below>")
    print(f"  API document    {base}/openapi.json")
    print("  sign-in tokens (8 hours):")
    for subject, scope, claims in (
        ("agent-ana", "agent", {"queues": ["orders", "billing"]}),
        ("agent-ben", "agent", {"queues": ["repairs", "billing"]}),
        ("sup-sam", "supervisor", {}),
        ("assoc-priya", "associate", {"store": "sf-market"}),
        ("assoc-diego", "associate", {"store": "oak-broadway"}),
        ("kiosk-sf-market", "kiosk", {"store": "sf-market"}),
    ):
        token = issuer.issue(subject, [scope], timedelta(hours=8), claims).token
        print(f"    {subject:<15} {token}")
    sys.stdout.flush()
    # Chat frames are a few hundred bytes: compressing them costs more CPU than it saves.
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level="info",
        ws="websockets-sansio", ws_per_message_deflate=False,
    )  # fmt: skip
    tune_collector()
    uvicorn.Server(config).run()


async def _demo() -> None:
    from threadline.demo import render_state, render_timeline, run_journey

    settings = load_settings()
    store = await open_store(settings.store)
    try:
        conversations = Conversations(store, snapshot_every=settings.snapshot_every)
        conversation_id, state = await run_journey(conversations)
        print(f"conversation {conversation_id}  (store: {settings.store})\n")
        print(render_timeline(await conversations.timeline(conversation_id)))
        print()
        print(render_state(state))
    finally:
        await store.close()


async def _replay(conversation_id: str) -> None:
    from threadline.demo import render_state, render_timeline

    settings = load_settings()
    store = await open_store(settings.store)
    try:
        conversations = Conversations(store)
        timeline = await conversations.timeline(conversation_id)
        if not timeline:
            raise ThreadlineError(f"no conversation {conversation_id} in {settings.store}")
        print(render_timeline(timeline))
        print()
        print(render_state(await conversations.rehydrate(conversation_id, snapshots=False)))
    finally:
        await store.close()


def export_schemas(directory: Path) -> list[Path]:
    """Write ``<type>.v<version>.json`` for every catalogue entry; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in CATALOGUE:
        path = directory / f"{spec.type}.v{spec.version}.json"
        path.write_bytes(orjson.dumps(CATALOGUE.json_schema(spec), option=orjson.OPT_INDENT_2))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Inside the try: `token` reports bad arguments as one error line.
        args = _parser().parse_args(argv)
        if args.command == "serve":
            _serve(args.host, args.port)
        elif args.command == "demo":
            asyncio.run(_demo())
        elif args.command == "replay":
            asyncio.run(_replay(args.conversation_id))
        elif args.command == "token":
            run_token_command(args)
        elif args.command == "schema":
            written = export_schemas(args.directory)
            print(f"wrote {len(written)} schemas to {args.directory}")
        elif args.command == "bench":
            try:
                # The benchmark lives beside the package in a source checkout.
                run_benchmark = importlib.import_module("bench.run").main
            except ImportError:
                raise ThreadlineError(
                    "the benchmark ships with the source checkout: run `make bench` there"
                ) from None
            asyncio.run(run_benchmark(args.runs, args.quick, args.output))
    except ThreadlineError as exc:
        print(f"threadline: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"threadline: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
