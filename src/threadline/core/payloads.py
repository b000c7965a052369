"""Payload schemas of the canonical event types, one class per type and version.

The conversation's own types are here; those of the agent, system and
customer streams are in :mod:`threadline.core.stream_payloads`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from threadline.core.catalogue import CATALOGUE, Payload, Pii
from threadline.core.verification import Level, default_level

register = CATALOGUE.register

ChannelName = Literal["voice", "chat", "in_person", "sms", "system"]
#: What someone said or wrote: no NUL characters (no store, log or terminal takes them).
Text = Annotated[str, Field(min_length=1, max_length=8000, pattern=r"^[^\x00]*$")]
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
    """The conversation is closed with an outcome code (v1)."""

    outcome: Name
    note: Annotated[str | None, Pii] = None


@register("conversation.resolved", 2)
class ConversationResolvedV2(Payload):
    """The conversation is closed with an outcome code; ``continued_in`` names the
    conversation it goes on in (a chat that joined the customer's open conversation)."""

    outcome: Name
    note: Annotated[str | None, Pii] = None
    continued_in: str | None = None


@CATALOGUE.upcaster("conversation.resolved", 1)
def _resolved_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "continued_in": None}


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


@register("action.requested", 2)
class ActionRequestedV2(Payload):
    """A tool call an agent decided to make, with the version of the tool it called."""

    action_id: Name
    tool: Name
    tool_version: Annotated[str, Field(max_length=32)] | None = None
    arguments: Annotated[dict[str, Any], Pii] = Field(default_factory=dict)


@CATALOGUE.upcaster("action.requested", 1)
def _action_requested_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 did not say which version of the tool was called.
    return {**payload, "tool_version": None}


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


# -- approvals, the model's fallbacks, guardrails ------------------------------------------


@register("approval.requested", 1)
class ApprovalRequested(Payload):
    """A sensitive tool call (it moves money or changes an account) waits for a person:
    an agent of ``queue``, or a supervisor, approves or denies it on the desk."""

    approval_id: Name
    tool: Name
    tool_version: Annotated[str, Field(max_length=32)] | None = None
    arguments: Annotated[dict[str, Any], Pii] = Field(default_factory=dict)
    queue: Name
    #: What the agent says the call is for, as the person deciding reads it.
    reason: Annotated[str, Pii, Field(max_length=2000)] = ""


@register("approval.granted", 1)
class ApprovalGranted(Payload):
    """A person approves a waiting call: the agent runs it and tells the customer."""

    approval_id: Name
    agent_id: Name
    queue: Name
    note: Annotated[str, Pii, Field(max_length=2000)] = ""


@register("approval.denied", 1)
class ApprovalDenied(Payload):
    """A person denies a waiting call: it never runs, and the customer hears why."""

    approval_id: Name
    agent_id: Name
    queue: Name
    reason: Annotated[str, Pii, Field(min_length=1, max_length=2000)]


@register("model.fell_back", 1)
class ModelFellBack(Payload):
    """The model could not take a turn; the turn went to the embedded agent or a person."""

    model: Name
    to: Literal["embedded", "person"]
    reason: Literal["unavailable", "circuit_open", "refused"]
    detail: Annotated[str, Field(max_length=500)] = ""
    attempts: int = Field(0, ge=0)


@register("bot.transferred", 1)
class BotTransferred(Payload):
    """One automated agent hands the conversation to another (a triage agent to the orders
    specialist), which goes on with its whole context."""

    from_agent: Name
    to_agent: Name
    summary: Annotated[str, Pii, Field(max_length=1000)] = ""


@register("guardrail.triggered", 1)
class GuardrailTriggered(Payload):
    """A guardrail caught something in a customer's message, a tool's result or a reply;
    ``outcome`` says what the agent did about it, as the pack asks."""

    guardrail: Literal[
        "prompt_injection", "personal_data", "promise", "topic", "confidence", "loop", "autonomy"
    ]
    where: Literal["message", "prompt", "tool_result", "reply"]
    outcome: Literal["rephrased", "refused", "escalated", "noted", "withheld", "redacted"]
    detail: Annotated[str, Pii, Field(max_length=500)] = ""


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
class ConsentGrantedV1(Payload):
    """The customer agrees to a purpose (recording, transcription, marketing)."""

    purpose: Name


