"""Payload schemas of the canonical event types, one class per type and version."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from threadline.core.catalogue import CATALOGUE, Payload, Pii

register = CATALOGUE.register

ChannelName = Literal["voice", "chat", "in_person", "sms", "system"]
Text = Annotated[str, Field(min_length=1, max_length=8000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]


# -- conversation lifecycle -------------------------------------------------


@register("conversation.started", 1)
class ConversationStarted(Payload):
    """A new conversation opens; the first contact's channel is its origin."""

    origin: ChannelName
    topic: str | None = None


@register("conversation.resolved", 1)
class ConversationResolved(Payload):
    """The conversation is closed with an outcome code."""

    outcome: Name
    note: Annotated[str | None, Pii] = None


@register("conversation.reopened", 1)
class ConversationReopened(Payload):
    """A resolved or abandoned conversation opens again (a new contact in the window)."""

    reason: Name


@register("conversation.abandoned", 1)
class ConversationAbandoned(Payload):
    """The customer went away before the conversation was resolved."""

    reason: Name


@register("conversation.waiting", 1)
class ConversationWaiting(Payload):
    """The conversation waits on the customer (a document, a photo, a callback)."""

    reason: Name


# -- legs: one call, chat session or visit --------------------------------


@register("leg.started", 1)
class LegStarted(Payload):
    """A channel leg goes live: a call connects, a chat session opens, a visit checks in."""

    leg_id: Name
    channel: ChannelName
    address: Annotated[str | None, Pii] = None
    location: str | None = None


@register("leg.ended", 1)
class LegEnded(Payload):
    """A channel leg ends."""

    leg_id: Name
    reason: Name = "completed"


# -- messages and speech -----------------------------------------------------


@register("message.received", 1)
class MessageReceived(Payload):
    """A message from the customer (typed, or spoken and transcribed)."""

    text: Annotated[Text, Pii]


@register("message.sent", 1)
class MessageSent(Payload):
    """A message to the customer from a bot or human (v1)."""

    text: Annotated[Text, Pii]


@register("message.sent", 2)
class MessageSentV2(Payload):
    """A message to the customer; on voice, ``heard_text`` is what was played before barge-in."""

    text: Annotated[Text, Pii]
    heard_text: Annotated[str | None, Pii] = None
    in_reply_to: str | None = None


@CATALOGUE.upcaster("message.sent", 1)
def _message_sent_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 had no barge-in: everything sent was heard in full.
    return {"text": payload["text"], "heard_text": payload["text"], "in_reply_to": None}


class CheckinCard(Payload):
    """A check-in code that goes with a message, sealed so only the service can open it.

    ``sealed`` holds the code's QR token and digits, encrypted and bound to the
    conversation; the log and everyone reading it see only when it expires.
    """

    token_id: Name
    store_id: Name | None = None
    expires_at: AwareDatetime
    sealed: Annotated[str, Field(min_length=16, max_length=4000)]


@register("message.sent", 3)
class MessageSentV3(Payload):
    """A message to the customer; on voice, ``heard_text`` is what was played before
    barge-in; on chat, ``checkin`` is a check-in code shown with it."""

    text: Annotated[Text, Pii]
    heard_text: Annotated[str | None, Pii] = None
    in_reply_to: str | None = None
    checkin: CheckinCard | None = None


@CATALOGUE.upcaster("message.sent", 2)
def _message_sent_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "checkin": None}


@register("message.heard", 1)
class MessageHeard(Payload):
    """How much of a spoken ``message.sent`` the caller heard.

    ``complete`` is false when the caller spoke over it (barge-in) and the rest
    was never played: ``heard_text`` is what reached their ear, by playback
    marks, and is what the transcript keeps.
    """

    message_id: Name
    heard_text: Annotated[str, Pii]
    complete: bool
    played_ms: int = Field(ge=0)


@register("utterance.transcribed", 1)
class UtteranceTranscribed(Payload):
    """Speech turned into text on a voice leg."""

    text: Annotated[str, Pii]
    confidence: Confidence
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)


# -- understanding -----------------------------------------------------------


@register("intent.detected", 1)
class IntentDetected(Payload):
    """What the customer wants, with the classifier's confidence."""

    intent: Name
    confidence: Confidence
    alternatives: dict[str, Confidence] = Field(default_factory=dict)


@register("slot.filled", 1)
class SlotFilled(Payload):
    """A piece of information the conversation has collected (order number, date)."""

    name: Name
    value: Annotated[str, Pii]
    source: Name = "customer"


# -- actions (tool calls) ------------------------------------------------------


