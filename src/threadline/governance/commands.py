"""``threadline customers erase ID [--yes]`` and ``threadline customers export ID``.

Both open the store as the service would (with its master key) and are meant for a
stopped service; with the service running, use ``POST /admin/customers/{id}/erase`` and
``GET /admin/customers/{id}/export``, which also purge the service's memory. (A running
service that sees ``customer.erased`` recorded here drops its cached keys all the same.)
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

import orjson

from threadline.audit import AuditTrail
from threadline.core.errors import ValidationError
from threadline.engine.conversations import Conversations
from threadline.engine.projections import ConversationIndex
from threadline.governance.erasure import Erasure
from threadline.governance.export import export_subject, record_export
from threadline.governance.subjects import Requester, check_customer_id, find_subject
from threadline.identity.service import Identity
from threadline.security.keys import key_from_settings
from threadline.security.master_key import key_provider_from_settings
from threadline.settings import Settings
from threadline.store import open_directory, open_store

#: The actor kind of someone at the command line (as the audit trail names it).
OPERATOR = "operator"


def add_subject_parsers(actions: Any) -> None:
    erase = actions.add_parser(
        "erase",
        help="erase a customer's personal data (their keys are destroyed) and every identity"
        " that became them; run it with the service stopped",
    )
    erase.add_argument("customer_id")
    erase.add_argument("--yes", action="store_true", help="erase without asking first")
    export = actions.add_parser(
        "export", help="everything held of a customer as one JSON bundle (an access request)"
    )
    export.add_argument("customer_id")
    export.add_argument("--output", "-o", type=Path, help="write it here, not to stdout")


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _confirmed(customer_id: str) -> bool:
    if not sys.stdin.isatty():
        raise ValidationError(
            f"erasing {customer_id} cannot be undone: pass --yes to erase without asking",
            [{"field": "--yes", "reason": "needed without a terminal"}],
        )
    answer = input(f"erase {customer_id} and every identity that became them? [y/N] ")
    return answer.strip().lower() in {"y", "yes"}


async def run_subject_command(settings: Settings, args: argparse.Namespace) -> None:
    customer_id = check_customer_id(args.customer_id)
    if args.customers_command == "erase" and not args.yes and not _confirmed(customer_id):
        print(f"{customer_id} was not erased")
        return
    token_key = key_from_settings(settings)
    keys = key_provider_from_settings(settings, token_key)
    store = await open_store(settings.store, keys=keys)
    try:
        identity = Identity(store, await open_directory(store))
        index = await ConversationIndex.build(store)
        audit = AuditTrail.open(settings, store, token_key)
        if args.customers_command == "erase":
            erasure = Erasure(store, identity, index, Conversations(store), audit=audit)
            erased = await erasure.erase(customer_id, Requester(OPERATOR, _operator()))
            print(erased.line())
            return
        found = await find_subject(customer_id, identity, index)
        bundle = await export_subject(found, identity, audit=audit)
        await record_export(audit, found, Requester(OPERATOR, _operator()))
    finally:
        await store.close()
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2)
    if args.output is None:
        sys.stdout.buffer.write(data + b"\n")
        return
    args.output.write_bytes(data + b"\n")
    print(f"wrote the data of {found.customer_id} to {args.output}:"
          f" {len(found.conversations)} conversations")  # fmt: skip
