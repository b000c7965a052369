"""Slots of the Northwind pack read from typed and spoken text, against a clock in Los Angeles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from threadline.agents.numbers import normalise
from threadline.agents.slots import Extraction, SlotReader
from threadline.business import Business, load

# Tuesday 4 March 2025, 09:00 in Los Angeles (17:00 UTC).
NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
#: The Northwind pack's time slot (a booking's time).
TIME = "time"

Read = Callable[..., Extraction]
Slots = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def read(northwind: Business) -> Read:
    reader = SlotReader(northwind)

    def read(text: str, now: datetime = NOW, expecting: str | None = None) -> Extraction:
        return reader.read(text, now, northwind, expecting=expecting)

    return read


@pytest.fixture(scope="module")
def slots(read: Read) -> Slots:
    return lambda text, **kw: dict(read(text, **kw).values)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("my order 1042 is late", "1042"),
        ("order #1057", "1057"),
        ("Order number: 1043", "1043"),
        ("it's ten forty two", "1042"),
        ("one zero four two", "1042"),
        ("ten fifty seven", "1057"),
        ("one thousand forty two", "1042"),
        ("1042", "1042"),
    ],
)
def test_order_numbers_are_found_typed_or_spoken(text: str, number: str, slots: Slots) -> None:
    assert slots(text)["order_number"] == number


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("today please", "2025-03-04"),
        ("can I come in tomorrow", "2025-03-05"),
        ("the day after tomorrow", "2025-03-06"),
        ("Sunday hours in Oakland", "2025-03-09"),
        ("on sat", "2025-03-08"),
        ("Tuesday", "2025-03-04"),
        ("next Tuesday", "2025-03-11"),
        ("2025-03-20", "2025-03-20"),
        ("March 10th", "2025-03-10"),
        ("the 5th of April", "2025-04-05"),
        ("January 2", "2026-01-02"),
    ],
)
def test_dates_resolve_against_the_clock_in_the_business_zone(
    text: str, day: str, slots: Slots
) -> None:
    assert slots(text)["date"] == day


def test_today_is_the_local_date_not_the_utc_one(read: Read) -> None:
    late_evening = datetime(2025, 3, 5, 6, 30, tzinfo=UTC)  # 22:30 on the 4th in LA
    assert read("today", late_evening).values["date"] == "2025-03-04"


def test_an_impossible_date_is_no_date(slots: Slots) -> None:
    assert "date" not in slots("2025-02-30")


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("11am", "11:00"),
        ("at 11:30", "11:30"),
        ("3pm", "15:00"),
        ("12 pm", "12:00"),
        ("at noon", "12:00"),
        ("half past ten", "10:30"),
        ("at eleven thirty", "11:30"),
        ("eleven am", "11:00"),
        ("at 3", "15:00"),
        ("4 in the afternoon", "16:00"),
        ("10 o'clock", "10:00"),
    ],
)
def test_times_are_found_in_twenty_four_hours(text: str, at: str, slots: Slots) -> None:
    assert slots(text)["time"] == at


def test_a_bare_hour_is_a_time_only_when_a_time_is_expected(slots: Slots) -> None:
    assert "time" not in slots("11")
    assert slots("11", expecting=TIME)["time"] == "11:00"
    assert slots("eleven", expecting=TIME)["time"] == "11:00"


@pytest.mark.parametrize(
    ("text", "store"),
    [
        ("the Market Street store", "sf-market"),
        ("in San Francisco", "sf-market"),
        ("SF", "sf-market"),
        ("Oakland", "oak-broadway"),
        ("the Broadway one", "oak-broadway"),
        ("oak land", "oak-broadway"),
    ],
)
def test_stores_are_found_by_street_or_city(text: str, store: str, slots: Slots) -> None:
    assert slots(text)["store"] == store


@pytest.mark.parametrize(
    "text",
    ["my postcode is 94103", "zip 94103", "94103", "nine four one zero three", "9 4 1 0 3"],
)
def test_postcodes_are_five_digits_typed_or_spoken(text: str, slots: Slots) -> None:
    assert slots(text) == {"postcode": "94103"}


def test_several_slots_come_out_of_one_sentence(slots: Slots) -> None:
    assert slots("book a repair tomorrow at 11am in Oakland") == {
        "date": "2025-03-05",
        "time": "11:00",
        "store": "oak-broadway",
    }


def test_an_order_number_and_a_postcode_are_told_apart(slots: Slots) -> None:
    assert slots("order 1057, zip 94301") == {"order_number": "1057", "postcode": "94301"}


def test_digits_in_a_date_or_time_are_not_an_order_number(slots: Slots) -> None:
    assert "order_number" not in slots("2025-03-20 at 10:30")


def test_text_without_slots_has_none(slots: Slots) -> None:
    assert slots("where is my order") == {}
    assert slots("oh no, c'mon") == {}


def test_a_text_of_slots_and_filler_words_is_only_slots(read: Read) -> None:
    assert read("Oakland, tomorrow at 11 please", NOW).only_slots
    assert not read("is Oakland open tomorrow", NOW).only_slots
    assert not read("thanks", NOW).only_slots


def test_spoken_numbers_become_digits_and_clock_times() -> None:
    assert normalise("My order is Ten Forty Two") == "my order is 1042"
    assert normalise("at eleven oh five") == "at 11:05"


def test_a_reader_reads_whatever_slots_a_pack_declares(tmp_path: Path) -> None:
    minimal = Path(__file__).resolve().parent / "packs" / "minimal" / "business.yaml"
    (tmp_path / "business.yaml").write_text(minimal.read_text(encoding="utf-8") + """
slots:
  device:
    type: choice
    label: device
    values: {phone: [phone, mobile], laptop: [laptop, notebook]}
  ticket: {type: reference, label: ticket, cues: [ticket, case], digits: [5, 6]}
""", encoding="utf-8")  # fmt: skip
    business = load(tmp_path)
    reader = SlotReader(business)
    assert reader.read("my Mobile is broken, case 123456", NOW, business).values == {
        "device": "phone", "ticket": "123456"}  # fmt: skip
    assert reader.read("ticket 1234 for my notebook", NOW, business).values == {
        "device": "laptop"}  # fmt: skip
