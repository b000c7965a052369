"""The demo business, Northwind Devices, as typed, frozen data with look-ups and booking."""

from threadline.business.business import DEFAULT_SERVICE, Business, SlotUnavailable
from threadline.business.northwind import OAK_BROADWAY, SF_MARKET, northwind
from threadline.business.values import (
    SLOT_LENGTH,
    TIMEZONE,
    Appointment,
    Associate,
    Customer,
    Hours,
    HumanAgent,
    Order,
    OrderOption,
    OrderStatus,
    Queue,
    Store,
    WeeklyHours,
    e164,
)

__all__ = [
    "DEFAULT_SERVICE",
    "OAK_BROADWAY",
    "SF_MARKET",
    "SLOT_LENGTH",
    "TIMEZONE",
    "Appointment",
    "Associate",
    "Business",
    "Customer",
    "Hours",
    "HumanAgent",
    "Order",
    "OrderOption",
    "OrderStatus",
    "Queue",
    "SlotUnavailable",
    "Store",
    "WeeklyHours",
    "e164",
    "northwind",
]
