"""Reply templates: sandboxed Jinja with filters for days, times and lists.

A pack's replies are Jinja templates rendered in a sandbox (no attribute
access to Python internals, no file or network access). Whitespace is
collapsed after rendering, so a template may span lines in YAML. The filters
speak of the business's clock: ``day`` says "today", "tomorrow" or "on Sunday
9 March" against the turn's ``today``; ``clock`` and ``times`` say times in the
``locale`` variable's clock, with the zone of an aware datetime ("4:56 PM PT",
"16:56 BST"; ``clock(zone=false)`` leaves it out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from types import CodeType
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from threadline.business.clock import DEFAULT_LOCALE, time_of_day, zone_name

#: The name a template's variables give the turn's date.
TODAY: Final = "today"
#: The name a template's variables give the locale its times are said in (``en-US``).
LOCALE: Final = "locale"


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def day_phrase(day: date, today: date) -> str:
    """ "today", "tomorrow", or "on Sunday 9 March"."""
    if day == today:
        return "today"
    if (day - today).days == 1:
        return "tomorrow"
    return f"on {day:%A} {day.day} {day:%B}"


@pass_context
def _day(context: Context, value: Any) -> str:
    return day_phrase(_as_date(value), _as_date(context[TODAY]))


@pass_context
def _days_ago(context: Context, value: Any) -> int:
    return (_as_date(context[TODAY]) - _as_date(value)).days


def _moment(value: Any) -> time | datetime | str:
    """A time to say: a datetime or time as it is; a string as the wall time it writes
    (``09:30``, ``2025-03-05T11:30:00-08:00``), or unchanged when it is not a time."""
    if isinstance(value, datetime | time):
        return value
    text = str(value)
    try:
        if "T" in text:
            return datetime.fromisoformat(text).replace(tzinfo=None)
        return time.fromisoformat(text)
    except ValueError:
        return text


def _aware(moment: time | datetime | str) -> datetime | None:
    return moment if isinstance(moment, datetime) and moment.tzinfo is not None else None


def clock(value: Any, locale: str = DEFAULT_LOCALE, zone: bool = True) -> str:
    """A time of day on ``locale``'s clock, and its zone when ``value`` is an aware
    datetime: ``4:56 PM PT`` (en-US), ``16:56 GMT`` (en-GB); ``4:56 PM`` when naive."""
    moment = _moment(value)
    if isinstance(moment, str):
        return moment
    said = time_of_day(moment, locale)
    aware = _aware(moment)
    return f"{said} {zone_name(aware, locale)}" if zone and aware is not None else said


def listing(items: Iterable[Any], last: str = "or") -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    words = [str(i) for i in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {last} " + words[-1]


def times(
    values: Iterable[Any], last: str = "or", locale: str = DEFAULT_LOCALE, zone: bool = True
) -> str:
    """Times as a list, the zone said once at the end when they all share it:
    ``9:00 AM, 9:30 AM or 10:00 AM PT``; else each time with its own."""
    moments = [_moment(v) for v in values]
    aware = [_aware(m) for m in moments]
    if zone and aware and None not in aware:
        zones = {zone_name(a, locale) for a in aware if a is not None}
        if len(zones) == 1:
            return f"{listing((clock(m, locale, zone=False) for m in moments), last)} {zones.pop()}"
    return listing((clock(m, locale, zone) for m in moments), last)


def _locale(context: Context) -> str:
    return str(context.get(LOCALE) or DEFAULT_LOCALE)


@pass_context
def _clock(context: Context, value: Any, zone: bool = True) -> str:
    return clock(value, _locale(context), zone)


@pass_context
def _times(context: Context, values: Iterable[Any], last: str = "or", zone: bool = True) -> str:
    return times(values, last, _locale(context), zone)


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


FILTERS: Final[Mapping[str, Callable[..., Any]]] = {
    "day": _day,
    "days_ago": _days_ago,
    "clock": _clock,
    "times": _times,
    "listing": listing,
    "first_upper": _first_upper,
}


def environment() -> ImmutableSandboxedEnvironment:
    """The sandbox every reply is rendered in."""
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
    env.filters.update(FILTERS)
    return env


#: The sandbox that compiles every template: all of them share its settings.
_COMPILER: Final = environment()


@functools.lru_cache(maxsize=4096)
def _code(source: str) -> CodeType:
    """``source`` compiled, once per process: every load of a pack (a start, a reload, its
    check) compiles the same replies, and compiling is most of what loading costs."""
    return _COMPILER.compile(source)


@functools.lru_cache(maxsize=4096)
def free_variables(source: str) -> frozenset[str]:
    """The variables a template (one that compiles) reads without setting them itself."""
    tree = _COMPILER.parse(source)
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return frozenset(meta.find_undeclared_variables(tree) - assigned)


class TemplateProblem(ValueError):
    """A template that does not compile; ``line`` is within the template."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class Template:
    """One compiled reply template."""

    __slots__ = ("_compiled", "source")

    def __init__(
        self,
        env: ImmutableSandboxedEnvironment,
        source: str,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """``defaults``: variables the template sees unless a render gives them."""
        self.source = source
        try:
            code = _code(source)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(exc.message or "bad template", exc.lineno) from None
        self._compiled = env.template_class.from_code(
            env, code, env.make_globals(dict(defaults or {})), None
        )

    def render(self, variables: Mapping[str, Any]) -> str:
        """The text, with runs of whitespace collapsed to one space."""
        return " ".join(self._compiled.render(variables).split())
