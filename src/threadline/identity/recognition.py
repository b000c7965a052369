"""Recognising a customer by a phone number, email or member id, across the directory and the
business's own customer system.

The directory answers first. When it does not know the identifier yet, the
pack's customer look-up tool is asked; a record it returns is learned into the
directory through the log (``identity.verified``, method ``system``), so the
next contact is recognised without asking again, after a restart too.
"""

from __future__ import annotations

from typing import Final, Literal

import structlog

from threadline.core.errors import ValidationError
from threadline.identity.identifiers import Identifier, parse
from threadline.identity.service import Identity
from threadline.systems import CustomerRecord, CustomerRecords
from threadline.systems.customers import By as LookupBy
from threadline.tools import ToolFailure

log = structlog.get_logger("threadline.identity")

By = Literal["phone", "email", "member"]
#: What the customer system is asked for each kind of identifier.
_LOOKUP_BY: Final[dict[str, LookupBy]] = {"phone": "phone", "email": "email", "member": "member"}


def identifiers_of(record: CustomerRecord) -> list[Identifier]:
    """The identifiers a customer record carries, in canonical form (bad ones left out)."""
    out = []
    for kind, value in (("phone", record.phone), ("email", record.email),
                        ("member", record.member_id)):  # fmt: skip
        if value:
            try:
                out.append(parse(kind, value))
            except ValidationError:
                log.warning("customer record has a bad identifier", kind=kind)
    return out


class Recognition:
    """Who an identifier belongs to: the directory's answer, else the business's."""

    def __init__(self, identity: Identity, records: CustomerRecords) -> None:
        self.identity = identity
        self.records = records

    async def customer(self, by: By, value: str) -> str | None:
        """The customer ``value`` (a ``by``) belongs to, or None when nobody knows them."""
        try:
            identifier = parse(by, value)
        except ValidationError:
            return None
        resolution = await self.identity.resolve(identifier.kind, identifier.value)
        if resolution is not None:
            return resolution.customer_id
        try:
            record = await self.records.find(_LOOKUP_BY[by], identifier.value)
        except ToolFailure as failure:
            log.warning("customer look-up failed", by=by, code=failure.code)
            return None
        if record is None:
            return None
        source = self.records.runner.business.pack.customers.lookup or "customer system"
        await self.identity.learn(record.id, identifiers_of(record), method="system",
                                  source=source)  # fmt: skip
        return record.id
