"""The business pack: everything that differs between businesses, as one validated value.

A pack is a directory with one main file, ``business.yaml``, and whatever it
references (more YAML through ``!include``, a logo, the Python modules of its
in-process tools). :func:`threadline.business.loader.load_pack` reads it;
``threadline business check`` reports every problem with file and line;
``threadline business schema`` prints this model's JSON Schema.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from threadline.business.behaviour import (
    IntentSpec,
    KnowledgeEntry,
    Name,
    Reply,
    Route,
    SlotSpec,
)
from threadline.business.clock import DEFAULT_LOCALE, locale_tag
from threadline.business.hours import DAY_KEYS, Hours
from threadline.business.tool_specs import Spec, ToolSpec
from threadline.core.verification import default_level

FORMAT: Final = 1

Id = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="lower case, digits, . _ -"),
]
Locale = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$", examples=["en-US"])]
#: A locale Babel knows, written ``en-GB`` or ``en_GB`` and kept as ``en-GB``.
KnownLocale = Annotated[
    str,
    AfterValidator(locale_tag),
    Field(examples=["en-US", "en-GB"], description="a language and country: en-US, en_GB"),
]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Colour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
E164 = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{7,14}$", description="+14155550100")]
DialTarget = Annotated[
    str,
    Field(
        pattern=r"^(\+[1-9][0-9]{7,14}|sips?:[^@\s]+@[^@\s]+)$",
        description="an E.164 number or a SIP URI",
    ),
]
Span = Annotated[
    str, Field(pattern=r"^\d{2}:\d{2}\s*[-–]\s*\d{2}:\d{2}$", examples=["09:00-17:00"])
]
Texts = dict[Locale, Text]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name: Europe/Paris)") from None
    return value


class Brand(Spec):
    name: str = Field(min_length=1, max_length=100)
    widget_title: str | None = Field(None, max_length=100, description="default: name")
    tagline: str = Field("", max_length=200)
    colours: dict[Literal["primary", "accent", "background", "text"], Colour] = Field(
        default_factory=dict
    )
    logo: str | None = Field(None, description="an image file in the pack (SVG, PNG)")


class ChannelTexts(Spec):
    """A text per channel and locale (greetings, disclosures)."""

    chat: Texts = Field(default_factory=dict)
    voice: Texts = Field(default_factory=dict)
    in_person: Texts = Field(default_factory=dict)


class PhoneNumber(Spec):
    number: E164
    label: str = Field("", max_length=100)
    locale: Locale | None = None


class OpeningHours(Spec):
    """A week of spans (``null``: closed), and dated exceptions."""

    mon: Span | None
    tue: Span | None
    wed: Span | None
    thu: Span | None
    fri: Span | None
    sat: Span | None
    sun: Span | None
    exceptions: dict[date, Span | None] = Field(
        default_factory=dict, description="a date and its span, or null when closed"
    )

    @model_validator(mode="after")
    def _spans(self) -> OpeningHours:
        for span in [*(getattr(self, d) for d in DAY_KEYS), *self.exceptions.values()]:
            if span is not None:
                Hours.parse(span)  # closing after opening
        return self


class LocationService(Spec):
    """A counter service that takes bookings in slots (a repair counter, a workshop)."""

    id: Name
    name: str = Field(min_length=1, max_length=100)
    slot_minutes: int = Field(30, ge=5, le=480)


class Location(Spec):
    id: Id
    name: str = Field(min_length=1, max_length=100)
    short_name: str | None = Field(None, max_length=60, description="said on the phone")
    address: str = Field(min_length=1, max_length=300)
    city: str = Field("", max_length=100)
    timezone: str | None = Field(None, description="default: the pack's")
    locale: KnownLocale | None = Field(None, description="how its times read; default: the pack's")
    aliases: tuple[str, ...] = Field((), description="other ways customers name it")
    hours: OpeningHours
    services: tuple[LocationService, ...] = ()

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str | None) -> str | None:
        return value if value is None else _zone(value)


class Queue(Spec):
    id: Name
    name: str | None = Field(None, max_length=100)
    skills: tuple[str, ...] = ()
    hours: OpeningHours | None = Field(None, description="default: always staffed")
    target_answer_seconds: int = Field(120, ge=1, le=86_400)


class Person(Spec):
    """Someone who signs in: an agent on queues, a supervisor, or a location's associate."""

    id: Id
    name: str = Field(min_length=1, max_length=100)
    role: Literal["agent", "supervisor", "associate"]
    queues: tuple[Name, ...] = ()
    location: Id | None = None
    transfer_to: DialTarget | None = Field(None, description="where a warm transfer dials")
    capacity: int = Field(2, ge=0, le=50, description="conversations at once")

    @model_validator(mode="after")
    def _role(self) -> Person:
        if self.role == "associate" and self.location is None:
            raise ValueError("an associate needs a location")
        if self.role != "associate" and self.location is not None and self.role != "supervisor":
            raise ValueError(f"an {self.role} works queues, not a location")
        return self


