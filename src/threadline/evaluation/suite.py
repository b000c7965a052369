"""Evaluation suites: scripted conversations, and what a good agent does in each.

A suite is YAML: one file, or a folder whose ``*.yaml`` files are read in name
order. A file holds a ``now`` (optional) and its ``scenarios``::

    now: 2025-03-04T10:00:00        # the clock of every turn; no offset: the pack's zone
    scenarios:
      - id: order-verified          # unique in the suite: [a-z0-9][a-z0-9._-]*
        description: ...            # what it checks, for the reader (optional)
        tags: [orders]              # chosen with --tags
        channel: chat               # chat (the default) or voice (the text path of a call)
        customer: cus-ada           # chat only: signed in as this customer (default: a visitor)
        caller: "+12025550199"      # voice only: the caller id (default: withheld)
        now: ...                    # the scenario's own clock, over the file's
        outcome: contained          # or escalated: handed to a person by its end
        queue: billing              # escalated only: the queue (default: a turn's handoff queue)
        must_not_say: [Model 7]     # no reply of the scenario may say these
        tool_results:               # a tool's answer, scripted (its result schema still holds)
          lookup_order: {order: "5120", customer_id: cus-ada, status: delayed}
        tool_failures: {free_slots: timeout}    # a tool that fails, with its failure code
        turns:
          - say: where is order 5120?   # (voice: press: "1" keys digits in instead)
            intent: order_status        # or a list of acceptable intents
            tools:                      # calls the turn makes: a name, or name and arguments
              - {name: lookup_order, arguments: {order_number: "5120"}}   # (a subset)
                                        # (calls of tools not named here are not judged)
            no_tools: true              # instead of tools: no call at all
            handoff: {queue: orders, reason: customer_request}   # or `handoff: true`
            contained: true             # instead of handoff: no handoff this turn
            approval: {tool: issue_refund}                       # a call waits for a person
            handoff_or_approval: {queue: billing, tool: issue_refund}  # either goes to billing
            reply_contains: [delayed]
            must_not_say: ["Model 7", {regex: "\\b90210\\b"}]

A text is a case-insensitive substring; ``{regex: ...}`` is a Python regular
expression, searched as written (add ``(?i)`` for case). ``handoff_or_approval`` is for
a turn a good agent may take either way: it hands the conversation to the queue, or asks
a person of the queue to approve a call of the tool (a model-backed agent refunds
through an approval where the embedded agent hands the refund to a person); either way
the conversation went to that queue, as an ``escalated`` outcome asks. A scenario succeeds
when every expectation of every turn is met and its outcome is the one
expected. Anything the format does not know is an error, reported with its
file and line (:class:`SuiteError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from threadline.business.loader import Problem
from threadline.core.errors import ConfigurationError

#: Keys whose values are texts: what a customer says or keys in, and what a reply must or
#: must not say, read as written (``5120`` is the text "5120", ``0123`` stays "0123").
_WRITTEN: Final = frozenset({"say", "press", "reply_contains", "must_not_say", "regex"})
_ID: Final = r"^[a-z0-9][a-z0-9._-]*$"

WherePath = tuple[str | int, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Regex(_Frozen):
    """A regular expression a reply is searched with."""

    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


Text = str | Regex


def matches(text: str, pattern: Text) -> bool:
    """Whether ``text`` says ``pattern``: a substring (any case) or a regex found in it."""
    if isinstance(pattern, Regex):
        return re.search(pattern.regex, text) is not None
    return pattern.casefold() in text.casefold()


def shown(pattern: Text) -> str:
    """``pattern`` as a failure names it."""
    return f"/{pattern.regex}/" if isinstance(pattern, Regex) else repr(pattern)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


class ToolCall(_Frozen):
    """A call the turn makes: the tool, and arguments it passes (others may be passed too)."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class HandoffExpected(_Frozen):
    """A handoff the turn requests: to this queue, for this reason (either left open)."""

    queue: str | None = None
    reason: str | None = None


class ApprovalExpected(_Frozen):
    """A call of ``tool`` the turn asks a person to approve."""

    tool: str = Field(min_length=1)


class HandoffOrApproval(_Frozen):
    """A handoff to ``queue`` (for ``reason``, if named), or a call of ``tool`` the turn
    asks a person of ``queue`` to approve (the approval's queue left open when None)."""

    tool: str = Field(min_length=1)
    queue: str | None = None
    reason: str | None = None


