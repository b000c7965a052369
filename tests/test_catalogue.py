"""The event catalogue: payload validation, JSON Schema export, PII marks and upcasting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from threadline.core.catalogue import CATALOGUE, EventSpec
from threadline.core.errors import UnknownEventType, ValidationError
from threadline.core.events import Actor, Event, EventCodec
from threadline.store.sqlite import open_sqlite

CODEC = EventCodec()
BOT = Actor("bot", "northwind-bot")
ROUTER = Actor("system", "router")


def field_errors(type_: str, version: int, payload: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        CATALOGUE.validate(type_, version, payload)
    return caught.value.errors


def sent_v1(text: str) -> Event:
    """A ``message.sent`` written by an old producer that only knew v1."""
    return Event("conv-1", "message.sent", {"text": text}, channel="chat", actor=BOT, version=1)


def handoff_v1(reason: str, queue: str = "billing") -> Event:
    """A ``handoff.requested`` written by an old producer that only knew v1."""
    return Event(
        "conv-1", "handoff.requested", {"queue": queue, "reason": reason}, actor=BOT, version=1
    )


# -- validation ------------------------------------------------------------------------


def test_a_missing_field_is_named_with_its_reason() -> None:
    errors = field_errors("message.received", 1, {})
    assert errors == [{"field": "payload.text", "reason": "Field required"}]


def test_a_field_of_the_wrong_type_is_named_with_its_reason() -> None:
    errors = field_errors("intent.detected", 1, {"intent": "order_status", "confidence": "high"})
    assert [e["field"] for e in errors] == ["payload.confidence"]
    assert "number" in errors[0]["reason"]


def test_an_extra_field_is_named_with_its_reason() -> None:
    errors = field_errors("message.received", 1, {"text": "hi", "sender": "maya"})
    assert errors == [{"field": "payload.sender", "reason": "Extra inputs are not permitted"}]


def test_every_invalid_field_is_reported_at_once() -> None:
    errors = field_errors("handoff.requested", 2, {"queue": "", "reason_code": "bored"})
    assert {e["field"] for e in errors} == {"payload.queue", "payload.reason_code"}


def test_the_error_message_names_the_event_and_the_fields() -> None:
    with pytest.raises(ValidationError, match=r"invalid slot\.filled v1 payload: payload\.name"):
        CATALOGUE.validate("slot.filled", 1, {"value": "1042"})


def test_validation_fills_defaults_and_returns_json_ready_data() -> None:
    data = CATALOGUE.validate(
        "handoff.offered",
        1,
        {
            "offer_id": "o-1",
            "agent_id": "ana",
            "queue": "billing",
            "expires_at": "2025-03-04T09:00Z",
        },
    )
    assert data["expires_at"] == "2025-03-04T09:00:00Z"
    assert CATALOGUE.validate("leg.ended", 1, {"leg_id": "call-1"})["reason"] == "completed"


def test_encoding_an_invalid_payload_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        CODEC.encode(Event("conv-1", "message.received", {"text": ""}))
    assert caught.value.errors[0]["field"] == "payload.text"


# -- unknown types and versions --------------------------------------------------------


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(UnknownEventType) as caught:
        CODEC.encode(Event("conv-1", "message.teleported", {"text": "hi"}))
    assert caught.value.errors[0]["field"] == "type"


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(UnknownEventType) as caught:
        CODEC.encode(Event("conv-1", "message.received", {"text": "hi"}, version=2))
    assert caught.value.errors[0]["field"] == "version"


def test_a_stored_event_of_an_unknown_version_is_refused_on_read() -> None:
    stored = CODEC.encode(Event("conv-1", "message.sent", {"text": "hi"}))._replace(version=9)
    with pytest.raises(UnknownEventType):
        CODEC.decode(stored)


def test_a_stored_event_of_an_unknown_type_is_refused_on_read() -> None:
    stored = CODEC.encode(Event("conv-1", "note.added", {"author_id": "ana", "text": "vip"}))
    with pytest.raises(UnknownEventType):
        CODEC.decode(stored._replace(type="note.erased"))


def test_an_event_without_a_version_is_written_in_the_current_version() -> None:
    record = CODEC.encode(Event("conv-1", "message.sent", {"text": "hi"}))
    assert record.version == CATALOGUE.current_version("message.sent") == 3


# -- JSON Schema export ----------------------------------------------------------------

SPECS = list(CATALOGUE)
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
JSON_TYPES = {"null", "boolean", "object", "array", "number", "string", "integer"}
ANNOTATIONS = {"title", "description", "default", "examples", "format"}


def assert_well_formed(schema: Any, root: dict[str, Any], where: str = "#") -> None:
    """A structural check of the Draft 2020-12 keywords the catalogue uses.

    ``jsonschema`` is not installed in this environment, so this walks the schema
    and checks each keyword's shape (and that every ``$ref`` resolves) instead.
    """
    assert isinstance(schema, dict | bool), where
    if isinstance(schema, bool):
        return
    for key, value in schema.items():
        at = f"{where}/{key}"
        if key == "type":
            names = value if isinstance(value, list) else [value]
            assert names and set(names) <= JSON_TYPES, at
        elif key in {"properties", "$defs", "patternProperties"}:
            assert isinstance(value, dict), at
            for name, sub in value.items():
                assert_well_formed(sub, root, f"{at}/{name}")
        elif key in {"additionalProperties", "items", "not", "propertyNames"}:
            assert_well_formed(value, root, at)
        elif key in {"anyOf", "allOf", "oneOf", "prefixItems"}:
            assert isinstance(value, list) and value, at
            for i, sub in enumerate(value):
                assert_well_formed(sub, root, f"{at}/{i}")
        elif key == "required":
            assert isinstance(value, list) and len(set(value)) == len(value), at
            assert set(value) <= set(schema.get("properties", {})), at
        elif key == "enum":
            assert isinstance(value, list) and value, at
        elif key in {"minLength", "maxLength", "minItems", "maxItems"}:
            assert isinstance(value, int) and value >= 0, at
        elif key in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
            assert isinstance(value, int | float) and not isinstance(value, bool), at
        elif key == "$ref":
            assert value.startswith("#/$defs/"), at
            assert value.removeprefix("#/$defs/") in root.get("$defs", {}), at
        elif key in {"$schema", "$id", "const", "pattern"} or key in ANNOTATIONS:
            continue
        else:
            assert key.startswith("x-"), f"unexpected keyword {at}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.type}-v{s.version}")
def test_every_type_exports_a_well_formed_draft_2020_12_schema(spec: EventSpec) -> None:
    schema = CATALOGUE.json_schema(spec)
    assert schema["$schema"] == DRAFT_2020_12
    assert schema["$id"] == f"urn:threadline:event:{spec.type}:v{spec.version}"
    assert schema["type"] == "object"
    assert_well_formed(schema, schema)
    orjson.dumps(schema)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.type}-v{s.version}")
def test_every_schema_is_closed_like_its_payload(spec: EventSpec) -> None:
    assert CATALOGUE.json_schema(spec)["additionalProperties"] is False


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.type}-v{s.version}")
def test_x_pii_fields_lists_exactly_the_properties_marked_pii(spec: EventSpec) -> None:
    schema = CATALOGUE.json_schema(spec)
    marked = sorted(n for n, p in schema["properties"].items() if p.get("x-pii") is True)
    assert schema["x-pii-fields"] == marked == sorted(spec.pii)


@pytest.mark.parametrize(
    ("type_", "version", "pii"),
    [
        ("message.received", 1, ["text"]),
        ("message.sent", 2, ["heard_text", "text"]),
        ("message.sent", 3, ["heard_text", "text"]),
        ("utterance.transcribed", 1, ["text"]),
        ("slot.filled", 1, ["value"]),
        ("identity.linked", 1, ["value"]),
        ("leg.started", 1, ["address"]),
        ("action.requested", 1, ["arguments"]),
        ("note.added", 1, ["text"]),
        ("consent.granted", 1, []),
    ],
)
def test_personal_data_fields_are_marked_pii(type_: str, version: int, pii: list[str]) -> None:
    assert CATALOGUE.json_schema(CATALOGUE.spec(type_, version))["x-pii-fields"] == pii


def test_the_catalogue_holds_every_canonical_event_type() -> None:
    canonical = {
        "conversation.started", "leg.started", "leg.ended", "message.received", "message.sent",
        "utterance.transcribed", "intent.detected", "slot.filled", "action.requested",
        "action.completed", "action.failed", "handoff.requested", "handoff.offered",
        "handoff.accepted", "handoff.returned", "note.added", "consent.granted",
        "consent.revoked", "identity.linked", "conversation.resolved", "conversation.reopened",
    }  # fmt: skip
    assert canonical <= {spec.type for spec in SPECS}


# -- upcasting -------------------------------------------------------------------------


def test_message_sent_written_as_v1_reads_back_as_v3_heard_in_full() -> None:
    record = CODEC.encode(sent_v1("Your parcel ships tomorrow."))
    assert record.version == 1
    event = CODEC.decode(record)
    assert event.version == 3
    assert event.payload == {
        "text": "Your parcel ships tomorrow.",
        "heard_text": "Your parcel ships tomorrow.",
        "in_reply_to": None,
        "checkin": None,
    }


def test_a_v1_handoff_reason_that_is_a_code_becomes_the_reason_code() -> None:
    event = CODEC.decode(CODEC.encode(handoff_v1("customer_request")))
    assert event.version == 2
    assert event.payload == {
        "queue": "billing",
        "reason_code": "customer_request",
        "reason_detail": "",
        "skills": [],
    }


def test_a_v1_handoff_reason_in_free_text_becomes_other_with_the_sentence_as_detail() -> None:
    event = CODEC.decode(CODEC.encode(handoff_v1("Customer wants to dispute a charge")))
    assert event.payload == {
        "queue": "billing",
        "reason_code": "other",
        "reason_detail": "Customer wants to dispute a charge",
        "skills": [],
    }


@pytest.mark.parametrize(
    "old",
    [sent_v1("See you soon"), handoff_v1("low_confidence"), handoff_v1("angry about fees")],
    ids=["message.sent", "handoff.requested-code", "handoff.requested-sentence"],
)
def test_an_upcast_payload_is_a_valid_current_payload(old: Event) -> None:
    event = CODEC.decode(CODEC.encode(old))
    assert CATALOGUE.validate(event.type, event.version, event.payload) == event.payload


def test_a_current_version_event_passes_through_untouched() -> None:
    payload = {
        "queue": "returns",
        "reason_code": "sensitive_intent",
        "reason_detail": "asked about a bereavement refund",
        "skills": ["refunds", "de"],
    }
    record = CODEC.encode(Event("conv-1", "handoff.requested", payload, actor=BOT))
    event = CODEC.decode(record)
    assert record.version == event.version == 2
    assert event.payload == payload


def test_the_upcaster_chain_leaves_a_current_payload_alone() -> None:
    payload = {"text": "hi", "heard_text": "h", "in_reply_to": "evt-9", "checkin": None}
    assert CATALOGUE.upcast("message.sent", 3, payload) == (payload, 3)


def test_upcasting_is_deterministic() -> None:
    record = CODEC.encode(handoff_v1("Customer wants to dispute a charge"))
    first, second = CODEC.decode(record), CODEC.decode(record)
    assert first == second


def test_upcasting_does_not_change_its_input() -> None:
    stored = {"queue": "billing", "reason": "angry about fees"}
    CATALOGUE.upcast("handoff.requested", 1, stored)
    assert stored == {"queue": "billing", "reason": "angry about fees"}


def test_upcasting_an_unknown_version_is_refused() -> None:
    with pytest.raises(UnknownEventType):
        CATALOGUE.upcast("message.sent", 0, {"text": "hi"})


async def test_v1_events_stored_in_sqlite_read_back_in_the_current_shape(tmp_path) -> None:
    store = await open_sqlite(tmp_path / "threadline.db")
    try:
        old = [
            replace(sent_v1("Your parcel ships tomorrow."), idempotency_key="k-1"),
            replace(handoff_v1("wants a human, now"), idempotency_key="k-2"),
        ]
        await store.append("conv-1", [CODEC.encode(e) for e in old])
        stored = await store.read("conv-1")
    finally:
        await store.close()
    assert [r.version for r in stored] == [1, 1]
    sent, handoff = (CODEC.decode(r) for r in stored)
    assert (sent.version, handoff.version) == (3, 2)
    assert sent.payload["heard_text"] == "Your parcel ships tomorrow."
    assert handoff.payload["reason_code"] == "other"
    assert handoff.payload["reason_detail"] == "wants a human, now"
