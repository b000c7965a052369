"""Northwind's own systems through the tool runner: orders, free slots, bookings, customers.

The tools are the pack's (``examples/northwind/systems``), called as the agent
calls them: arguments checked against each tool's schema, results against its
result schema, failures as :class:`~threadline.tools.ToolFailure` with a stable
code. The repair-counter book lives in the test's data folder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from threadline.agents import EmbeddedAgent
from threadline.business import Business
from threadline.core.conversation import decide, initial
from threadline.core.events import Actor, Event, EventCodec
from threadline.systems import CustomerRecord, Systems, ToolCall
from threadline.tools import NOT_FOUND, ToolFailure

NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # Tuesday 09:00 in Los Angeles
TOMORROW = "2025-03-05"
SUNDAY = "2025-03-09"


async def call(
    systems: Systems, tool: str, *, key: str = "", now: datetime = NOW, **arguments: Any
) -> dict[str, Any]:
    return await systems.tools.call(ToolCall(tool, arguments, key or f"test:{tool}", now))


async def refusal(systems: Systems, tool: str, **arguments: Any) -> ToolFailure:
    with pytest.raises(ToolFailure) as failed:
        await call(systems, tool, **arguments)
    return failed.value


def repair(location: str, day: str, at: str, **more: Any) -> dict[str, Any]:
    return {"location": location, "date": day, "time": at, "service": "repair", **more}


def clock(starts: list[str]) -> list[str]:
    """``2025-03-05T10:30:00-08:00`` as ``Wed 10:30``."""
    return [f"{datetime.fromisoformat(s):%a %H:%M}" for s in starts]


# -- orders --------------------------------------------------------------------------------------


async def test_an_order_is_found_with_everything_the_system_knows(systems: Systems) -> None:
    found = await call(systems, "lookup_order", order_number="1042")
    assert found == {
        "order": "1042", "customer_id": "cus-maya", "item": "Aster 14 laptop",
        "status": "delayed", "reason": "the carrier lost the parcel",
        "detail": "carrier lost the parcel; replacement can ship in 2 days"
                  " or be picked up at sf-market",
        "options": [{"kind": "ship_replacement", "days": 2},
                    {"kind": "pickup", "location": "sf-market"}],
        "pickup_location": "sf-market",
    }  # fmt: skip


async def test_an_unknown_order_is_not_found_for_good(systems: Systems) -> None:
    failure = await refusal(systems, "lookup_order", order_number="9999")
    assert (failure.code, failure.retryable) == (NOT_FOUND, False)


@pytest.mark.parametrize("number", ["ten", "#1042", "12", ""])
async def test_an_order_number_must_be_three_to_eight_digits(systems: Systems, number: str) -> None:
    failure = await refusal(systems, "lookup_order", order_number=number)
    assert (failure.code, failure.retryable) == ("bad_arguments", False)


async def test_a_customers_orders_are_listed(systems: Systems) -> None:
    found = await call(systems, "customer_orders", customer_id="cus-omar")
    assert [(o["order"], o["status"]) for o in found["orders"]] == [("1043", "delivered")]
    assert (await call(systems, "customer_orders", customer_id="cus-nobody")) == {"orders": []}


# -- free slots and bookings ---------------------------------------------------------------------


async def test_free_slots_leave_out_omars_appointment(systems: Systems) -> None:
    free = await call(systems, "free_slots", location="oak-broadway", date=TOMORROW,
                      service="repair")  # fmt: skip
    assert "11:00" not in free["slots"] and {"10:30", "11:30"} <= set(free["slots"])


async def test_a_closed_day_has_no_free_slots(systems: Systems) -> None:
    free = await call(systems, "free_slots", location="oak-broadway", date=SUNDAY,
                      service="repair")  # fmt: skip
    assert free == {"slots": []}


async def test_booking_a_free_slot_keeps_the_appointment_in_the_book(systems: Systems) -> None:
    booked = await call(
        systems,
        "book_appointment",
        **repair("oak-broadway", TOMORROW, "11:30", customer_id="cus-maya"),
    )
    assert booked == {
        "appointment_id": "apt-oak-broadway-20250305-1130", "location": "oak-broadway",
        "start": "2025-03-05T11:30:00-08:00", "service": "repair",
    }  # fmt: skip
    mayas = await call(systems, "customer_appointments", customer_id="cus-maya")
    assert mayas == {"appointments": [booked]}
    free = await call(systems, "free_slots", location="oak-broadway", date=TOMORROW,
                      service="repair")  # fmt: skip
    assert "11:30" not in free["slots"]


async def test_the_book_outlives_the_systems_that_wrote_it(
    northwind: Business, systems: Systems, tmp_path: Path
) -> None:
    await call(systems, "book_appointment", **repair("sf-market", TOMORROW, "14:30"))
    reopened = Systems.open(northwind, tmp_path / "systems")
    elsewhere = Systems.open(northwind, tmp_path / "other")
    try:
        for opened, free in ((reopened, False), (elsewhere, True)):
            slots = await call(opened, "free_slots", location="sf-market", date=TOMORROW,
                               service="repair")  # fmt: skip
            assert ("14:30" in slots["slots"]) is free
    finally:
        await reopened.close()
        await elsewhere.close()


async def test_a_repeated_booking_with_the_same_key_answers_the_first_result(
    systems: Systems,
) -> None:
    slot = repair("sf-market", TOMORROW, "10:00", customer_id="cus-lena")
    first = await call(systems, "book_appointment", key="turn-1/act-1", **slot)
    again = await call(systems, "book_appointment", key="turn-1/act-1", **slot)
    assert again == first
    assert len((await call(systems, "customer_appointments",
                           customer_id="cus-lena"))["appointments"]) == 1  # fmt: skip
    other = await refusal(systems, "book_appointment", key="turn-2/act-1", **slot)
    assert other.code == "slot_taken"


async def test_booking_a_taken_slot_is_retryable_and_suggests_the_nearest_free_ones(
    systems: Systems,
) -> None:
    failure = await refusal(systems, "book_appointment",
                            **repair("oak-broadway", TOMORROW, "11:00"))  # fmt: skip
    assert (failure.code, failure.retryable) == ("slot_taken", True)
    assert clock(failure.details["suggestions"]) == ["Wed 10:00", "Wed 10:30", "Wed 11:30"]


async def test_booking_on_a_closed_day_suggests_the_next_open_day(systems: Systems) -> None:
    failure = await refusal(systems, "book_appointment", **repair("oak-broadway", SUNDAY, "11:00"))
    assert (failure.code, failure.retryable) == ("slot_closed", False)
    assert clock(failure.details["suggestions"]) == ["Mon 10:00", "Mon 10:30", "Mon 11:00"]


@pytest.mark.parametrize(
    ("location", "day", "at", "code"),
    [
        ("sf-market", TOMORROW, "08:00", "slot_outside_hours"),
        ("sf-market", TOMORROW, "19:00", "slot_outside_hours"),
        ("sf-market", TOMORROW, "11:10", "slot_outside_hours"),
        ("sf-market", "2025-03-04", "08:30", "slot_outside_hours"),
        ("sf-market", "2025-03-04", "09:00", "slot_past"),
        ("sf-market", TOMORROW, "elevenish", "bad_arguments"),
        # Neither is a value the tool's schema refuses; the tool itself raises on them.
        ("nyc-5th", TOMORROW, "11:00", "tool_error"),
        ("sf-market", "next week", "11:00", "tool_error"),
    ],
)
async def test_booking_refuses_what_cannot_be_booked_for_good(
    systems: Systems, location: str, day: str, at: str, code: str
) -> None:
    with pytest.raises(ToolFailure) as failed:
        await call(systems, "book_appointment", now=NOW.replace(minute=1),
                   **repair(location, day, at))  # fmt: skip
    assert (failed.value.code, failed.value.retryable) == (code, False)


async def test_a_booking_needs_its_location_day_time_and_service(systems: Systems) -> None:
    failure = await refusal(systems, "book_appointment", location="sf-market", date=TOMORROW,
                            time="10:00")  # fmt: skip
    assert failure.code == "bad_arguments" and "service" in str(failure)


# -- customers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by", "value"),
    [("id", "cus-maya"), ("phone", "+14155550123"), ("email", "Maya.Chen@Example.com"),
     ("member", "nw-100234")],
)  # fmt: skip
async def test_a_customer_is_found_by_id_phone_email_or_member_id(
    systems: Systems, by: str, value: str
) -> None:
    found = await call(systems, "find_customer", by=by, value=value)
    assert found == {
        "id": "cus-maya", "name": "Maya Chen", "phone": "+14155550123",
        "email": "maya.chen@example.com", "member_id": "NW-100234",
        "knowledge": {"postcode": "94103"},
    }  # fmt: skip


async def test_an_unknown_customer_is_not_found(systems: Systems) -> None:
    failure = await refusal(systems, "find_customer", by="phone", value="+14155559999")
    assert (failure.code, failure.retryable) == (NOT_FOUND, False)


async def test_a_customer_look_up_by_anything_else_is_refused(systems: Systems) -> None:
    failure = await refusal(systems, "find_customer", by="postcode", value="94103")
    assert failure.code == "bad_arguments"


async def test_customer_records_come_from_the_packs_look_up_tool(systems: Systems) -> None:
    assert systems.customers.configured
    omar = await systems.customers.find("member", "NW-100871")
    assert omar == CustomerRecord(
        "cus-omar",
        "Omar Haddad",
        "+15105550188",
        "omar.h@example.net",
        "NW-100871",
        {"postcode": "94612"},
    )
    assert omar.first_name == "Omar"
    assert omar.to_vars() == {"id": "cus-omar", "name": "Omar Haddad", "first_name": "Omar"}
    assert await systems.customers.find("email", "nobody@example.com") is None
    assert await systems.customers.get("cus-lena") is not None


# -- what the agent records of a call ------------------------------------------------------------


async def test_the_agent_records_each_call_with_the_tools_version(systems: Systems) -> None:
    codec = EventCodec()
    maya = Actor("customer", "cus-maya")
    opening = [Event("c", t, p, channel="chat", leg_id="chat-1", actor=maya, occurred_at=NOW)
               for t, p in (("conversation.started", {"origin": "chat"}),
                            ("leg.started", {"leg_id": "chat-1", "channel": "chat"}),
                            ("message.received", {"text": "track order 1042"}))]  # fmt: skip
    state = decide(initial("c"), [codec.decode(codec.encode(e)) for e in opening])
    turn = await EmbeddedAgent(systems).take_turn(state, "track order 1042", "chat", NOW,
                                                  in_reply_to=opening[-1].event_id)  # fmt: skip
    (requested,) = [e for e in turn.events if e.type == "action.requested"]
    assert requested.payload["tool_version"] == systems.tools.version("lookup_order") == "1"
    assert codec.encode(requested).version == 2