@register("action.requested", 1)
class ActionRequested(Payload):
    """A tool call an agent decided to make."""

    action_id: Name
    tool: Name
    arguments: Annotated[dict[str, Any], Pii] = Field(default_factory=dict)


@register("action.completed", 1)
class ActionCompleted(Payload):
    """A tool call that succeeded, with its result."""

    action_id: Name
    result: Annotated[dict[str, Any], Pii] = Field(default_factory=dict)


@register("action.failed", 1)
class ActionFailed(Payload):
    """A tool call that failed; ``retryable`` says whether trying again can help."""

    action_id: Name
    error: str
    retryable: bool = False


# -- handoff to humans -----------------------------------------------------------

HandoffReason = Literal[
    "customer_request",
    "low_confidence",
    "sensitive_intent",
    "tool_failure",
    "negative_sentiment",
    "transfer",
    "other",
]
_REASONS: frozenset[str] = frozenset(HandoffReason.__args__)  # type: ignore[attr-defined]


@register("handoff.requested", 1)
class HandoffRequestedV1(Payload):
    """Hand the conversation to a human queue (v1: the reason was free text)."""

    queue: Name
    reason: Name


@register("handoff.requested", 2)
class HandoffRequested(Payload):
    """Hand the conversation to a human queue, with a reason code and the skills needed."""

    queue: Name
    reason_code: HandoffReason
    reason_detail: Annotated[str, Pii] = ""
    skills: list[Name] = Field(default_factory=list)


@CATALOGUE.upcaster("handoff.requested", 1)
def _handoff_requested_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 wrote either a known code or a sentence; keep the sentence as detail.
    reason = str(payload["reason"])
    code = reason if reason in _REASONS else "other"
    return {
        "queue": payload["queue"],
        "reason_code": code,
        "reason_detail": "" if code == reason else reason,
        "skills": [],
    }


@register("handoff.offered", 1)
class HandoffOffered(Payload):
    """The router offers the conversation to one human agent until ``expires_at``."""

    offer_id: Name
    agent_id: Name
    queue: Name
    expires_at: datetime


@register("handoff.accepted", 1)
class HandoffAccepted(Payload):
    """The offered agent takes the conversation."""

    offer_id: Name
    agent_id: Name


@register("handoff.declined", 1)
class HandoffDeclined(Payload):
    """The offered agent declines, or the offer expires."""

    offer_id: Name
    agent_id: Name
    reason: Name = "declined"


@register("handoff.returned", 1)
class HandoffReturned(Payload):
    """The human hands the conversation back to the bot."""

    agent_id: Name
    note: Annotated[str | None, Pii] = None


# -- notes, consent, identity -----------------------------------------------------


@register("note.added", 1)
class NoteAdded(Payload):
    """An internal note by a human or the system; never shown to the customer."""

    author_id: Name
    text: Annotated[Text, Pii]


@register("consent.granted", 1)
class ConsentGranted(Payload):
    """The customer agrees to a purpose (recording, transcription, marketing)."""

    purpose: Name


@register("consent.revoked", 1)
class ConsentRevoked(Payload):
    """The customer withdraws consent for a purpose."""

    purpose: Name


@register("identity.linked", 1)
class IdentityLinked(Payload):
    """An identifier is linked to the conversation's customer."""

    kind: Literal["phone", "email", "device", "member", "idp"]
    value: Annotated[Name, Pii]
    verified: bool = False
    method: Name = "claimed"


# -- human agents (on each agent's own stream, ``agent:<agent_id>``) ---------------


@register("agent.presence_changed", 1)
class AgentPresenceChanged(Payload):
    """A human agent becomes available for offers, steps away, or goes offline."""

    agent_id: Name
    presence: Literal["available", "away", "offline"]


@register("agent.capacity_changed", 1)
class AgentCapacityChanged(Payload):
    """How many conversations a human agent may hold at once, overriding the configured number."""

    agent_id: Name
    capacity: int = Field(ge=0, le=100)


# -- security (on the system stream ``system:tokens``) ------------------------------


@register("token.revoked", 1)
class TokenRevoked(Payload):
    """A bearer token is revoked; verification refuses it until ``expires_at``."""

    jti: Name
    reason: Name
    revoked_by: Name
    expires_at: AwareDatetime


# -- customer identity (on each customer's own stream, ``customer:<customer_id>``) ----------

IdentifierKind = Literal["phone", "email", "device", "member", "idp"]
#: How a link was made: caller id and typed values are claims; the rest are proofs.
LinkMethod = Literal["caller_id", "typed", "oidc", "otp", "knowledge", "seed"]


