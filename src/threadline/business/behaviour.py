"""What the pack tells the automated agent: slots, intents and their flows, knowledge, replies.

The agent knows a handful of flows (answer, hand over, look a record up, book a
slot, give opening hours, send a check-in code); the pack says which intent
runs which flow, over which slots, tools and words. Replies are templates
(Jinja, sandboxed) with a chat form and, optionally, a shorter voice form.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from threadline.business.tool_specs import Spec

Name = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="lower case, digits and underscores"),
]
Example = Annotated[str, Field(min_length=1, max_length=300)]
Phrase = Annotated[str, Field(min_length=1, max_length=100)]


class ReplyForms(Spec):
    """A reply with a chat form and a voice form that is quick to listen to."""

    chat: str = Field(min_length=1, max_length=4000)
    voice: str | None = Field(None, min_length=1, max_length=2000)


#: A reply: one template for every channel, or its chat and voice forms.
Reply = Annotated[str, Field(min_length=1, max_length=4000)] | ReplyForms


# -- slots -----------------------------------------------------------------------------


class ReferenceSlot(Spec):
    """A number the customer quotes: an order, a ticket, a postcode.

    Found after a cue word ("order 5120", "postcode 60601"), or on its own when it
    has exactly ``bare_digits`` digits. Spoken numbers count ("ten forty two").
    """

    type: Literal["reference"]
    label: str = Field(min_length=1, max_length=60, description="how the agent names it")
    cues: tuple[Phrase, ...] = Field(default=(), description="words said before it")
    digits: tuple[int, int] = Field((3, 8), description="fewest and most digits after a cue")
    bare_digits: int | None = Field(None, ge=3, le=12, description="digits alone that count")
    implies: Name | None = Field(None, description="an intent this slot alone says")

    @model_validator(mode="after")
    def _lengths(self) -> ReferenceSlot:
        low, high = self.digits
        if not 1 <= low <= high <= 16:
            raise ValueError("digits must be [fewest, most] with 1 <= fewest <= most <= 16")
        return self


class LocationSlot(Spec):
    """One of the pack's locations, by its name, short name or aliases."""

    type: Literal["location"]
    label: str = Field("location", min_length=1, max_length=60)
    implies: Name | None = None


class DateSlot(Spec):
    """A day: "tomorrow", "Sunday", "March 9", "2026-03-09" (in the pack's time zone)."""

    type: Literal["date"]
    label: str = Field("day", min_length=1, max_length=60)
    implies: Name | None = None


class TimeSlot(Spec):
    """A time of day: "11", "at 3pm", "half past ten" (a bare hour when it is asked for)."""

    type: Literal["time"]
    label: str = Field("time", min_length=1, max_length=60)
    implies: Name | None = None


class ChoiceSlot(Spec):
    """One of a few values, each with the words that name it."""

    type: Literal["choice"]
    label: str = Field(min_length=1, max_length=60)
    values: dict[Name, tuple[Phrase, ...]] = Field(min_length=1)
    implies: Name | None = None


SlotSpec = Annotated[
    ReferenceSlot | LocationSlot | DateSlot | TimeSlot | ChoiceSlot, Field(discriminator="type")
]


# -- intents and their flows --------------------------------------------------------------


class Route(Spec):
    """The queue a conversation about this intent goes to, and the skills it needs."""

    queue: Name
    skills: tuple[Phrase, ...] = ()


class IntentBase(Spec):
    examples: tuple[Example, ...] = Field(min_length=1, description="phrasings the agent learns")
    label: str | None = Field(
        None, max_length=80, description="what a conversation about it is ('an order')"
    )
    topic: bool = Field(False, description="says what the conversation is about")
    route: Route | None = Field(None, description="where a handoff about it goes")
    replies: dict[Name, Reply] = Field(default_factory=dict)


class AnswerIntent(IntentBase):
    """Answers with its ``text`` reply (a greeting, thanks)."""

    does: Literal["answer"]


class HandoffIntent(IntentBase):
    """Always to a person: the customer asked for one, or it is sensitive."""

    does: Literal["handoff"]
    reason: Literal["customer_request", "sensitive_intent"] = "sensitive_intent"


class Lookup(Spec):
    slot: Name = Field(description="the slot that names the record")
    tool: Name = Field(description="the tool that finds it")
    argument: Name | None = Field(None, description="the tool's parameter (default: the slot)")
    owner: str = Field("customer_id", description="the result's field naming its customer")
    protects: Name | None = Field(None, description="the verification policy's data class")
    public: tuple[str, ...] = Field((), description="result fields anyone may hear")
    visit_location: str | None = Field(
        None, description="the result's field naming a location to collect it from"
    )


class LookupIntent(IntentBase):
    """Finds a record by a reference; its details only for its verified owner."""

    does: Literal["lookup"]
    lookup: Lookup


class Booking(Spec):
    service: Name = Field(description="the locations' service that takes bookings")
    location_slot: Name
    date_slot: Name
    time_slot: Name
    availability: Name = Field(description="tool: free start times at a location on a day")
    book: Name = Field(description="tool: book a start time")
    appointments: Name | None = Field(None, description="tool: a customer's bookings")


class BookingIntent(IntentBase):
    """Books a slot of a location's service: which location, which day, which time."""

    does: Literal["booking"]
    booking: Booking


class HoursIntent(IntentBase):
    """Opening hours of a location (or all of them) on a day, from the pack."""

    does: Literal["hours"]
    location_slot: Name
    date_slot: Name


class VisitIntent(IntentBase):
    """A visit in person: on chat, a check-in code for the location is sent."""

    does: Literal["visit"]
    location_slot: Name
    from_lookup: Name | None = Field(
        None, description="a lookup intent whose verified record names the location"
    )


class VerifyIntent(IntentBase):
    """The customer asks to prove who they are with a one-time code (they do not know the
    knowledge answer, or want to): sent to the phone or email on their record."""

    does: Literal["verify"]


IntentSpec = Annotated[
    AnswerIntent
    | HandoffIntent
    | LookupIntent
    | BookingIntent
    | HoursIntent
    | VisitIntent
    | VerifyIntent,
    Field(discriminator="does"),
]


class KnowledgeEntry(Spec):
    """A short answer the agent may quote, with where it comes from."""

    id: Name
    questions: tuple[Example, ...] = Field(min_length=1)
    answer: Reply
    source: str = Field(min_length=1, max_length=500, description="a URL or document name")
