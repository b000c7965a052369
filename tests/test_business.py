"""The demo business as its pack states it: every fact of DEMO.md.

Stores, hours, queues, staff and intents are the pack's (``examples/northwind``);
customers, orders and appointments are the business's own records
(``systems/records.yaml``), read through its tools as the service reads them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from threadline.business import Business, WeeklyHours
from threadline.business.behaviour import HandoffIntent
from threadline.core.errors import NotFound
from threadline.systems import Systems, ToolCall

# Tuesday 4 March 2025, 09:00 in San Francisco.
NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
TODAY = date(2025, 3, 4)
TOMORROW = date(2025, 3, 5)
SUNDAY = date(2025, 3, 9)


async def call(systems: Systems, tool: str, now: datetime = NOW, **arguments: Any) -> Any:
    return await systems.tools.call(ToolCall(tool, arguments, f"test:{tool}", now))


# -- the business -------------------------------------------------------------------------------


def test_the_business_keeps_its_time_zone(northwind: Business) -> None:
    assert (northwind.id, northwind.name) == ("northwind", "Northwind Devices")
    assert str(northwind.timezone) == "America/Los_Angeles"
    assert northwind.today(NOW) == TODAY
    assert northwind.today(datetime(2025, 3, 5, 6, 30, tzinfo=UTC)) == TODAY  # 22:30 in LA


def test_a_naive_clock_is_refused(northwind: Business) -> None:
    with pytest.raises(ValueError, match="naive"):
        northwind.today(datetime(2025, 3, 4, 9, 0))


# -- stores and their hours ---------------------------------------------------------------------


def test_stores_have_the_demo_names_and_addresses(northwind: Business) -> None:
    assert [(s.id, s.name, s.address, s.city) for s in northwind.locations] == [
        ("sf-market", "Northwind Market Street", "901 Market St, San Francisco, CA 94103",
         "San Francisco"),
        ("oak-broadway", "Northwind Broadway", "1955 Broadway, Oakland, CA 94612", "Oakland"),
    ]  # fmt: skip


def test_stores_have_the_demo_weekly_hours(northwind: Business) -> None:
    hours = {s.id: s.hours.describe() for s in northwind.locations}
    assert hours == {
        "sf-market": "Mon–Sat 09:00–19:00, Sun 10:00–17:00",
        "oak-broadway": "Mon–Fri 10:00–18:00, Sat 10:00–16:00, Sun closed",
    }


def test_store_hours_on_a_date_follow_the_weekday(northwind: Business) -> None:
    oakland, market = northwind.location("oak-broadway"), northwind.location("sf-market")
    assert oakland is not None and market is not None
    assert oakland.hours.on(SUNDAY) is None
    assert str(market.hours.on(SUNDAY)) == "10:00–17:00"
    assert str(oakland.hours.on(date(2025, 3, 8))) == "10:00–16:00"


def test_an_unknown_store_is_not_found(northwind: Business) -> None:
    assert northwind.location("nyc-5th") is None
    with pytest.raises(NotFound):
        northwind.require_location("nyc-5th")


def test_both_stores_have_a_repair_counter_of_thirty_minute_slots(northwind: Business) -> None:
    assert {s.id: dict(s.services) for s in northwind.locations} == {
        "sf-market": {"repair": 30}, "oak-broadway": {"repair": 30}}  # fmt: skip


def test_weekly_hours_need_every_day() -> None:
    with pytest.raises(ValueError, match="missing days"):
        WeeklyHours.of(mon="09:00-17:00")


# -- queues and people --------------------------------------------------------------------------


def test_queues_have_the_demo_skills_and_agents(northwind: Business) -> None:
    agents = northwind.people("agent")
    rows = [(q.id, q.skills, tuple(a.id for a in agents if q.id in a.queues))
            for q in northwind.queues]  # fmt: skip
    assert rows == [
        ("orders", ("orders", "delivery"), ("agent-ana",)),
        ("repairs", ("repairs", "appointments"), ("agent-ben",)),
        ("billing", ("payments", "refunds"), ("agent-ana", "agent-ben")),
    ]
    assert [(a.id, a.name) for a in agents] == [("agent-ana", "Ana Ruiz"),
                                                ("agent-ben", "Ben Okafor")]  # fmt: skip


def test_the_supervisor_and_associates_are_the_demo_people(northwind: Business) -> None:
    (supervisor,) = northwind.people("supervisor")
    assert (supervisor.id, supervisor.name) == ("sup-sam", "Sam Lee")
    assert [(a.id, a.name, a.location) for a in northwind.people("associate")] == [
        ("assoc-priya", "Priya Nair", "sf-market"),
        ("assoc-diego", "Diego Alvarez", "oak-broadway"),
    ]
    assert [a.id for a in northwind.associates_at("sf-market")] == ["assoc-priya"]
    assert northwind.person("sup-sam") == supervisor
    assert northwind.person("nobody") is None


# -- intents ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "examples", "does"),
    [
        ("order_status", ("where is my order", "track order 1042"), "lookup"),
        ("book_appointment", ("book a repair", "can i come in tomorrow"), "booking"),
        ("store_hours", ("when are you open", "sunday hours in oakland"), "hours"),
        ("cancel_order", ("cancel my order",), "handoff"),
        ("refund", ("i want my money back",), "handoff"),
        ("complaint", ("this is unacceptable",), "handoff"),
        ("human", ("talk to a person", "agent please"), "handoff"),
    ],
)
def test_the_demo_intents_have_their_examples_and_flows(
    northwind: Business, intent: str, examples: tuple[str, ...], does: str
) -> None:
    spec = northwind.intent(intent)
    assert spec is not None and spec.does == does
    assert set(examples) <= set(spec.examples)


def test_sensitive_intents_go_to_billing_and_the_rest_to_a_person(northwind: Business) -> None:
    routed = {}
    for name in ("cancel_order", "refund", "complaint", "human"):
        spec = northwind.intent(name)
        assert isinstance(spec, HandoffIntent)
        routed[name] = (spec.reason, spec.route.queue if spec.route else None)
    assert routed == {
        "cancel_order": ("sensitive_intent", "billing"),
        "refund": ("sensitive_intent", "billing"),
        "complaint": ("sensitive_intent", None),
        "human": ("customer_request", None),
    }


def test_an_order_lookup_needs_the_order_number_and_protects_the_details(
    northwind: Business,
) -> None:
    spec = northwind.intent("order_status")
    assert spec is not None and spec.does == "lookup"
    assert (spec.lookup.slot, spec.lookup.tool, spec.lookup.protects) == (
        "order_number", "lookup_order", "order_details")  # fmt: skip
    assert northwind.pack.verification.knowledge == {"postcode": "postcode"}


# -- the business's records, through its tools -------------------------------------------------


async def test_customers_have_the_demo_contact_details(systems: Systems) -> None:
    rows = []
    for customer_id in ("cus-maya", "cus-omar", "cus-lena"):
        c = await call(systems, "find_customer", by="id", value=customer_id)
        rows.append((c["id"], c["name"], c["phone"], c["email"], c["member_id"],
                     c["knowledge"]["postcode"]))  # fmt: skip
    assert rows == [
        ("cus-maya", "Maya Chen", "+14155550123", "maya.chen@example.com", "NW-100234", "94103"),
        ("cus-omar", "Omar Haddad", "+15105550188", "omar.h@example.net", "NW-100871", "94612"),
        ("cus-lena", "Lena Park", "+16505550142", "lena.park@example.org", None, "94301"),
    ]


async def test_orders_have_the_demo_items_statuses_and_details(systems: Systems) -> None:
    rows = []
    for number in ("1042", "1043", "1057"):
        o = await call(systems, "lookup_order", order_number=number)
        rows.append((o["order"], o["customer_id"], o["item"], o["status"], o["detail"]))
    assert rows == [
        ("1042", "cus-maya", "Aster 14 laptop", "delayed",
         "carrier lost the parcel; replacement can ship in 2 days or be picked up at sf-market"),
        ("1043", "cus-omar", "Pixel-class phone case", "delivered", "delivered 3 days ago"),
        ("1057", "cus-lena", "Nimbus 6 phone", "shipped", "arriving tomorrow"),
    ]  # fmt: skip


async def test_relative_order_dates_follow_the_clock(systems: Systems) -> None:
    delivered = await call(systems, "lookup_order", order_number="1043")
    shipped = await call(systems, "lookup_order", order_number="1057")
    assert delivered["delivered_on"] == (TODAY - timedelta(days=3)).isoformat()
    assert shipped["expected_on"] == TOMORROW.isoformat()


async def test_order_1042_offers_a_replacement_in_two_days_or_a_pickup_at_sf_market(
    systems: Systems,
) -> None:
    order = await call(systems, "lookup_order", order_number="1042")
    assert order["options"] == [{"kind": "ship_replacement", "days": 2},
                                {"kind": "pickup", "location": "sf-market"}]  # fmt: skip
    assert order["pickup_location"] == "sf-market"


async def test_omar_has_a_screen_repair_at_broadway_tomorrow_at_eleven(systems: Systems) -> None:
    (appointment,) = (await call(systems, "customer_appointments",
                                 customer_id="cus-omar"))["appointments"]  # fmt: skip
    assert (appointment["location"], appointment["service"]) == ("oak-broadway", "screen repair")
    assert appointment["start"] == "2025-03-05T11:00:00-08:00"


async def test_omars_repair_is_tomorrow_whatever_day_it_is_asked(systems: Systems) -> None:
    saturday_night = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)  # 22:30 on Saturday in LA
    (appointment,) = (await call(systems, "customer_appointments", now=saturday_night,
                                 customer_id="cus-omar"))["appointments"]  # fmt: skip
    assert appointment["start"] == "2025-03-09T11:00:00-07:00"  # daylight time from the 9th


async def test_repair_slots_are_every_thirty_minutes_within_store_hours(systems: Systems) -> None:
    saturday = await call(systems, "free_slots", location="oak-broadway", date="2025-03-08",
                          service="repair")  # fmt: skip
    assert saturday["slots"][:3] == ["10:00", "10:30", "11:00"]
    assert saturday["slots"][-1] == "15:30" and len(saturday["slots"]) == 12
    sunday = await call(systems, "free_slots", location="oak-broadway", date=SUNDAY.isoformat(),
                        service="repair")  # fmt: skip
    assert sunday["slots"] == []


async def test_free_slots_today_leave_out_those_already_past(systems: Systems) -> None:
    later = NOW + timedelta(minutes=45)  # 09:45
    free = await call(systems, "free_slots", now=later, location="sf-market",
                      date=TODAY.isoformat(), service="repair")  # fmt: skip
    assert free["slots"][0] == "10:00"
