"""``threadline customers import FILE``: load a customer export into the directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from threadline.identity.imports import import_customers
from threadline.identity.service import Identity
from threadline.settings import load_settings
from threadline.store import open_directory, open_store


def add_customers_parser(commands: Any) -> None:
    customers = commands.add_parser("customers", help="the customer directory")
    actions = customers.add_subparsers(dest="customers_command", required=True)
    load = actions.add_parser(
        "import", help="load a CSV or JSON Lines export (id, phone, email, member_id)"
    )
    load.add_argument("file", type=Path)


async def run_customers_command(args: argparse.Namespace) -> None:
    settings = load_settings()
    store = await open_store(settings.store)
    try:
        identity = Identity(store, await open_directory(store))
        counts = await import_customers(identity, args.file)
    finally:
        await store.close()
    print(
        f"imported {counts['customers']} customers from {args.file.name}: {counts['linked']}"
        f" identifiers linked, {counts['verified']} verified, {counts['unchanged']} unchanged,"
        f" {counts['conflict']} conflicts"
    )
