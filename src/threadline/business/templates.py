"""Reply templates: sandboxed Jinja with filters for days, times and lists.

A pack's replies are Jinja templates rendered in a sandbox (no attribute
access to Python internals, no file or network access). Whitespace is
collapsed after rendering, so a template may span lines in YAML. The filters
speak of the business's clock: ``day`` says "today", "tomorrow" or "on Sunday
9 March" against the turn's ``today``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: The name a template's variables give the turn's date.
TODAY: Final = "today"


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


def clock(value: Any) -> str:
    """A time of day as ``HH:MM``."""
    if isinstance(value, datetime | time):
        return f"{value:%H:%M}"
    text = str(value)
    return f"{datetime.fromisoformat(text):%H:%M}" if "T" in text else text[:5]


def listing(items: Iterable[Any], last: str = "or") -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    words = [str(i) for i in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {last} " + words[-1]


def _times(values: Iterable[Any], last: str = "or") -> str:
    return listing((clock(v) for v in values), last)


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


FILTERS: Final[Mapping[str, Callable[..., Any]]] = {
    "day": _day,
    "days_ago": _days_ago,
    "clock": clock,
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


class TemplateProblem(ValueError):
    """A template that does not compile; ``line`` is within the template."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class Template:
    """One compiled reply template."""

    __slots__ = ("_compiled", "source")

    def __init__(self, env: ImmutableSandboxedEnvironment, source: str) -> None:
        self.source = source
        try:
            self._compiled = env.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(exc.message or "bad template", exc.lineno) from None

    def render(self, variables: Mapping[str, Any]) -> str:
        """The text, with runs of whitespace collapsed to one space."""
        return " ".join(self._compiled.render(variables).split())
