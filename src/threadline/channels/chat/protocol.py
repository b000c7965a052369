"""The chat wire protocol: JSON text frames over one WebSocket.

Client → server
  ``hello``    {conversation_id?, after_seq?}: open or resume a conversation
  ``message``  {client_id, text}: a customer message; ``client_id`` makes resends safe
  ``consent``  {client_id, purpose, granted}: the customer gives or withdraws consent
  ``attachment`` (refused: not supported on this channel yet)

Server → client
  ``welcome``  {conversation_id, leg_id, seq}: the conversation this socket is on
  ``ack``      {client_id, seq}: the message is durably recorded at ``seq``
  ``event``    {seq, type, actor, text?, ...}: something the customer should see
  ``error``    {code, detail}: a refused frame; the socket stays open
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from threadline.core.events import MAX_SEQ, Event

MAX_TEXT: Final = 4000

#: Event types a customer sees on their chat (others stay internal).
VISIBLE: Final = frozenset({
    "message.received", "message.sent", "utterance.transcribed", "handoff.requested",
    "handoff.accepted", "handoff.returned", "conversation.resolved", "conversation.reopened",
    "leg.started", "leg.ended",
})  # fmt: skip


class Hello(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["hello"]
    conversation_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    after_seq: Annotated[int, Field(ge=0, le=MAX_SEQ)] = 0


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["message"]
    client_id: Annotated[str, Field(min_length=8, max_length=100)]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class ConsentFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["consent"]
    client_id: Annotated[str, Field(min_length=8, max_length=100)]
    purpose: Literal["recording", "ai_processing", "analytics", "marketing"]
    granted: bool


class Attachment(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["attachment"]


Frame = Annotated[Hello | Message | ConsentFrame | Attachment, Field(discriminator="type")]
FRAME: Final = TypeAdapter(Frame)


def visible(event: Event) -> dict[str, Any]:
    """The customer's view of a canonical event (no internal notes, no lineage)."""
    payload = event.payload
    view: dict[str, Any] = {
        "type": "event",
        "seq": event.seq,
        "event": event.type,
        "channel": event.channel,
        "actor": event.actor.kind,
        # Always to the microsecond, so the widget can order events by comparing the text.
        "at": event.occurred_at.astimezone(UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
    }
    if "text" in payload:
        view["text"] = payload["text"]
    if event.type == "message.sent" and payload.get("in_reply_to"):
        view["in_reply_to"] = payload["in_reply_to"]
    if event.type == "handoff.accepted":
        view["agent"] = payload["agent_id"]
    if event.type == "conversation.resolved":
        view["outcome"] = payload["outcome"]
        if payload.get("continued_in"):
            view["continued_in"] = payload["continued_in"]
    return view
