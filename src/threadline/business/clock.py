"""Times as customers read them: the locale's clock and a short name for the zone.

``4:56 PM PT`` in en-US, ``16:56 GMT`` in winter and ``16:56 BST`` in summer in
en-GB. The time is Babel's short format for the locale; the zone is the
shortest name the locale has for it: the generic one where there is one ("PT",
"ET", "CET": the same all year, so it cannot be wrong by an hour), else the
specific one ("GMT", "BST"), else the offset ("GMT+2", "GMT-3:30", "UTC+1" in fr).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_time, get_timezone_gmt, get_timezone_name

#: The locale of a pack that names none.
DEFAULT_LOCALE: Final = "en-US"

#: Babel puts narrow and ordinary no-break spaces in times ("4:56\u202fPM"); a reply has
#: plain ones, so it reads the same in every chat window, e-mail and speech engine.
_SPACES: Final = str.maketrans({"\u202f": " ", "\u00a0": " "})


@lru_cache(maxsize=64)
def babel_locale(tag: str) -> Locale:
    """The locale ``tag`` names (BCP 47 ``en-GB`` or CLDR ``en_GB``); ValueError if Babel
    does not know it."""
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        raise ValueError(
            f"unknown locale {tag!r} (use a language and country: en-US, en-GB, fr-CA)"
        ) from None


def locale_tag(tag: str) -> str:
    """``tag`` as the BCP 47 tag of a locale Babel knows: ``en_gb`` is ``en-GB``."""
    return str(babel_locale(tag)).replace("_", "-")


def time_of_day(moment: time | datetime, locale: str) -> str:
    """The wall time of ``moment`` on the locale's clock: ``4:56 PM``, ``16:56``."""
    wall = moment.time() if isinstance(moment, datetime) else moment.replace(tzinfo=None)
    return format_time(wall, "short", locale=babel_locale(locale)).translate(_SPACES)


def zone_name(moment: datetime, locale: str) -> str:
    """A short name of the zone of the aware ``moment``: ``PT``, ``GMT``, ``BST``."""
    where = babel_locale(locale)
    offset = get_timezone_gmt(moment, width="short", locale=where)  # Babel's "no name"
    for variant in ("generic", None):  # None: standard or daylight, as at ``moment``
        name = get_timezone_name(moment, width="short", zone_variant=variant, locale=where)
        if name != offset:
            return name.translate(_SPACES)
    return _offset(moment.utcoffset() or timedelta(0), where)


def _offset(offset: timedelta, where: Locale) -> str:
    """CLDR's short localized GMT format: ``GMT+2``, ``GMT-3:30``, ``GMT`` (``UTC+2`` in
    French). Babel's own (pattern ``O``) answers None."""
    minutes = round(offset.total_seconds() / 60)
    hours, rest = divmod(abs(minutes), 60)
    sign = "+" if minutes > 0 else "-"
    said = "" if minutes == 0 else f"{sign}{hours}:{rest:02d}" if rest else f"{sign}{hours}"
    return str(where.zone_formats["gmt"] % said).translate(_SPACES)