ProofLevel = Literal["knowledge", "possession", "idp"]
ChannelName = Literal["chat", "voice", "in_person"]


class Codes(Spec):
    """One-time codes sent to a phone or email on the customer's record."""

    length: int = Field(6, ge=6, le=8, description="digits in a code")
    minutes: int = Field(10, ge=1, le=60, description="how long a code stays good")
    attempts: int = Field(3, ge=1, le=10, description="wrong tries before a code is spent")
    per_conversation: int = Field(3, ge=1, le=10, description="codes one conversation may send")
    per_customer_hour: int = Field(
        5, ge=1, le=50, description="codes one customer may be sent in an hour, on any channel"
    )
    per_customer_failures: int = Field(
        10, ge=1, le=100, description="wrong codes a customer may give in a day before codes stop"
    )


class Lockout(Spec):
    """How many wrong proofs stop proofs by knowledge and code, beyond one conversation's
    ``knowledge_attempts``: about one customer (on any channel, until a person lifts the
    lockout), and from one client (a chat session or a calling number)."""

    customer_failures: int = Field(
        5, ge=1, le=100,
        description="wrong proofs about one customer, on any channel, before proofs stop until"
        " a person lifts the lockout",
    )  # fmt: skip
    client_failures: int = Field(
        10, ge=1, le=100, description="wrong proofs one client may give, about anyone"
    )
    hours: int = Field(24, ge=1, le=24 * 30, description="how long a wrong proof counts")


class Verification(Spec):
    """How strongly a customer must prove who they are for which data.

    Proof levels, weakest first: knowledge (a postcode), possession (a one-time
    code), idp (a sign-in with the business's identity provider).
    """

    knowledge: dict[Name, str] = Field(
        default_factory=dict,
        description="a slot the agent may ask for, and the customer record's field it must match",
    )
    methods: dict[Name, ProofLevel] = Field(
        default_factory=dict,
        description="the level a proof method counts as here (default: a knowledge slot and"
        " agent: knowledge, otp: possession, oidc and login: idp)",
    )
    data: dict[Name, ProofLevel | dict[ChannelName | Literal["default"], ProofLevel]] = Field(
        default_factory=dict,
        description="a data class and the least level that unlocks it, for every channel or"
        " per channel ({voice: possession, default: knowledge})",
    )
    history: ProofLevel = Field(
        "knowledge",
        description="the least level with which a contact continues the customer's open"
        " conversation from another channel, and reads its earlier turns",
    )
    knowledge_attempts: int = Field(
        3, ge=1, le=10, description="wrong knowledge answers one conversation may give"
    )
    codes: Codes = Field(default_factory=Codes)
    lockout: Lockout = Field(default_factory=Lockout)

    def level_of(self, method: str) -> str:
        """The level a verified proof by ``method`` counts as for this business."""
        if method in self.methods:
            return self.methods[method]
        if method in self.knowledge:
            return "knowledge"
        return default_level(method, True)

    def needed(self, data_class: str | None, channel: str) -> str | None:
        """The least level that unlocks ``data_class`` on ``channel`` (None: no proof)."""
        if data_class is None or data_class not in self.data:
            return None
        need = self.data[data_class]
        if isinstance(need, str):
            return need
        return need.get(channel) or need.get("default")  # type: ignore[call-overload]


