"""The demo business: every fact of DEMO.md, the look-ups and the repair-counter book."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from threadline.business import (
    OAK_BROADWAY,
    SF_MARKET,
    TIMEZONE,
    Business,
    SlotUnavailable,
    WeeklyHours,
    e164,
    northwind,
)
from threadline.core.errors import NotFound

# Tuesday 4 March 2025, 09:00 in San Francisco.
NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
TODAY = date(2025, 3, 4)
TOMORROW = date(2025, 3, 5)


@pytest.fixture
def business() -> Business:
    return northwind(NOW)


def test_the_business_keeps_its_time_zone(business: Business) -> None:
    assert (business.name, str(business.timezone)) == ("Northwind Devices", "America/Los_Angeles")
    assert business.today(NOW) == TODAY


def test_stores_have_the_demo_names_and_addresses(business: Business) -> None:
    assert [(s.id, s.name, s.address) for s in business.stores] == [
        ("sf-market", "Northwind Market Street", "901 Market St, San Francisco, CA 94103"),
        ("oak-broadway", "Northwind Broadway", "1955 Broadway, Oakland, CA 94612"),
    ]


def test_stores_have_the_demo_weekly_hours(business: Business) -> None:
    hours = {s.id: s.hours.describe() for s in business.stores}
    assert hours == {
        "sf-market": "Mon–Sat 09:00–19:00, Sun 10:00–17:00",
        "oak-broadway": "Mon–Fri 10:00–18:00, Sat 10:00–16:00, Sun closed",
    }


def test_customers_have_the_demo_contact_details(business: Business) -> None:
    rows = [(c.id, c.name, c.phone, c.email, c.member_id, c.postcode) for c in business.customers]
    assert rows == [
        ("cus-maya", "Maya Chen", "+14155550123", "maya.chen@example.com", "NW-100234", "94103"),
        ("cus-omar", "Omar Haddad", "+15105550188", "omar.h@example.net", "NW-100871", "94612"),
        ("cus-lena", "Lena Park", "+16505550142", "lena.park@example.org", None, "94301"),
    ]


def test_orders_have_the_demo_items_statuses_and_details(business: Business) -> None:
    rows = [(o.number, o.customer_id, o.item, o.status, o.detail) for o in business.orders]
    assert rows == [
        ("1042", "cus-maya", "Aster 14 laptop", "delayed",
         "carrier lost the parcel; replacement can ship in 2 days or be picked up at sf-market"),
        ("1043", "cus-omar", "Pixel-class phone case", "delivered", "delivered 3 days ago"),
        ("1057", "cus-lena", "Nimbus 6 phone", "shipped", "arriving tomorrow"),
    ]  # fmt: skip


def test_relative_order_dates_follow_the_clock(business: Business) -> None:
    assert business.order("1043").delivered_on == TODAY - timedelta(days=3)
    assert business.order("1057").expected_on == TOMORROW


def test_order_1042_offers_a_replacement_in_two_days_or_a_pickup_at_sf_market(
    business: Business,
) -> None:
    options = business.order("#1042").options
    assert [(o.kind, o.days, o.store_id) for o in options] == [
        ("ship_replacement", 2, None),
        ("pickup", None, "sf-market"),
    ]


def test_omar_has_a_screen_repair_at_broadway_tomorrow_at_eleven(business: Business) -> None:
    (appointment,) = business.appointments_for("cus-omar")
    assert (appointment.store_id, appointment.service) == (OAK_BROADWAY, "screen repair")
    assert appointment.start == datetime.combine(TOMORROW, time(11, 0), TIMEZONE)


def test_omars_repair_is_tomorrow_whatever_day_the_business_is_seeded() -> None:
    saturday_night = datetime(2025, 3, 8, 22, 30, tzinfo=TIMEZONE)
    (appointment,) = northwind(saturday_night).appointments
    assert appointment.start == datetime(2025, 3, 9, 11, 0, tzinfo=TIMEZONE)


def test_queues_have_the_demo_skills_and_agents(business: Business) -> None:
    assert [(q.id, q.skills, q.agent_ids) for q in business.queues] == [
        ("orders", ("orders", "delivery"), ("agent-ana",)),
        ("repairs", ("repairs", "appointments"), ("agent-ben",)),
        ("billing", ("payments", "refunds"), ("agent-ana", "agent-ben")),
    ]
    assert [(a.id, a.name) for a in business.agents] == [
        ("agent-ana", "Ana Ruiz"),
        ("agent-ben", "Ben Okafor"),
    ]


def test_the_supervisor_and_associates_are_the_demo_people(business: Business) -> None:
    assert (business.supervisor.id, business.supervisor.name) == ("sup-sam", "Sam Lee")
    assert [(a.id, a.name, a.store_id) for a in business.associates] == [
        ("assoc-priya", "Priya Nair", "sf-market"),
        ("assoc-diego", "Diego Alvarez", "oak-broadway"),
    ]
    assert business.agent("sup-sam") == business.supervisor


def test_customers_are_found_by_id_phone_email_and_member_id(business: Business) -> None:
    maya = business.customer("cus-maya")
    assert maya is not None
    assert business.customer_by_phone("+1 415 555 0123") == maya
    assert business.customer_by_phone("(415) 555-0123") == maya
    assert business.customer_by_email("Maya.Chen@Example.com") == maya
    assert business.customer_by_member_id("nw-100234") == maya
    assert business.customer_by_phone("+1 415 555 9999") is None


def test_phone_numbers_normalise_to_e164() -> None:
    assert e164("+1 510 555 0188") == "+15105550188"
    assert e164("510.555.0188") == "+15105550188"
    assert e164("12") is None


def test_unknown_orders_are_none(business: Business) -> None:
    assert business.order("9999") is None


def test_store_hours_on_a_date_follow_the_weekday(business: Business) -> None:
    sunday = date(2025, 3, 9)
    assert business.hours_on(OAK_BROADWAY, sunday) is None
    assert str(business.hours_on(SF_MARKET, sunday)) == "10:00–17:00"
    assert str(business.hours_on(OAK_BROADWAY, date(2025, 3, 8))) == "10:00–16:00"


def test_hours_of_an_unknown_store_are_not_found(business: Business) -> None:
    with pytest.raises(NotFound):
        business.hours_on("nyc-5th", TODAY)


def test_repair_slots_are_every_thirty_minutes_within_store_hours(business: Business) -> None:
    slots = business.slots(OAK_BROADWAY, date(2025, 3, 8))
    assert [f"{s:%H:%M}" for s in slots[:3]] == ["10:00", "10:30", "11:00"]
    assert f"{slots[-1]:%H:%M}" == "15:30"
    assert len(slots) == 12
    assert business.slots(OAK_BROADWAY, date(2025, 3, 9)) == ()


def test_omars_slot_is_not_free(business: Business) -> None:
    free = {f"{s:%H:%M}" for s in business.free_slots(OAK_BROADWAY, TOMORROW)}
    assert "11:00" not in free and {"10:30", "11:30"} <= free


def test_free_slots_after_a_moment_leave_out_earlier_ones(business: Business) -> None:
    free = business.free_slots(SF_MARKET, TODAY, after=NOW + timedelta(minutes=45))
    assert f"{free[0]:%H:%M}" == "10:00"


def test_booking_returns_a_new_business_with_the_appointment(business: Business) -> None:
    start = business.slot_at(TOMORROW, time(14, 30))
    booked, appointment = business.book(SF_MARKET, start, customer_id="cus-lena", now=NOW)
    assert appointment in booked.appointments
    assert appointment not in business.appointments
    assert start not in booked.free_slots(SF_MARKET, TOMORROW)
    assert appointment.end - appointment.start == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("store", "day", "at", "reason"),
    [
        (OAK_BROADWAY, TOMORROW, time(11, 0), "taken"),
        (OAK_BROADWAY, date(2025, 3, 9), time(11, 0), "closed"),
        (SF_MARKET, TOMORROW, time(19, 0), "outside_hours"),
        (SF_MARKET, TOMORROW, time(11, 10), "outside_hours"),
        (SF_MARKET, TODAY, time(9, 0), "past"),
    ],
)
def test_booking_refuses_slots_that_are_not_free(
    business: Business, store: str, day: date, at: time, reason: str
) -> None:
    with pytest.raises(SlotUnavailable) as refused:
        business.book(
            store, business.slot_at(day, at), customer_id="cus-maya", now=NOW + timedelta(minutes=1)
        )
    assert refused.value.reason == reason


def test_weekly_hours_need_every_day() -> None:
    with pytest.raises(KeyError):
        WeeklyHours.of(mon="09:00-17:00")


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        northwind(datetime(2025, 3, 4, 9, 0))
