"""The conversation listing: its query, its items, and opaque page cursors.

The route is ``GET /conversations`` in :mod:`threadline.api.conversations`;
this module holds what it reads and answers, so the route stays short.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Final, Literal, get_args

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from threadline.api.problems import Problem
from threadline.engine.projections import ConversationEntry, ConversationFilter, PageKey

Status = Literal[
    "bot_active", "awaiting_human", "with_human", "resolved", "waiting_on_customer", "abandoned"
]
STATUSES: Final = frozenset(get_args(Status))
ChannelName = Literal["voice", "chat", "in_person", "sms", "system"]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class ListQuery(BaseModel):
    """Filters and paging of ``GET /conversations``; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")
    status: list[str] = Field(
        default_factory=list,
        description="Any of " + ", ".join(sorted(STATUSES)) + "; repeat it or separate by commas.",
    )
    queue: Id | None = Field(None, description="The queue the conversation is (or was last) in.")
    assignee: Id | None = Field(None, description="The human agent holding it.")
    customer_id: Id | None = None
    channel: ChannelName | None = Field(None, description="A channel it has used, live or past.")
    updated_after: AwareDatetime | None = Field(
        None, description="Only conversations whose last event occurred after this time."
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: Annotated[str, Field(max_length=500)] | None = Field(
        None, description="The `next_cursor` of the previous page."
    )

    @field_validator("status")
    @classmethod
    def _known_statuses(cls, value: list[str]) -> list[str]:
        wanted = [part.strip() for item in value for part in item.split(",") if part.strip()]
        unknown = sorted(set(wanted) - STATUSES)
        if unknown:
            raise ValueError(f"unknown status {unknown[0]!r}; known: {', '.join(sorted(STATUSES))}")
        return wanted

    def where(self) -> ConversationFilter:
        return ConversationFilter(
            statuses=frozenset(self.status),
            queue=self.queue,
            assignee=self.assignee,
            customer_id=self.customer_id,
            channel=self.channel,
            updated_after=self.updated_after,
        )


class LastMessageOut(BaseModel):
    text: str = Field(description="The message, on one line and shortened.")
    type: str
    actor: str = Field(description="Who said it: customer, bot, human or system.")
    channel: str
    at: datetime


class ConversationItem(BaseModel):
    id: str
    status: str
    customer_id: str | None
    queue: str | None
    assignee: str | None
    live_channels: list[str] = Field(description="Channels with a leg live now.")
    channels: list[str] = Field(description="Every channel used: the origin and all legs.")
    legs: int = Field(description="How many legs the conversation has had.")
    last_seq: int
    started_at: datetime | None
    updated_at: datetime | None
    last_message: LastMessageOut | None


class ConversationPage(BaseModel):
    items: list[ConversationItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


def item_of(entry: ConversationEntry) -> ConversationItem:
    state, last = entry.state, entry.last_message
    return ConversationItem(
        id=entry.conversation_id,
        status=state.status or "",
        customer_id=state.customer_id,
        queue=state.queue,
        assignee=state.assignee,
        live_channels=sorted(entry.live_channels),
        channels=sorted(entry.channels),
        legs=len(state.legs),
        last_seq=state.seq,
        started_at=entry.started_at,
        updated_at=entry.updated_at,
        last_message=None if last is None else LastMessageOut(
            text=last.text, type=last.type, actor=last.actor_kind, channel=last.channel,
            at=last.at,
        ),
    )  # fmt: skip


# -- cursors -------------------------------------------------------------------------


def encode_cursor(key: PageKey) -> str:
    """An opaque cursor for the page after ``key``."""
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> PageKey:
    """The page key a cursor from :func:`encode_cursor` holds; 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position, conversation_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        position = conversation_id = None
    valid = (
        isinstance(position, int)
        and not isinstance(position, bool)
        and position >= 0
        and isinstance(conversation_id, str)
    )
    if not valid:
        detail = "the cursor is not one this service issued; start again without it"
        raise Problem(400, "bad-cursor", "Malformed cursor", detail)
    assert isinstance(position, int) and isinstance(conversation_id, str)
    return position, conversation_id