ConsentPurposeName = Literal["recording", "ai_processing", "analytics", "marketing"]


class ConsentPurpose(Spec):
    """How the business may process a customer's data for one purpose."""

    basis: Literal["notice", "opt_in"] = Field(
        "notice",
        description="notice: the channel's disclosure informs the customer, who may withdraw;"
        " opt_in: only an express yes counts",
    )
    notice_on: list[ChannelName] = Field(
        default_factory=list,
        description="channels whose disclosure gives the notice (the call's greeting, the chat's"
        " banner); recorded only where the channel has a disclosure",
    )


def _purposes() -> dict[ConsentPurposeName, ConsentPurpose]:
    return {
        "recording": ConsentPurpose(basis="notice", notice_on=["voice"]),
        "ai_processing": ConsentPurpose(basis="notice", notice_on=["voice", "chat"]),
        "analytics": ConsentPurpose(basis="notice"),
        "marketing": ConsentPurpose(basis="opt_in"),
    }


class Consent(Spec):
    """What the customer is told and asked, purpose by purpose, where the law requires it."""

    purposes: dict[ConsentPurposeName, ConsentPurpose] = Field(default_factory=_purposes)


class RetentionRule(Spec):
    """How long the personal data of some events is kept: after ``days`` it is erased (the
    events stay, their personal fields read ``[erased]``)."""

    channel: ChannelName | Literal["any"] = Field("any", description="whose events")
    types: list[Annotated[str, Field(pattern=r"^[a-z][a-z_]*(\.[a-z_]+)+$")]] = Field(
        default_factory=list,
        description="event types (default: every type holding personal data)",
    )
    days: int = Field(ge=1, le=36_500, description="how long from when the event happened")


class Escalation(Spec):
    """When the agent hands a conversation to a person."""

    policy: str = Field("escalation-v1", min_length=1, max_length=60)
    min_confidence: float = Field(0.5, ge=0, le=1)
    low_confidence_turns: int = Field(2, ge=1, le=10)
    tool_failures: int = Field(2, ge=1, le=10)
    negative_sentiment: float = Field(-0.6, ge=-1, le=0)
    default_route: Route = Field(description="where a handoff goes when its topic has no route")


class Customers(Spec):
    """How the business's customer records are found."""

    lookup: Name | None = Field(
        None,
        description="a tool taking {by: phone|email|member|id, value}, returning the record",
    )
    search: Name | None = Field(
        None, description="a tool taking {q, limit}, returning {customers: [records]}"
    )
    records: tuple[Name, ...] = Field(
        (), description="tools taking {customer_id} that list what staff see on a customer"
    )


class Voice(Spec):
    keypad: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], Name] = Field(
        default_factory=dict, description="a key pressed at the menu, and the intent it picks"
    )
    prompt: tuple[str, ...] = Field(
        (), description="sentences in the business's words, to bias speech recognition"
    )
    phrases: tuple[str, ...] = Field((), description="key words and values callers say")


class Guardrails(Spec):
    """What the model-backed agent does when a guardrail catches something."""

    prompt_injection: Literal["refuse", "escalate", "note"] = Field(
        "refuse", description="a customer's message that tries to change the agent's rules"
    )
    tool_results: Literal["withhold", "escalate"] = Field(
        "withhold", description="a tool result that carries instructions instead of data"
    )
    personal_data: Literal["rephrase", "escalate"] = Field(
        "rephrase", description="a reply holding personal data the customer may not hear"
    )
    promise: Literal["rephrase", "escalate"] = Field(
        "rephrase", description="a reply saying a sensitive action is done when it is not"
    )
    repeated: int = Field(3, ge=2, le=10, description="the same message this often: a person")
    turns: int = Field(30, ge=1, le=500, description="turns the agent takes before a person")


