"""``threadline customers import FILE``: the business's customer export into the directory.

A CSV file with a header row, or JSON Lines (one object a line), with the
columns ``id`` (required), ``phone``, ``email`` and ``member_id``. Every row is
checked before anything is written, so a file with a bad row writes nothing
and names the row. Each identifier becomes an ``identity.verified`` event on
the customer's stream (method ``import``), keyed so that importing the same
file again changes nothing; an identifier another customer holds raises a
conflict for a person to settle, as every link does.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from threadline.core.errors import ValidationError
from threadline.identity.identifiers import Identifier, parse
from threadline.identity.service import Identity

COLUMNS: Final = {"phone": "phone", "email": "email", "member_id": "member"}
KNOWN: Final = frozenset({"id", "name", *COLUMNS})
MAX_ROWS: Final = 1_000_000


class CustomerFileError(ValidationError):
    """A customer file that cannot be imported; the message names the line."""


@dataclass(frozen=True, slots=True)
class ImportedCustomer:
    line: int
    customer_id: str
    identifiers: tuple[Identifier, ...]


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CustomerFileError(f"{path.name}:{number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise CustomerFileError(f"{path.name}:{number}: each line must be a JSON object")
            out.append((number, row))
        return out
    if path.suffix.lower() != ".csv":
        raise CustomerFileError(f"{path.name}: a customer file is .csv or .jsonl")
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or ()) - KNOWN
    if unknown or "id" not in (reader.fieldnames or ()):
        raise CustomerFileError(
            f"{path.name}:1: columns must include id and may be"
            f" {', '.join(sorted(KNOWN))}; unknown: {', '.join(sorted(unknown))}"
        )
    return [(reader.line_num, dict(row)) for row in reader]


def read_customers(path: Path) -> list[ImportedCustomer]:
    """Every row of ``path``, checked; CustomerFileError naming the first bad one."""
    rows = _rows(path)
    if len(rows) > MAX_ROWS:
        raise CustomerFileError(f"{path.name}: more than {MAX_ROWS:,} rows; split the file")
    out: list[ImportedCustomer] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        unknown = set(row) - KNOWN
        if unknown:
            raise CustomerFileError(f"{path.name}:{number}: unknown field {sorted(unknown)[0]!r}")
        customer_id = str(row.get("id") or "").strip()
        if not customer_id or len(customer_id) > 200 or any(c.isspace() or c == ":"
                                                            for c in customer_id):  # fmt: skip
            raise CustomerFileError(f"{path.name}:{number}: id must be 1-200 characters, no spaces")
        if customer_id in seen:
            raise CustomerFileError(f"{path.name}:{number}: {customer_id} is also on line"
                               f" {seen[customer_id]}")  # fmt: skip
        seen[customer_id] = number
        identifiers = []
        for column, kind in COLUMNS.items():
            value = row.get(column)
            if value is None or not str(value).strip():
                continue
            try:
                identifiers.append(parse(kind, str(value)))
            except ValidationError as exc:
                raise CustomerFileError(f"{path.name}:{number}: {exc}") from None
        out.append(ImportedCustomer(number, customer_id, tuple(identifiers)))
    return out


async def import_customers(identity: Identity, path: Path) -> Counter[str]:
    """Import ``path`` into the directory; how many identifiers were linked, unchanged or in
    conflict, and how many customers."""
    customers = read_customers(path)
    counts: Counter[str] = Counter(customers=len(customers))
    for customer in customers:
        outcomes = await identity.learn(customer.customer_id, customer.identifiers,
                                        method="import", source=path.name)  # fmt: skip
        counts.update(o.status for o in outcomes)
    return counts
