"""Northwind Devices, the demo business of DEMO.md, seeded relative to a clock.

Relative facts ("delivered 3 days ago", "arriving tomorrow", Omar's repair
"tomorrow 11:00") are dated from the ``now`` passed to :func:`northwind`, in the
business's zone, so a journey written once holds on any day it runs.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Final

from threadline.business.business import Business
from threadline.business.values import (
    TIMEZONE,
    Appointment,
    Associate,
    Customer,
    HumanAgent,
    Order,
    OrderOption,
    Queue,
    Store,
    WeeklyHours,
)

SF_MARKET: Final = "sf-market"
OAK_BROADWAY: Final = "oak-broadway"

STORES: Final = (
    Store(
        id=SF_MARKET,
        name="Northwind Market Street",
        address="901 Market St, San Francisco, CA 94103",
        city="San Francisco",
        hours=WeeklyHours.of(
            mon="09:00-19:00", tue="09:00-19:00", wed="09:00-19:00", thu="09:00-19:00",
            fri="09:00-19:00", sat="09:00-19:00", sun="10:00-17:00",
        ),
    ),
    Store(
        id=OAK_BROADWAY,
        name="Northwind Broadway",
        address="1955 Broadway, Oakland, CA 94612",
        city="Oakland",
        hours=WeeklyHours.of(
            mon="10:00-18:00", tue="10:00-18:00", wed="10:00-18:00", thu="10:00-18:00",
            fri="10:00-18:00", sat="10:00-16:00", sun=None,
        ),
    ),
)  # fmt: skip

# id, name, phone (E.164), email, member id, postcode
CUSTOMERS: Final = (
    Customer("cus-maya", "Maya Chen", "+14155550123", "maya.chen@example.com",
             "NW-100234", "94103"),
    Customer("cus-omar", "Omar Haddad", "+15105550188", "omar.h@example.net",
             "NW-100871", "94612"),
    Customer("cus-lena", "Lena Park", "+16505550142", "lena.park@example.org",
             None, "94301"),
)  # fmt: skip

ANA: Final = HumanAgent("agent-ana", "Ana Ruiz")
BEN: Final = HumanAgent("agent-ben", "Ben Okafor")
SAM: Final = HumanAgent("sup-sam", "Sam Lee")

QUEUES: Final = (
    Queue("orders", ("orders", "delivery"), (ANA.id,)),
    Queue("repairs", ("repairs", "appointments"), (BEN.id,)),
    Queue("billing", ("payments", "refunds"), (ANA.id, BEN.id)),
)

ASSOCIATES: Final = (
    Associate("assoc-priya", "Priya Nair", SF_MARKET),
    Associate("assoc-diego", "Diego Alvarez", OAK_BROADWAY),
)

OMARS_REPAIR_AT: Final = time(11, 0)


def northwind(now: datetime) -> Business:
    """Northwind Devices as of ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("northwind() needs a timezone-aware clock")
    today = now.astimezone(TIMEZONE).date()
    tomorrow = today + timedelta(days=1)
    orders = (
        Order(
            number="1042",
            customer_id="cus-maya",
            item="Aster 14 laptop",
            status="delayed",
            detail=(
                "carrier lost the parcel; replacement can ship in 2 days"
                " or be picked up at sf-market"
            ),
            reason="the carrier lost the parcel",
            options=(OrderOption("ship_replacement", days=2),
                     OrderOption("pickup", store_id=SF_MARKET)),
        ),
        Order(
            number="1043",
            customer_id="cus-omar",
            item="Pixel-class phone case",
            status="delivered",
            detail="delivered 3 days ago",
            delivered_on=today - timedelta(days=3),
        ),
        Order(
            number="1057",
            customer_id="cus-lena",
            item="Nimbus 6 phone",
            status="shipped",
            detail="arriving tomorrow",
            expected_on=tomorrow,
        ),
    )  # fmt: skip
    # Seeded as DEMO.md states it, even on a day the store is closed.
    omars_repair = Appointment(
        id="apt-omar-screen",
        store_id=OAK_BROADWAY,
        customer_id="cus-omar",
        service="screen repair",
        start=datetime.combine(tomorrow, OMARS_REPAIR_AT, TIMEZONE),
    )
    return Business(
        name="Northwind Devices",
        stores=STORES,
        customers=CUSTOMERS,
        orders=orders,
        appointments=(omars_repair,),
        queues=QUEUES,
        agents=(ANA, BEN),
        supervisor=SAM,
        associates=ASSOCIATES,
        timezone=TIMEZONE,
    )
