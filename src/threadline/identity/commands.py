"""``threadline customers import FILE``: load a customer export into the directory.
``threadline customers unlock ID --reason R``: lift the lockout wrong proofs put on a customer.
``threadline customers erase ID [--yes]`` and ``export ID``: the data-subject requests
(:mod:`threadline.governance.commands`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from threadline.core.errors import ValidationError
from threadline.core.events import Actor, new_id
from threadline.identity.imports import import_customers
from threadline.identity.service import Identity
from threadline.security.master_key import key_provider_from_settings
from threadline.settings import load_settings
from threadline.store import open_directory, open_store


def add_customers_parser(commands: Any) -> None:
    customers = commands.add_parser("customers", help="the customer directory")
    actions = customers.add_subparsers(dest="customers_command", required=True)
    load = actions.add_parser(
        "import", help="load a CSV or JSON Lines export (id, phone, email, member_id)"
    )
    load.add_argument("file", type=Path)
    unlock = actions.add_parser(
        "unlock", help="lift the lockout that wrong proofs put on a customer"
    )
    unlock.add_argument("customer_id")
    unlock.add_argument("--reason", required=True, help="why (recorded on the customer)")
    from threadline.governance.commands import add_subject_parsers

    add_subject_parsers(actions)


async def run_customers_command(args: argparse.Namespace) -> None:
    settings = load_settings()
    if args.customers_command in {"erase", "export"}:
        from threadline.governance.commands import run_subject_command

        await run_subject_command(settings, args)
        return
    store = await open_store(settings.store, keys=key_provider_from_settings(settings))
    try:
        identity = Identity(store, await open_directory(store))
        if args.customers_command == "unlock":
            await _unlock(identity, args.customer_id, args.reason)
            return
        counts = await import_customers(identity, args.file)
    finally:
        await store.close()
    print(
        f"imported {counts['customers']} customers from {args.file.name}: {counts['linked']}"
        f" identifiers linked, {counts['verified']} verified, {counts['unchanged']} unchanged,"
        f" {counts['conflict']} conflicts"
    )


async def _unlock(identity: Identity, customer_id: str, reason: str) -> None:
    if len(reason.strip()) < 3:
        raise ValidationError("--reason needs at least 3 characters",
                              [{"field": "reason", "reason": "too short"}])  # fmt: skip
    await identity.record(customer_id, "verification.unlocked",
                          {"unlocked_by": "cli", "reason": reason.strip()},
                          Actor("system", "cli"), key=f"unlock:{new_id()}")  # fmt: skip
    print(f"lifted the lockout on {customer_id}")
