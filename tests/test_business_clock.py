"""Times in replies: the locale's 12- or 24-hour clock, and the zone's short name.

The ``clock`` and ``times`` filters say an aware datetime on the clock of the
template's ``locale`` with a short name of its zone ("4:56 PM PT", "16:56 BST");
a naive one, a ``time`` or a string keeps its wall time and says no zone.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from threadline.business import clock as clock_module
from threadline.business.clock import locale_tag, time_of_day
from threadline.business.templates import Template, clock, environment, times

LOS_ANGELES = ZoneInfo("America/Los_Angeles")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
WINTER = date(2026, 1, 15)
SUMMER = date(2026, 7, 15)


def at(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), zone)


def render(source: str, **variables: Any) -> str:
    return Template(environment(), source).render({"today": WINTER, **variables})


# -- one time --------------------------------------------------------------------------------


def test_en_us_says_a_12_hour_clock_and_the_pacific_zone() -> None:
    assert clock(at(WINTER, 16, 56, LOS_ANGELES), "en-US") == "4:56 PM PT"


def test_en_us_says_the_eastern_zone_for_new_york() -> None:
    assert clock(at(WINTER, 9, 5, NEW_YORK), "en-US") == "9:05 AM ET"


def test_a_us_zone_is_named_the_same_in_summer_time() -> None:
    assert clock(at(SUMMER, 16, 56, LOS_ANGELES), "en-US") == "4:56 PM PT"


def test_en_gb_says_a_24_hour_clock_and_gmt_in_winter() -> None:
    assert clock(at(WINTER, 16, 56, LONDON), "en-GB") == "16:56 GMT"


def test_en_gb_says_bst_in_summer() -> None:
    assert clock(at(SUMMER, 16, 56, LONDON), "en-GB") == "16:56 BST"


@pytest.mark.parametrize(
    ("moment", "locale", "said"),
    [
        (at(WINTER, 9, 0, ZoneInfo("Europe/Paris")), "en-US", "9:00 AM GMT+1"),
        (at(WINTER, 9, 0, LONDON), "en-US", "9:00 AM GMT"),
        (at(SUMMER, 9, 0, LONDON), "en-US", "9:00 AM GMT+1"),
        (at(WINTER, 9, 0, ZoneInfo("Asia/Kolkata")), "en-GB", "09:00 GMT+5:30"),
        (at(WINTER, 9, 0, LOS_ANGELES), "fr-FR", "09:00 UTC-8"),
    ],
)
def test_a_zone_the_locale_has_no_name_for_is_said_as_its_offset(
    moment: datetime, locale: str, said: str
) -> None:
    assert clock(moment, locale) == said


def test_a_narrow_no_break_space_becomes_a_plain_space() -> None:
    said = clock(at(WINTER, 16, 56, LOS_ANGELES), "en-US")
    assert "\u202f" not in said and said.split(" ") == ["4:56", "PM", "PT"]


def test_a_no_break_space_from_babel_becomes_a_plain_space(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock_module, "format_time", lambda *_, **__: "16\u00a0h\u202f56")
    assert time_of_day(time(16, 56), "fr-CA") == "16 h 56"


@pytest.mark.parametrize(
    ("value", "locale", "said"),
    [
        ("09:30", "en-US", "9:30 AM"),
        ("09:30", "en-GB", "09:30"),
        (time(16, 5), "en-US", "4:05 PM"),
        (datetime(2026, 1, 15, 16, 5), "en-GB", "16:05"),
        ("2025-03-05T11:30:00-08:00", "en-US", "11:30 AM"),  # a string: its wall time
        ("noon", "en-US", "noon"),  # not a time: as written
    ],
)
def test_a_naive_time_or_a_string_says_no_zone(value: object, locale: str, said: str) -> None:
    assert clock(value, locale) == said


def test_the_zone_can_be_left_out() -> None:
    assert clock(at(WINTER, 16, 56, LOS_ANGELES), "en-US", zone=False) == "4:56 PM"


# -- lists -----------------------------------------------------------------------------------


def test_times_sharing_a_zone_say_it_once_at_the_end() -> None:
    starts = [at(WINTER, 9, 0, LOS_ANGELES), at(WINTER, 9, 30, LOS_ANGELES),
              at(WINTER, 13, 0, LOS_ANGELES)]  # fmt: skip
    assert times(starts, "or", "en-US") == "9:00 AM, 9:30 AM or 1:00 PM PT"
    assert times(starts, "and", "en-GB") == "09:00, 09:30 and 13:00 Pacific Time"


def test_times_in_different_zones_each_say_their_own() -> None:
    starts = [at(WINTER, 9, 0, LOS_ANGELES), at(WINTER, 9, 0, NEW_YORK)]
    assert times(starts, "or", "en-US") == "9:00 AM PT or 9:00 AM ET"


def test_naive_times_in_a_list_say_no_zone() -> None:
    starts = ["09:00", datetime(2025, 3, 4, 9, 30), time(10, 0)]
    assert times(starts, "or", "en-GB") == "09:00, 09:30 or 10:00"


# -- in templates ----------------------------------------------------------------------------


def test_the_filters_read_the_templates_locale() -> None:
    until, free = (
        at(SUMMER, 16, 56, LONDON),
        [at(SUMMER, 10, 0, LONDON), at(SUMMER, 10, 30, LONDON)],
    )
    source = "until {{ until|clock }}; free {{ free|times }}"
    assert render(source, until=until, free=free, locale="en-GB") == (
        "until 16:56 BST; free 10:00 or 10:30 BST")  # fmt: skip
    assert render(source, until=until, free=free, locale="en_GB") == (
        "until 16:56 BST; free 10:00 or 10:30 BST")  # fmt: skip


def test_without_a_locale_the_filters_say_us_english() -> None:
    assert render("{{ t|clock }}", t=at(WINTER, 16, 56, LOS_ANGELES)) == "4:56 PM PT"


def test_a_template_can_leave_the_zone_out() -> None:
    free = [at(WINTER, 10, 0, LOS_ANGELES), at(WINTER, 10, 30, LOS_ANGELES)]
    assert render("{{ t|clock(zone=false) }}; {{ free|times('and', zone=false) }}",
                  t=free[0], free=free) == "10:00 AM; 10:00 AM and 10:30 AM"  # fmt: skip


# -- locales ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "kept"), [("en_GB", "en-GB"), ("en-us", "en-US"),
                                               ("fr_CA", "fr-CA"), ("en", "en")])  # fmt: skip
def test_a_locale_is_kept_as_its_bcp_47_tag(written: str, kept: str) -> None:
    assert locale_tag(written) == kept


@pytest.mark.parametrize("written", ["xx-YY", "en-XX", "english", ""])
def test_an_unknown_locale_is_refused_with_examples(written: str) -> None:
    with pytest.raises(ValueError, match=r"unknown locale .*\(use a language and country: en-US"):
        locale_tag(written)
