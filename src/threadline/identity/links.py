"""Identity links made in conversations, carried over to the customer's own stream.

A bot that checks a caller's postcode, or an agent who confirms an email,
records ``identity.linked`` on the *conversation*. :class:`ConversationLinks`
is the bus consumer that makes each such link good on ``customer:<id>`` through
:meth:`Identity.link`, so the directory knows what the conversation proved.

Delivery is at least once. The customer-stream event is keyed on the
conversation event (``conversation:<event_id>``), and :meth:`Identity.link`
changes nothing for a link the directory already has, so a redelivery, or
a replay after a restart, records nothing twice.

Only links of real customers travel: a caller nobody recognised and an
anonymous chat visitor have placeholder ids that belong to no one, until a
proof names the customer (the link's ``customer_id``). A claim made on a new
contact (caller id) proves nothing and is not copied either; of device links,
only chat sessions (``visitor-…``) travel, so a returning browser is known.
A wrong or expired code (``verification.rejected``) is copied as
``verification.failed``, so the limit on wrong codes holds across channels.
Consent given or withdrawn is copied with its conversation and channel: the
customer's stream is their consent ledger.
"""

from __future__ import annotations

from typing import Final

import structlog

from threadline.core.errors import ValidationError
from threadline.core.events import Actor, EventCodec, EventRecord
from threadline.core.ports import Bus
from threadline.core.verification import anonymous
from threadline.identity.fold import CUSTOMER_PREFIX
from threadline.identity.identifiers import parse
from threadline.identity.service import Identity

log = structlog.get_logger("threadline.identity")

GROUP: Final = "identity-links"
#: The device id of an anonymous chat session.
VISITOR: Final = "visitor-"
#: How a conversation's proof reads on the customer's stream, by its level.
VERIFIED_BY: Final = {"knowledge": "knowledge", "possession": "otp", "idp": "oidc"}
#: The consent ledger's events, kept on the customer's stream with where they were given.
CONSENT: Final = frozenset({"consent.granted", "consent.revoked"})
#: Claims a conversation may carry over (caller id is left out: see the module docstring).
CLAIMED_BY: Final = {"typed": "typed"}


def link_key(record: EventRecord) -> str:
    """The idempotency key of the customer-stream event made from ``record``."""
    return f"conversation:{record.event_id}"


class ConversationLinks:
    """Copies verified (and typed) conversation links into the identity directory."""

    def __init__(self, identity: Identity, codec: EventCodec | None = None) -> None:
        self.identity = identity
        self.codec = codec or EventCodec()

    async def start(self, bus: Bus) -> None:
        types = {"identity.linked", "verification.rejected", *CONSENT}
        await bus.subscribe(GROUP, self.handle, concurrency=16, types=types)

    async def handle(self, record: EventRecord) -> None:
        if record.conversation_id.startswith(CUSTOMER_PREFIX):
            return
        if record.type == "verification.rejected":
            await self._failed(record)
        elif record.type == "identity.linked":
            await self._linked(record)
        elif record.type in CONSENT:
            await self._consent(record)

    async def _linked(self, record: EventRecord) -> None:
        payload = self.codec.decode(record).payload
        customer_id = payload.get("customer_id") or record.customer_id
        if anonymous(customer_id):
            return
        assert customer_id is not None
        verified = bool(payload["verified"])
        kind, value = str(payload["kind"]), str(payload["value"])
        if kind == "device" and not value.startswith(VISITOR):
            return  # a call's leg is not a device anyone comes back on
        method = (VERIFIED_BY.get(str(payload["level"])) if verified
                  else CLAIMED_BY.get(str(payload.get("method"))))  # fmt: skip
        if method is None:
            return
        try:
            outcome = await self.identity.link(
                customer_id, parse(kind, value),
                verified=verified, method=method, linked_by=record.actor_id,
                reason=f"{payload.get('method')} on a {record.channel} contact",
                actor=Actor(record.actor_kind, record.actor_id),
                conversation_id=record.conversation_id, key=link_key(record),
            )  # fmt: skip
        except ValidationError as exc:  # it will never fit: retrying would hold the lane
            log.warning("conversation link not carried over", event_id=record.event_id,
                        reason=str(exc))  # fmt: skip
            return
        if outcome.status == "conflict":
            log.warning("conversation link conflicts", conversation_id=record.conversation_id,
                        conflict_id=outcome.conflict_id)  # fmt: skip

    async def _failed(self, record: EventRecord) -> None:
        payload = self.codec.decode(record).payload
        customer_id = payload.get("customer_id")
        if anonymous(customer_id):
            return
        assert customer_id is not None
        method = "otp" if payload["method"] == "otp" else "knowledge"  # else a knowledge slot
        failed = {"method": method, "reason": payload["reason"],
                  "challenge_id": payload.get("challenge_id"),
                  "conversation_id": record.conversation_id}  # fmt: skip
        await self.identity.record(customer_id, "verification.failed", failed,
                                   Actor(record.actor_kind, record.actor_id),
                                   key=link_key(record))  # fmt: skip

    async def _consent(self, record: EventRecord) -> None:
        """The customer's consent ledger: each decision, with its conversation and channel."""
        if anonymous(record.customer_id):
            return  # nobody's yet: the ledger is a customer's
        assert record.customer_id is not None
        payload = dict(self.codec.decode(record).payload)
        payload.update(conversation_id=record.conversation_id, channel=record.channel)
        await self.identity.record(record.customer_id, record.type, payload,
                                   Actor(record.actor_kind, record.actor_id),
                                   key=link_key(record))  # fmt: skip