@register("identity.claimed", 1)
class IdentityClaimed(Payload):
    """An identifier is linked to the customer without proof yet (caller id, a typed email).

    ``linked_by`` (an adapter, bot or person) and ``reason`` are the link's lineage.
    """

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    method: LinkMethod
    linked_by: Name
    reason: Name
    conversation_id: str | None = None


@register("identity.verified", 1)
class IdentityVerified(Payload):
    """An identifier is proven to belong to the customer (new, or a claim made good)."""

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    method: LinkMethod
    linked_by: Name
    reason: Name
    conversation_id: str | None = None


@register("identity.unlinked", 1)
class IdentityUnlinked(Payload):
    """An identifier no longer belongs to the customer."""

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    unlinked_by: Name
    reason: Name


class LinkedIdentifier(Payload):
    """One identifier as a merge moved it: with its verification and how it was made."""

    kind: IdentifierKind
    value: Annotated[Name, Pii]
    verified: bool
    method: LinkMethod


@register("customer.merged", 1)
class CustomerMerged(Payload):
    """On the absorbed customer's stream: its identifiers move to ``into_customer``.

    The absorbed stream stays and points to the survivor; ``identifiers`` is
    exactly what moved, so ``customer.unmerged`` can move it back.
    """

    merge_id: Name
    from_customer: Name
    into_customer: Name
    reason: Name
    merged_by: Name
    identifiers: list[LinkedIdentifier] = Field(default_factory=list)


@register("customer.unmerged", 1)
class CustomerUnmerged(Payload):
    """Undoes one merge: ``identifiers`` (those the merge moved) return to ``from_customer``."""

    merge_id: Name
    from_customer: Name
    into_customer: Name
    reason: Name
    unmerged_by: Name
    identifiers: list[LinkedIdentifier] = Field(default_factory=list)


@register("identity.conflict_raised", 1)
class IdentityConflictRaised(Payload):
    """On the claimant's stream: an identifier claimed for it is held by another customer.

    Nothing moves; a human resolves it.
    """

    conflict_id: Name
    kind: IdentifierKind
    value: Annotated[Name, Pii]
    claimed_for: Name
    held_by: Name
    verified: bool
    method: LinkMethod
    linked_by: Name
    reason: Name


@register("identity.conflict_resolved", 1)
class IdentityConflictResolved(Payload):
    """A human settles a conflict: ``keep`` it with its holder, or ``move`` it to the claimant."""

    conflict_id: Name
    resolution: Literal["keep", "move"]
    resolved_by: Name
    note: Annotated[str, Pii] = ""


@register("customer.looked_up", 1)
class CustomerLookedUp(Payload):
    """Someone looked the customer up by an identifier, and said why.

    One type for every look-up (the identity API, the associate app at a store),
    on the customer's stream ``customer:<id>``.
    """

    looked_up_by: Name
    reason: Annotated[str, Field(min_length=3, max_length=500), Pii]
    kind: IdentifierKind
    customer_id: Name | None = None
    store_id: str | None = None


@register("verification.code_sent", 1)
class VerificationCodeSent(Payload):
    """A one-time code went to a verified identifier to prove ``kind``/``value``.

    Only a salted hash of the code is kept.
    """

    challenge_id: Name
    kind: IdentifierKind
    value: Annotated[Name, Pii]
    via_kind: IdentifierKind
    via_value: Annotated[Name, Pii]
    code_hash: Name
    expires_at: AwareDatetime
    max_attempts: int = Field(ge=1, le=10)


@register("verification.failed", 1)
class VerificationFailed(Payload):
    """A verification step did not pass: a wrong code or a wrong answer."""

    method: Literal["otp", "knowledge"]
    challenge_id: str | None = None
    kind: IdentifierKind
    value: Annotated[Name, Pii]


# -- in person (codes on ``system:checkin``, queues on ``store:<id>``) ---------------------


@register("checkin.code_issued", 1)
class CheckinCodeIssued(Payload):
    """A check-in code was given to a customer; the digits are kept only as a keyed hash."""

    token_id: Name
    code_hash: Name
    conversation_id: Name
    customer_id: Name
    store_id: str | None = None
    expires_at: AwareDatetime


@register("visit.queued", 1)
class VisitQueued(Payload):
    """A customer checked in at a store's kiosk and waits to be served."""

    entry_id: Name
    store_id: Name
    customer_id: Name
    conversation_id: str | None = None
    display_name: Name
    method: Literal["phone", "code"]


@register("visit.called", 1)
class VisitCalled(Payload):
    """An associate takes a waiting customer from the store's queue."""

    entry_id: Name
    associate_id: Name
    conversation_id: Name
