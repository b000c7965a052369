"""The ``threadline`` command, and the start-up of the service's process."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from threadline.audit.commands import add_audit_parser, run_audit_command
from threadline.business.commands import add_business_parser, run_business_command
from threadline.business.loader import PackError
from threadline.core.catalogue import CATALOGUE
from threadline.core.errors import ThreadlineError
from threadline.engine.conversations import Conversations
from threadline.evaluation.commands import add_eval_parser, run_eval_command
from threadline.governance.retention import add_retention_parser, run_retention_command
from threadline.identity.commands import add_customers_parser, run_customers_command
from threadline.logs import configure_logging
from threadline.security.commands import add_token_parser, run_token_command
from threadline.security.tokens import TokenIssuer, span
from threadline.settings import Settings, load_settings
from threadline.store import open_store

if TYPE_CHECKING:
    from threadline.business import Business

# One OpenBLAS thread, set before numpy loads: a fork (uvloop starts child processes with one)
# while Whisper's feature extraction is inside a multi-threaded OpenBLAS call hangs in
# OpenBLAS's fork handler, and with it the whole service (espeak-ng is started with vfork,
# which runs no fork handler). With one thread there is no worker for the handler to wait
# for (tests/test_cli.py checks the thread count). An explicit setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: The collector in a long-running process: allocations between young collections, and
#: young/middle passes between older ones. Python's defaults (700, 10, 10) gave a worse chat
#: tail in the load benchmark (docs/benchmarks.md).
COLLECTOR_THRESHOLDS: Final = (50_000, 50, 100)


def tune_collector() -> None:
    """Collect once, freeze what is alive, and collect young objects less often.

    A service keeps tens of thousands of conversation states and index entries
    alive; a full pass over them takes tens of milliseconds. Frozen, they are
    never walked again, so collections only see what came since. The service
    calls it once its start-up is done, the bot worker as it starts.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline", description="One canonical conversation across every channel."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service (HTTP API, chat, streams)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--business", type=Path, help="the business pack (THREADLINE_BUSINESS)")
    demo = commands.add_parser(
        "demo", help="serve a pack and play the reference journey (chat → call → store)"
    )
    demo.add_argument("--business", type=Path, help="the business pack (THREADLINE_BUSINESS)")
    replay = commands.add_parser("replay", help="print a conversation's timeline and state")
    replay.add_argument("conversation_id")
    schema = commands.add_parser("schema", help="event schemas")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write one JSON Schema per type and version")
    export.add_argument("directory", type=Path)
    add_token_parser(commands)
    add_business_parser(commands)
    add_customers_parser(commands)
    add_retention_parser(commands)
    add_audit_parser(commands)
    add_eval_parser(commands)
    return parser


def _serve(host: str, port: int, pack: Path | None) -> None:
    import uvicorn

    from threadline.api.app import create_app
    from threadline.api.serving import server_config
    from threadline.business import load_configured
    from threadline.channels.voice import missing as voice_missing
    from threadline.security.master_key import key_provider_from_settings

    settings = load_settings()
    if pack is not None:
        settings = settings.model_copy(update={"business": pack})
    if "THREADLINE_BOT_PROCESS" not in os.environ:  # the service's default: a core for the bot
        settings = settings.model_copy(update={"bot_process": True})
    configure_logging(settings.env)
    business = load_configured(settings.business)  # a bad pack stops us here, every problem said
    issuer = TokenIssuer.from_settings(settings)  # a weak or missing secret stops us here
    key_provider_from_settings(settings, issuer.key)  # so does production without a master key
    base = f"http://{host}:{port}"
    print(f"Threadline on {base}  (store: {settings.store}, {settings.env})")
    print(f"  business        {business.name} ({settings.business})")
    print(f"  automated agent {_agent_described(settings, business)}")
    print(f"  customer chat   {base}/chat")
    print(f"  agent desk      {base}/desk")
    print(f"  associate app   {base}/associate")
    print(f"  store kiosk     {base}/kiosk")
    print(f"  API document    {base}/openapi.json")
    hint = voice_missing()
    if hint is not None:
        print(f"  {hint}")
    for line in _sign_in(settings, business, issuer, base):
        print(line)
    sys.stdout.flush()
    app = create_app(settings)
    config = server_config(app, host=host, port=port)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            tune_collector()  # what start-up built (the index, the business) is frozen too
            _reload_on_sighup(app)

    Server(config).run()


def _agent_described(settings: Settings, business: Business) -> str:
    from threadline.agents.configured import described  # loads numpy: after the setting above

    return described(settings, business)


def _reload_on_sighup(app: Any) -> None:
    """``kill -HUP`` reads the business pack again (a bad one is refused and logged)."""
    from threadline.api.deps import service_of
    from threadline.service.reload import reload_on_hangup

    service = service_of(app)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_on_hangup(service)))


def _sign_in(settings: Settings, business: Business, issuer: TokenIssuer, base: str) -> list[str]:
    """How staff sign in, as the banner says it: links once per data directory in
    development, never a token in production."""
    from threadline.security.sign_in import LINK_TTL, development_links, first_start

    if settings.env == "production":
        return ["  sign-in: staff get tokens from `threadline token create` or the identity"
                " provider"]  # fmt: skip
    if not first_start(settings.store):
        return ["  sign-in links (development): `threadline token links` prints them"]
    lines = [f"  sign-in links (DEVELOPMENT ONLY, {span(LINK_TTL)}, shown once;"
             " `threadline token links` prints them again):"]  # fmt: skip
    links = development_links(business, issuer, base)
    lines += [f"    {person.subject:<18} {url}" for person, url in links]
    return lines


async def _demo(pack: Path | None) -> None:
    from threadline.demo import run_demo

    await run_demo(pack, load_settings())


async def _replay(conversation_id: str) -> None:
    from threadline.demo import render_state, render_timeline
    from threadline.security.master_key import key_provider_from_settings

    settings = load_settings()
    store = await open_store(settings.store, keys=key_provider_from_settings(settings))
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
            _serve(args.host, args.port, args.business)
        elif args.command == "demo":
            asyncio.run(_demo(args.business))
        elif args.command == "replay":
            asyncio.run(_replay(args.conversation_id))
        elif args.command == "token":
            run_token_command(args)
        elif args.command == "schema":
            written = export_schemas(args.directory)
            print(f"wrote {len(written)} schemas to {args.directory}")
        elif args.command == "business":
            return run_business_command(args)
        elif args.command == "customers":
            asyncio.run(run_customers_command(args))
        elif args.command == "retention":
            asyncio.run(run_retention_command(args))
        elif args.command == "audit":
            asyncio.run(run_audit_command(args))
        elif args.command == "eval":
            return run_eval_command(args)
    except PackError as exc:
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        first = exc.problems[0] if exc.problems else exc
        print(f"threadline: error: {first}{more}; `threadline business check` lists them",
              file=sys.stderr)  # fmt: skip
        return 1
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
