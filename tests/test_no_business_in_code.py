"""Nothing of the demo business is in the product's code: it is all in its pack.

The names, places, people, customers and orders of the Northwind pack (and of
its own systems' records) are read from the pack itself and searched for in
every source file the package ships; each hit is a business fact that belongs
in a pack.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import NORTHWIND

SOURCE = Path(__file__).resolve().parent.parent / "src" / "threadline"
SHIPPED = {".py", ".html", ".js", ".css", ".yaml", ".sql"}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[\s,]+", text) if len(w) >= 3}


def business_names(northwind) -> set[str]:
    """What names the demo business: its brand, places, people, customers, orders."""
    pack = northwind.pack
    names = {pack.name, pack.id, *_words(pack.name)} - {"Devices"}
    for loc in pack.locations:
        names |= {loc.id, loc.name, loc.address, loc.city}
        names |= {loc.short_name} if loc.short_name else set()
    for person in pack.staff:
        names |= {person.id, person.name, *person.name.split()}
        names |= {person.transfer_to} if person.transfer_to else set()
    records = yaml.safe_load((NORTHWIND / "systems" / "records.yaml").read_text())
    for customer in records["customers"]:
        names |= {customer["id"], customer["name"], *customer["name"].split(),
                  customer["phone"], customer["email"], customer["postcode"]}  # fmt: skip
        names |= {customer["member_id"]} if customer["member_id"] else set()
    for order in records["orders"]:
        names |= {order["number"], order["item"]}
    return {n for n in names if n}


def test_no_source_file_names_the_demo_business(northwind) -> None:
    names = business_names(northwind)
    pattern = re.compile(
        r"(?<!\w)(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        + r")(?!\w)", re.IGNORECASE,
    )  # fmt: skip
    hits = []
    for path in sorted(SOURCE.rglob("*")):
        if path.suffix not in SHIPPED or "__pycache__" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in pattern.finditer(line):
                hits.append(f"{path.relative_to(SOURCE.parent)}:{number}: {match[0]!r}")
    assert hits == []


def test_the_search_finds_a_business_name_where_there_is_one(northwind) -> None:
    names = business_names(northwind)
    assert {"Northwind", "sf-market", "agent-ana", "Maya", "1042", "94103"} <= names
