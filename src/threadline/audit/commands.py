"""``threadline audit``: verify the trail, sign a checkpoint, show the latest entries.

They read the store the service is configured with (the same settings as
``threadline serve``). ``verify`` prints one line and exits 0, or fails with
``threadline: error: audit trail broken at entry S: <why>`` and exit status 1.
``checkpoint`` prints the signed checkpoint as one line of JSON on stdout (keep
it somewhere the database's writers cannot reach) and a summary on stderr;
``verify --from-checkpoint FILE`` then also proves the trail still extends it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from threadline.audit.chain import Checkpoint, StoredEntry, short
from threadline.audit.entry import stamp
from threadline.audit.keys import audit_key_from_settings
from threadline.audit.log import open_audit_log
from threadline.audit.trail import AuditTrail, BrokenTrail
from threadline.core.errors import ThreadlineError, ValidationError
from threadline.settings import Settings, load_settings
from threadline.store import open_store

DEFAULT_SHOWN = 20


def add_audit_parser(commands: Any) -> None:
    """Add ``audit verify|checkpoint|show`` to the ``threadline`` command's subparsers."""
    audit = commands.add_parser("audit", help="verify the audit trail of privileged actions")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser("verify", help="check every entry and checkpoint of the trail")
    verify.add_argument("--from-checkpoint", type=Path, metavar="FILE",
                        help="a checkpoint `threadline audit checkpoint` printed, which the"
                        " trail must still extend")  # fmt: skip
    actions.add_parser("checkpoint", help="sign a checkpoint of the trail's head and print it")
    show = actions.add_parser("show", help="print the latest entries")
    show.add_argument("--limit", type=int, default=DEFAULT_SHOWN,
                      help=f"how many (default {DEFAULT_SHOWN})")  # fmt: skip


async def run_audit_command(args: argparse.Namespace) -> None:
    """Run ``threadline audit …``; raises ThreadlineError with a one-line message on failure."""
    settings = load_settings()
    trusted = [_read_checkpoint(args.from_checkpoint)] if getattr(args, "from_checkpoint",
                                                                   None) else []  # fmt: skip
    store = await open_store(settings.store)
    try:
        if args.audit_command == "verify":
            print(await verify_trail(settings, store, trusted))
        elif args.audit_command == "checkpoint":
            checkpoint = await AuditTrail.open(settings, store).checkpoint()
            print(checkpoint.to_json().decode())
            print(f"checkpoint of entry {checkpoint.seq}, head {short(checkpoint.hash)}, signed"
                  f" {stamp(checkpoint.at)}", file=sys.stderr)  # fmt: skip
        elif args.audit_command == "show":
            for line in await show(store, args.limit):
                print(line)
    finally:
        await store.close()


async def verify_trail(settings: Settings, store: Any, trusted: list[Checkpoint]) -> str:
    """The ``verified`` line; BrokenTrail with the ``broken at`` line."""
    trail = AuditTrail(open_audit_log(store), audit_key_from_settings(settings).verifying())
    report = await trail.verify(trusted)
    if not report.ok:
        raise BrokenTrail(report)
    return report.line()


async def show(store: Any, limit: int) -> list[str]:
    """The latest ``limit`` entries, oldest first, one line each."""
    if limit < 1:
        raise ThreadlineError("--limit must be at least 1")
    log = open_audit_log(store)
    head = await log.head()
    rows = await log.read(max(1, head.seq - limit + 1), limit)
    return [_line(row) for row in rows]


def _line(row: StoredEntry) -> str:
    try:
        entry = row.entry
    except ValidationError:
        return f"{row.seq:>6}  (not an audit entry: `threadline audit verify` says more)"
    details = orjson.dumps(dict(entry.details), option=orjson.OPT_SORT_KEYS).decode()
    return "  ".join((f"{row.seq:>6}", stamp(entry.at), f"{entry.actor_kind}:{entry.actor_id}",
                      entry.action, entry.subject, f"purpose={entry.purpose}",
                      f"policy={entry.policy}", details))  # fmt: skip


def _read_checkpoint(path: Path) -> Checkpoint:
    try:
        return Checkpoint.from_json(path.read_bytes())
    except ThreadlineError as exc:
        raise ThreadlineError(f"{path}: {exc}") from None