#: How consent was given: by a notice the channel gave (the call's disclosure, the chat's
#: banner) and the customer went on, expressly (a click, a "yes"), or told to a person.
ConsentBasis = Literal["notice", "express", "verbal"]


@register("consent.granted", 2)
class ConsentGranted(Payload):
    """The customer agrees to a purpose (``recording``, ``ai_processing``, ``analytics``,
    ``marketing``): how (``basis``), and the notice shown (``notice``: the channel and a
    digest of its text). On a customer's own stream (the consent ledger) it also names the
    conversation and channel it was given in."""

    purpose: Name
    basis: ConsentBasis = "express"
    notice: Name | None = None
    conversation_id: Name | None = None
    channel: ChannelName | None = None


@CATALOGUE.upcaster("consent.granted", 1)
def _consent_granted_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"purpose": payload["purpose"], "basis": "express", "notice": None}


@register("consent.revoked", 1)
class ConsentRevokedV1(Payload):
    """The customer withdraws consent for a purpose."""

    purpose: Name


@register("consent.revoked", 2)
class ConsentRevoked(Payload):
    """The customer withdraws consent for a purpose; from then on nothing processes their
    data for it (no AI processing: a person handles the conversation)."""

    purpose: Name
    basis: Literal["express", "verbal"] = "express"
    conversation_id: Name | None = None
    channel: ChannelName | None = None


@CATALOGUE.upcaster("consent.revoked", 1)
def _consent_revoked_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"purpose": payload["purpose"], "basis": "express"}


@register("verification.challenged", 1)
class VerificationChallenged(Payload):
    """A one-time code went to a phone or email on file of ``customer_id``.

    Only a digest keyed with the service's secret is kept, so the log cannot be
    searched for the code; ``to`` is the destination as the customer may be told it.
    """

    challenge_id: Name
    customer_id: Name
    via: Literal["phone", "email"]
    to: Annotated[Name, Pii]
    digest: Name
    expires_at: AwareDatetime
    max_attempts: int = Field(ge=1, le=10)


@register("verification.rejected", 1)
class VerificationRejected(Payload):
    """A proof did not pass: a wrong code or answer, or a code that expired or ran out of
    tries. ``method`` is ``otp`` or the knowledge slot asked for."""

    method: Name
    reason: Literal["wrong", "expired", "exhausted"]
    challenge_id: str | None = None
    #: Whose proof it was meant to be (the record's owner, the code's customer).
    customer_id: Name | None = None


@register("identity.linked", 1)
class IdentityLinked(Payload):
    """An identifier is linked to the conversation's customer."""

    kind: Literal["phone", "email", "device", "member", "idp"]
    value: Annotated[Name, Pii]
    verified: bool = False
    method: Name = "claimed"


@register("identity.linked", 2)
class IdentityLinkedV2(Payload):
    """An identifier is linked to the conversation's customer, with the strength of the proof.

    ``customer_id`` names who the proof shows the customer to be when the conversation
    did not know yet (an anonymous visitor or an unrecognised caller): the conversation
    is theirs from then on.
    """

    kind: Literal["phone", "email", "device", "member", "idp"]
    value: Annotated[Name, Pii]
    verified: bool = False
    method: Name = "claimed"
    level: Level | None = None
    customer_id: Name | None = None

    @model_validator(mode="after")
    def _level_of_method(self) -> IdentityLinkedV2:
        # A writer that names no level gets the method's default, so the log always says.
        if self.level is None:
            object.__setattr__(self, "level", default_level(self.method, self.verified))
        return self


@CATALOGUE.upcaster("identity.linked", 1)
def _identity_linked_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 said verified or not; its method says how strong that was.
    level = default_level(str(payload.get("method", "claimed")), bool(payload.get("verified")))
    return {**payload, "level": level, "customer_id": None}
