"""``threadline business``: check a pack, print its schema.

``check PATH`` prints every problem as ``file:line: where: message`` on stderr
and exits 1, or prints a one-line summary and exits 0. ``schema`` prints the
pack format's JSON Schema, for editors that complete and check YAML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from threadline.business.checker import json_schema, load
from threadline.business.loader import PackError


def add_business_parser(commands: Any) -> None:
    business = commands.add_parser("business", help="check a business pack, print its schema")
    actions = business.add_subparsers(dest="business_command", required=True)
    check = actions.add_parser("check", help="report every problem of a pack, file and line")
    check.add_argument("path", type=Path, help="the pack's folder (or its business.yaml)")
    actions.add_parser("schema", help="print the pack format's JSON Schema")


def run_business_command(args: argparse.Namespace) -> int:
    """Run ``threadline business …``; the exit status."""
    if args.business_command == "schema":
        sys.stdout.buffer.write(json_schema() + b"\n")
        return 0
    try:
        business = load(args.path)
    except PackError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"threadline: error: {count} problem{'s' * (count != 1)} in {args.path}",
              file=sys.stderr)  # fmt: skip
        return 1
    pack = business.pack
    counts = [(len(pack.locations), "location"), (len(pack.queues), "queue"),
              (len(pack.staff), "person on staff"), (len(pack.intents), "intent"),
              (len(pack.tools), "tool"), (len(pack.knowledge), "knowledge answer")]  # fmt: skip
    parts = ", ".join(_counted(n, noun) for n, noun in counts)
    print(f"{pack.name} ({pack.id}): {parts}: ok")
    return 0


def _counted(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    plural = noun.replace("person on staff", "people on staff")
    return f"{count} {plural if plural != noun else noun + 's'}"