class TurnSpec(_Frozen):
    """One customer turn and what the agent's answer to it must (and must not) do."""

    say: str | None = Field(None, min_length=1)
    press: str | None = Field(None, pattern=r"^[0-9*#]+$")
    intent: tuple[str, ...] | None = None
    tools: tuple[ToolCall, ...] | None = None
    no_tools: bool = False
    handoff: HandoffExpected | None = None
    contained: bool = False
    approval: ApprovalExpected | None = None
    handoff_or_approval: HandoffOrApproval | None = None
    reply_contains: tuple[Text, ...] = ()
    must_not_say: tuple[Text, ...] = ()

    @field_validator("intent", "reply_contains", "must_not_say", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("tools", mode="before")
    @classmethod
    def _named_calls(cls, value: Any) -> Any:
        value = _listed(value)
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("handoff", mode="before")
    @classmethod
    def _any_handoff(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            raise ValueError("write `contained: true` for a turn that must not hand off")
        return value

    @field_validator("approval", mode="before")
    @classmethod
    def _approval_of(cls, value: Any) -> Any:
        return {"tool": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> TurnSpec:
        if (self.say is None) == (self.press is None):
            raise ValueError("a turn has one of `say` or `press`")
        if self.no_tools and self.tools is not None:
            raise ValueError("`tools` and `no_tools` contradict each other")
        if self.contained and self.handoff is not None:
            raise ValueError("`handoff` and `contained` contradict each other")
        if self.handoff_or_approval is not None and (
            self.contained or self.handoff is not None or self.approval is not None
        ):
            raise ValueError("`handoff_or_approval` is instead of `handoff`, `approval` and"
                             " `contained`")  # fmt: skip
        return self

    @property
    def goes_to(self) -> str | None:
        """The queue this turn hands the conversation to, if it names one."""
        if self.handoff is not None:
            return self.handoff.queue
        return self.handoff_or_approval.queue if self.handoff_or_approval else None

    @property
    def text(self) -> str:
        return self.say if self.say is not None else str(self.press)


class Scenario(_Frozen):
    """A scripted conversation with an agent, on one channel."""

    id: str = Field(pattern=_ID)
    description: str | None = None
    tags: tuple[str, ...] = ()
    channel: Literal["chat", "voice"] = "chat"
    customer: str | None = Field(None, min_length=1)
    caller: str | None = Field(None, min_length=1)
    now: datetime | None = None
    outcome: Literal["contained", "escalated"]
    queue: str | None = None
    must_not_say: tuple[Text, ...] = ()
    #: What the pack's tools answer in this scenario instead of its systems (checked
    #: against the tool's result schema), and the tools that fail, with their failure code.
    tool_results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tool_failures: dict[str, str] = Field(default_factory=dict)
    turns: tuple[TurnSpec, ...] = Field(min_length=1)

    @field_validator("tags", "must_not_say", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return _listed(value)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.customer is not None and self.channel != "chat":
            raise ValueError("`customer` (a signed-in chat) is for chat; a call has `caller`")
        if self.caller is not None and self.channel != "voice":
            raise ValueError("`caller` is for voice; a signed-in chat has `customer`")
        if self.channel != "voice" and any(t.press is not None for t in self.turns):
            raise ValueError("only a call keys digits in (`press`); on chat, `say` them")
        handoffs = [t for t in self.turns if t.handoff or t.handoff_or_approval]
        if self.outcome == "contained" and handoffs:
            raise ValueError("a turn expects a handoff but the outcome is `contained`")
        if self.queue is not None and self.outcome != "escalated":
            raise ValueError("`queue` names where an `escalated` scenario goes")
        both = sorted(set(self.tool_results) & set(self.tool_failures))
        if both:
            raise ValueError(f"{', '.join(both)}: in both `tool_results` and `tool_failures`")
        return self

    @property
    def scripted_tools(self) -> frozenset[str]:
        """The tools whose answers the scenario scripts."""
        return frozenset(self.tool_results) | frozenset(self.tool_failures)

    @property
    def expected_queue(self) -> str | None:
        """Where the conversation must be handed: the scenario's queue, else the first
        handoff a turn names a queue for (None: any queue)."""
        if self.queue is not None:
            return self.queue
        return next((t.goes_to for t in self.turns if t.goes_to), None)


class _File(_Frozen):
    description: str | None = None
    now: datetime | None = None
    scenarios: tuple[Scenario, ...] = Field(min_length=1)


class SuiteError(ConfigurationError):
    """A suite that cannot be run; ``problems`` lists each with its file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid suite"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


@dataclass(frozen=True, slots=True)
class Suite:
    """The scenarios of a suite, each with its clock (``now``) set."""

    name: str
    scenarios: tuple[Scenario, ...]

    def tagged(self, tags: Iterable[str]) -> Suite:
        """The scenarios carrying any of ``tags`` (all of them when ``tags`` is empty)."""
        wanted = set(tags)
        if not wanted:
            return self
        return Suite(self.name, tuple(s for s in self.scenarios if wanted & set(s.tags)))


def dotted(path: WherePath) -> str:
    """``("scenarios", 3, "turns", 0)`` as ``scenarios[3].turns[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Marked:
    """YAML read with the line of every value, keys as written, duplicates refused."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[WherePath, int] = {}
        self._scalars = yaml.SafeLoader("")

    def read(self, text: str) -> Any:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            raise SuiteError([Problem(self.name, line, "", f"not valid YAML: {exc.problem}")]
                             ) from None  # fmt: skip
        if node is None:
            raise SuiteError([Problem(self.name, 1, "", "is empty")])
        return self._node(node, ())

    def _node(self, node: yaml.Node, path: WherePath) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SuiteError([Problem(self.name, line, dotted(path),
                                              "a key must be plain text")])  # fmt: skip
                key = str(key_node.value)
                if key in out:
                    raise SuiteError([Problem(self.name, line, dotted((*path, key)),
                                              "is given twice")])  # fmt: skip
                out[key] = self._node(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._node(item, (*path, i)) for i, item in enumerate(node.value)]
        under = next((p for p in reversed(path) if isinstance(p, str)), None)
        if under in _WRITTEN and isinstance(node, yaml.ScalarNode):
            return str(node.value)
        return self._scalars.construct_object(node)

    def problem(self, path: WherePath, message: str) -> Problem:
        known: WherePath = ()
        for part in path:
            if (*known, part) in self.lines:
                known = (*known, part)
        return Problem(self.name, self.lines.get(known, 0), dotted(path), message)


def _written(data: Any, loc: tuple[Any, ...], missing: bool) -> WherePath:
    """``loc`` as the keys the author wrote: pydantic's names of union members left out,
    a missing key (named last) kept."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        keyed = isinstance(node, dict) and part in node
        if keyed or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        elif not (missing and index == len(loc) - 1):
            continue
        path.append(part)
    return tuple(path)


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "is not a known key"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def _read_file(path: Path, name: str) -> tuple[_File, _Marked]:
    marked = _Marked(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SuiteError([Problem(name, 0, "", f"cannot read: {reason}")]) from None
    data = marked.read(text)
    if not isinstance(data, dict):
        raise SuiteError([Problem(name, 1, "", "must be a mapping with `scenarios`")])
    try:
        return _File.model_validate(data), marked
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        locations = [tuple(e["loc"]) for e in errors]
        problems = []
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and any(
                len(other) > len(loc) and other[: len(loc)] == loc for other in locations
            ):
                continue  # a list left empty by its own bad items: those are the problems
            where = _written(data, loc, error["type"] == "missing")
            problems.append(marked.problem(where, _message(error)))
        raise SuiteError(problems) from None


def suite_files(path: Path) -> list[Path]:
    """The files of the suite at ``path``: the file, or a folder's ``*.yaml`` by name."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"})
        if not files:
            raise SuiteError([Problem(str(path), 0, "", "holds no .yaml file")])
        return files
    if not path.exists():
        raise SuiteError([Problem(str(path), 0, "", "no such file or folder")])
    return [path]


def load_suite(path: Path) -> Suite:
    """The suite at ``path``; SuiteError with every problem of the first bad file."""
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    problems: list[Problem] = []
    for file in suite_files(path):
        name = str(file)
        read, marked = _read_file(file, name)
        for index, scenario in enumerate(read.scenarios):
            where: WherePath = ("scenarios", index)
            if scenario.id in seen:
                also = f"{scenario.id!r} is also in {seen[scenario.id]}"
                problems.append(marked.problem((*where, "id"), also))
                continue
            seen[scenario.id] = name
            now = scenario.now or read.now
            if now is None:
                problems.append(marked.problem(where, "has no `now`: set it here or on the file"))
                continue
            scenarios.append(scenario.model_copy(update={"now": now}))
    if problems:
        raise SuiteError(problems)
    return Suite(path.stem if path.is_file() else path.name, tuple(scenarios))