class Specialist(Spec):
    """One of several model-backed agents: what it is for, what it is told, what it calls."""

    description: str = Field(
        min_length=1, max_length=500, description="what it handles: how the others choose it"
    )
    instructions: str = Field("", max_length=8000, description="what it is told, after the rest")
    tools: tuple[Name, ...] = Field((), description="the tools it may call (of the model's)")


class ModelAgent(Spec):
    """The model-backed agent: the model it asks, what it may call, and what happens when the
    model cannot answer. The service's ``THREADLINE_MODEL_URL``, ``THREADLINE_MODEL`` and
    ``THREADLINE_MODEL_API_KEY`` win over ``url``, ``model`` and ``api_key``."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=500)] | None = Field(
        None, description="an OpenAI-compatible API's base URL (…/v1)"
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="the model's name")
    api_key: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")] | None = Field(
        None, description="the environment variable that holds the API key (never the key)"
    )
    instructions: str = Field(
        "", max_length=8000, description="what the agent is told first, in the business's words"
    )
    prompt_version: str = Field("1", min_length=1, max_length=32, description="recorded per turn")
    tools: tuple[Name, ...] | None = Field(
        None,
        description="the tools the model may call (default: every tool but the customer"
        " directory's look-up and search)",
    )
    fallback: Literal["embedded", "person"] = Field(
        "embedded", description="who takes a turn the model cannot: the embedded agent or a person"
    )
    timeout: float = Field(20.0, gt=0, le=300, description="seconds per request to the model")
    retries: int = Field(2, ge=0, le=5, description="attempts after the first on 429, 5xx")
    steps: int = Field(4, ge=1, le=10, description="model calls in one turn (tool rounds)")
    guardrails: Guardrails = Field(default_factory=Guardrails)
    agents: dict[Name, Specialist] = Field(
        default_factory=dict,
        description="several agents (a triage agent and specialists) that hand the conversation"
        " to one another with its whole context (default: one agent with every tool)",
    )
    start: Name | None = Field(None, description="the agent a conversation starts with")
    channels: tuple[Literal["chat", "voice", "sms"], ...] = Field(
        ("chat", "voice"), description="the channels the model answers on (feature flag)"
    )
    queues: tuple[Name, ...] | None = Field(
        None,
        description="answer only conversations whose topic routes to these queues (feature"
        " flag; default: all)",
    )
    share: float = Field(
        1.0, ge=0, le=1, description="the share of conversations the model answers (feature flag)"
    )


class Pack(Spec):
    """A business, as Threadline serves it."""

    format: Literal[1] = Field(FORMAT, description="the pack format's version")
    id: Id
    name: str = Field(min_length=1, max_length=100)
    timezone: str
    locale: KnownLocale = Field(
        DEFAULT_LOCALE, description="the greetings' locale, and how replies say times"
    )
    python_path: tuple[str, ...] = Field((), description="pack folders importable by python tools")
    brand: Brand | None = None
    greetings: ChannelTexts = Field(default_factory=ChannelTexts)
    disclosures: ChannelTexts = Field(default_factory=ChannelTexts)
    numbers: tuple[PhoneNumber, ...] = ()
    locations: tuple[Location, ...] = ()
    queues: tuple[Queue, ...] = Field(min_length=1)
    staff: tuple[Person, ...] = ()
    slots: dict[Name, SlotSpec] = Field(default_factory=dict)
    intents: dict[Name, IntentSpec] = Field(min_length=1)
    knowledge: tuple[KnowledgeEntry, ...] = ()
    verification: Verification = Field(default_factory=Verification)
    consent: Consent = Field(default_factory=Consent)
    retention: list[RetentionRule] = Field(
        default_factory=list,
        description="how long personal data is kept, per channel and event type; the shortest"
        " rule that matches an event wins",
    )
    escalation: Escalation
    tools: dict[Name, ToolSpec] = Field(default_factory=dict)
    customers: Customers = Customers()
    voice: Voice = Voice()
    replies: dict[Name, Reply] = Field(default_factory=dict, description="the agent's own words")
    model: ModelAgent | None = Field(
        None, description="the model-backed agent (default: the embedded agent alone)"
    )

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        return _zone(value)
