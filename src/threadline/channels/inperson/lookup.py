"""Finding a customer at the counter, and the record that someone looked.

:func:`find_customer` is the one place the in-person channel resolves an
identifier to a customer: the directory, else the business's customer system.
Every look-up by staff appends ``customer.looked_up`` with its reason to the customer's stream,
``customer:<customer_id>`` (the identity service's type and stream), before
anything about the customer is shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final, Literal

from threadline.channels.inperson.codes import LINEAGE
from threadline.core.events import Actor, Event, EventCodec, new_id, utcnow
from threadline.core.ports import ANY, EventStore
from threadline.engine.redaction import redacted
from threadline.identity.recognition import Recognition
from threadline.systems import CustomerRecord

By = Literal["phone", "email", "member"]
LOOKED_UP: Final = "customer.looked_up"
#: How long a look-up lets its associate open a visit on the customer's conversations.
LOOKUP_GRANT: Final = timedelta(minutes=15)


def customer_stream(customer_id: str) -> str:
    return f"customer:{customer_id}"


async def find_customer(recognition: Recognition, by: By, value: str) -> CustomerRecord | None:
    """The customer ``value`` identifies (a phone in any common spelling, email, member id),
    with the name the business's system gives them (empty when it gives none)."""
    customer_id = await recognition.customer(by, value)
    if customer_id is None:
        return None
    return await customer_record(recognition, customer_id)


async def customer_record(recognition: Recognition, customer_id: str) -> CustomerRecord:
    """The business's record of ``customer_id``, or one with its id alone."""
    return await recognition.records.get(customer_id) or CustomerRecord(customer_id, "")


def display_name(customer: CustomerRecord) -> str:
    """How a queue shows a customer: first name and initial (the id when nameless)."""
    parts = customer.name.split()
    if not parts:
        return customer.id
    return parts[0] + (f" {parts[-1][0]}." if len(parts) > 1 else "")


async def record_lookup(store: EventStore, codec: EventCodec, customer_id: str, by: By,
                        reason: str, who: str, store_id: str | None,
                        key: str | None = None) -> None:  # fmt: skip
    """Append the look-up and its reason to the customer's stream."""
    payload: dict[str, Any] = {"customer_id": customer_id, "kind": by, "reason": reason,
                               "looked_up_by": who, "store_id": store_id}  # fmt: skip
    event = Event(
        conversation_id=customer_stream(customer_id),
        type=LOOKED_UP,
        payload=payload,
        channel="in_person",
        actor=Actor("human", who),
        customer_id=customer_id,
        idempotency_key=key or new_id(),
        lineage=LINEAGE,
    )
    await store.append(customer_stream(customer_id), [codec.encode(redacted(event))], ANY)


async def looked_up_lately(store: EventStore, codec: EventCodec, customer_id: str, who: str,
                           now: datetime | None = None) -> bool:  # fmt: skip
    """Whether ``who`` looked the customer up, with a reason, within :data:`LOOKUP_GRANT`."""
    since = (now or utcnow()) - LOOKUP_GRANT
    for record in reversed(await store.read(customer_stream(customer_id))):
        event = codec.decode(record)
        if event.occurred_at < since:
            return False
        if event.type == LOOKED_UP and event.payload["looked_up_by"] == who:
            return True
    return False
