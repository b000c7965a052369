"""The bot's tools: order look-up gated by verification, booking, store hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from threadline.agents.tools import BusinessTools, ToolError
from threadline.business import OAK_BROADWAY, SF_MARKET, northwind

NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # Tuesday 09:00 in Los Angeles
TOMORROW = date(2025, 3, 5)


@pytest.fixture
def tools() -> BusinessTools:
    return BusinessTools(northwind(NOW))


def test_an_unverified_lookup_says_only_that_the_order_exists_and_its_status(
    tools: BusinessTools,
) -> None:
    found = tools.lookup_order("1042", verified=False)
    assert found.to_payload() == {"order": "1042", "status": "delayed", "verified": False}
    assert (found.item, found.detail, found.options) == (None, None, ())


def test_a_verified_lookup_gives_the_item_detail_and_options(tools: BusinessTools) -> None:
    found = tools.lookup_order("#1042", verified=True)
    assert found.to_payload() == {
        "order": "1042",
        "status": "delayed",
        "verified": True,
        "item": "Aster 14 laptop",
        "detail": "carrier lost the parcel; replacement can ship in 2 days"
        " or be picked up at sf-market",
        "options": ["ship_replacement", "pickup"],
    }


def test_looking_up_an_unknown_order_fails_for_good(tools: BusinessTools) -> None:
    with pytest.raises(ToolError) as failed:
        tools.lookup_order("9999", verified=True)
    assert (failed.value.code, failed.value.retryable) == ("unknown_order", False)


def test_an_order_number_must_be_digits(tools: BusinessTools) -> None:
    with pytest.raises(ToolError, match="not an order number"):
        tools.lookup_order("ten", verified=False)


def test_the_owner_is_verified_by_a_verified_identity_of_the_same_customer(
    tools: BusinessTools,
) -> None:
    assert tools.verified_owner("1042", customer_id="cus-maya", identity_verified=True)
    assert not tools.verified_owner("1042", customer_id="cus-maya", identity_verified=False)
    assert not tools.verified_owner("1042", customer_id="cus-lena", identity_verified=True)


def test_the_owner_is_verified_by_the_postcode_on_the_account(tools: BusinessTools) -> None:
    anonymous = {"customer_id": None, "identity_verified": False}
    assert tools.verified_owner("1042", postcode="94103", **anonymous)
    assert not tools.verified_owner("1042", postcode="94612", **anonymous)


def test_booking_a_free_slot_returns_the_appointment_and_the_new_business(
    tools: BusinessTools,
) -> None:
    booking = tools.book_appointment(OAK_BROADWAY, "2025-03-05", "11:30", customer_id="cus-maya")
    assert booking.to_payload() == {
        "appointment_id": "apt-oak-broadway-20250305-1130",
        "store": "oak-broadway",
        "start": "2025-03-05T11:30:00-08:00",
        "service": "repair",
    }
    assert booking.appointment in booking.business.appointments_for("cus-maya")
    assert tools.business.appointments_for("cus-maya") == ()


def test_booking_a_taken_slot_is_retryable_and_suggests_the_nearest_free_ones(
    tools: BusinessTools,
) -> None:
    with pytest.raises(ToolError) as refused:
        tools.book_appointment(OAK_BROADWAY, TOMORROW, time(11, 0), now=NOW)
    error = refused.value
    assert (error.code, error.retryable) == ("slot_taken", True)
    assert [f"{s:%H:%M}" for s in error.suggestions] == ["10:00", "10:30", "11:30"]


def test_booking_on_a_closed_day_suggests_the_next_open_day(tools: BusinessTools) -> None:
    with pytest.raises(ToolError) as refused:
        tools.book_appointment(OAK_BROADWAY, "2025-03-09", "11:00", now=NOW)
    error = refused.value
    assert (error.code, error.retryable) == ("slot_closed", False)
    assert [f"{s:%a %H:%M}" for s in error.suggestions] == ["Mon 10:00", "Mon 10:30", "Mon 11:00"]


@pytest.mark.parametrize(
    ("store", "day", "at", "code"),
    [
        ("nyc-5th", "2025-03-05", "11:00", "unknown_store"),
        (SF_MARKET, "next week", "11:00", "bad_date"),
        (SF_MARKET, "2025-03-05", "elevenish", "bad_time"),
        (SF_MARKET, "2025-03-05", "08:00", "slot_outside_hours"),
    ],
)
def test_booking_refuses_bad_input(
    tools: BusinessTools, store: str, day: str, at: str, code: str
) -> None:
    with pytest.raises(ToolError) as refused:
        tools.book_appointment(store, day, at, now=NOW)
    assert (refused.value.code, refused.value.retryable) == (code, False)


def test_store_hours_on_a_day(tools: BusinessTools) -> None:
    answer = tools.store_hours(OAK_BROADWAY, "2025-03-09")
    assert answer.closed
    assert answer.to_payload() == {
        "store": "oak-broadway",
        "date": "2025-03-09",
        "hours": "closed",
        "week": "Mon–Fri 10:00–18:00, Sat 10:00–16:00, Sun closed",
    }
    assert str(tools.store_hours(SF_MARKET, date(2025, 3, 9)).hours) == "10:00–17:00"


def test_store_hours_of_an_unknown_store_fail(tools: BusinessTools) -> None:
    with pytest.raises(ToolError) as failed:
        tools.store_hours("nyc-5th", "2025-03-09")
    assert failed.value.code == "unknown_store"
