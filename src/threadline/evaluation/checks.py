"""What a turn recorded, read from its events, and held against what the turn expects.

Pure functions over the events one customer turn recorded (``intent.detected``,
``action.requested``, ``handoff.requested``, ``approval.requested``,
``guardrail.triggered``, a fallback, and the ``message.sent`` reply). Each
unmet expectation is one failure line; the counts feed the suite's metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from threadline.evaluation.sandbox import Observed
from threadline.evaluation.suite import Text, ToolCall, TurnSpec, matches, shown

GUARDRAIL: Final = "guardrail.triggered"
#: Events saying the agent under evaluation could not take a turn and another took it.
FALLBACKS: Final = frozenset({"model.fell_back", "agent.fell_back"})


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call the turn made."""

    tool: str
    arguments: Mapping[str, Any]

    def __str__(self) -> str:
        return _call(self.tool, self.arguments)


@dataclass(frozen=True, slots=True)
class TurnResult:
    """One turn: what was said and done, and which expectations failed."""

    said: str
    reply: str | None
    latency_ms: float | None
    intent: str | None = None
    calls: tuple[Call, ...] = ()
    handoff: tuple[str, str] | None = None  # (queue, reason code)
    approvals: tuple[str, ...] = ()
    #: The queue of the first approval asked for.
    approval_queue: str | None = None
    guardrails: tuple[str, ...] = ()
    fallbacks: int = 0
    tools_expected: int = 0
    tools_matched: int = 0
    tools_unexpected: int = 0
    leaks: int = 0
    failures: tuple[str, ...] = field(default_factory=tuple)
    #: The queue the turn took the conversation to: its handoff's, or the queue of an
    #: approval the turn was allowed to ask instead (``handoff_or_approval``).
    went_to: str | None = None


def _call(tool: str, arguments: Mapping[str, Any]) -> str:
    shown_args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return f"{tool}({shown_args})"


def _same(expected: Any, actual: Any) -> bool:
    """Equal, or the same scalar written differently (5120 and "5120")."""
    if expected == actual:
        return True
    scalar = (str, int, float)
    return (
        isinstance(expected, scalar)
        and isinstance(actual, scalar)
        and (str(expected) == str(actual))
    )


def called_as(expected: ToolCall, call: Call) -> bool:
    """Whether ``call`` is the expected tool with (at least) the expected arguments."""
    return call.tool == expected.name and all(
        k in call.arguments and _same(v, call.arguments[k]) for k, v in expected.arguments.items()
    )


def read_turn(observed: Observed, said: str) -> TurnResult:
    """What the turn's events say it did (no expectation held against it yet)."""
    intent = None
    calls: list[Call] = []
    handoff = None
    approvals: list[str] = []
    approval_queue = None
    guardrails: list[str] = []
    fallbacks = 0
    for event in observed.events:
        payload = event.payload
        if event.type == "intent.detected" and intent is None:
            intent = str(payload["intent"])
        elif event.type == "action.requested":
            calls.append(Call(str(payload["tool"]), dict(payload.get("arguments") or {})))
        elif event.type == "handoff.requested" and handoff is None:
            handoff = (
                str(payload["queue"]),
                str(payload.get("reason_code", payload.get("reason"))),
            )
        elif event.type == "approval.requested":
            approvals.append(str(payload["tool"]))
            if approval_queue is None and payload.get("queue"):
                approval_queue = str(payload["queue"])
        elif event.type == GUARDRAIL:
            guardrails.append(str(payload.get("guardrail")))
        elif event.type in FALLBACKS:
            fallbacks += 1
    return TurnResult(said, observed.reply, observed.latency_ms, intent, tuple(calls), handoff,
                      tuple(approvals), approval_queue, tuple(guardrails), fallbacks,
                      went_to=handoff[0] if handoff else None)  # fmt: skip


def check_turn(
    spec: TurnSpec, observed: Observed, *, timeout: float, never: Sequence[Text] = ()
) -> TurnResult:
    """The turn as recorded, with every expectation of ``spec`` it fails; ``never`` are
    the scenario's own must-not-say patterns."""
    turn = read_turn(observed, spec.text)
    failures: list[str] = []
    if turn.reply is None:
        failures.append(f"no reply within {timeout:g} s")
    if spec.intent is not None and turn.intent not in spec.intent:
        failures.append(f"intent: expected {' or '.join(spec.intent)}, got {turn.intent}")
    expected, matched, unexpected = _tools(spec, turn.calls, failures)
    _handoff(spec, turn.handoff, failures)
    went_to = _handoff_or_approval(spec, turn, failures)
    if spec.approval is not None and spec.approval.tool not in turn.approvals:
        failures.append(f"approval: expected one for {spec.approval.tool}, "
                        f"got {', '.join(turn.approvals) or 'none'}")  # fmt: skip
    reply = turn.reply or ""
    for pattern in spec.reply_contains:
        if turn.reply is not None and not matches(reply, pattern):
            failures.append(f"reply: does not say {shown(pattern)}")
    leaks = 0
    for pattern in (*spec.must_not_say, *never):
        if matches(reply, pattern):
            leaks += 1
            failures.append(f"reply: says {shown(pattern)}, which it must not")
    return TurnResult(
        turn.said, turn.reply, turn.latency_ms, turn.intent, turn.calls, turn.handoff,
        turn.approvals, turn.approval_queue, turn.guardrails, turn.fallbacks, expected, matched,
        unexpected, leaks, tuple(failures), went_to,
    )  # fmt: skip


def _tools(spec: TurnSpec, calls: Sequence[Call], failures: list[str]) -> tuple[int, int, int]:
    """(expected, matched, unexpected) calls; a missing call, or any call when the turn
    must make none, is a failure. Unexpected are the calls of a turn that must make none,
    and the calls of a listed tool beyond those listed (again, or with other arguments);
    calls of tools the turn does not name (an agent's own look-ups) are its business."""
    if spec.no_tools:
        if calls:
            failures.append(f"tools: expected no call, got {', '.join(map(str, calls))}")
        return 0, 0, len(calls)
    if spec.tools is None:
        return 0, 0, 0
    left = list(calls)
    matched = 0
    for wanted in spec.tools:
        found = next((c for c in left if called_as(wanted, c)), None)
        if found is None:
            got = ", ".join(map(str, calls)) or "none"
            failures.append(f"tools: expected {_call(wanted.name, wanted.arguments)}, got {got}")
            continue
        left.remove(found)
        matched += 1
    named = {wanted.name for wanted in spec.tools}
    return len(spec.tools), matched, sum(call.tool in named for call in left)


def _handoff(spec: TurnSpec, handoff: tuple[str, str] | None, failures: list[str]) -> None:
    if spec.contained and handoff is not None:
        failures.append(f"handoff: none expected, got one to {handoff[0]} ({handoff[1]})")
    wanted = spec.handoff
    if wanted is None:
        return
    if handoff is None:
        to = f" to {wanted.queue}" if wanted.queue else ""
        failures.append(f"handoff: expected one{to}, got none")
        return
    queue, reason = handoff
    if wanted.queue is not None and queue != wanted.queue:
        failures.append(f"handoff: expected queue {wanted.queue}, got {queue}")
    if wanted.reason is not None and reason != wanted.reason:
        failures.append(f"handoff: expected reason {wanted.reason}, got {reason}")


def _handoff_or_approval(spec: TurnSpec, turn: TurnResult, failures: list[str]) -> str | None:
    """Where the turn took the conversation: a handoff's queue, or, where the turn may ask
    for an approval instead, the approval's queue; a failure when it did neither as
    expected."""
    wanted = spec.handoff_or_approval
    if wanted is None:
        return turn.went_to
    if turn.handoff is not None:
        queue, reason = turn.handoff
        if wanted.queue is not None and queue != wanted.queue:
            failures.append(f"handoff or approval: expected queue {wanted.queue}, got {queue}")
        elif wanted.reason is not None and reason != wanted.reason:
            failures.append(f"handoff or approval: expected reason {wanted.reason}, got {reason}")
        return queue
    if wanted.tool in turn.approvals:
        asked = turn.approval_queue
        if wanted.queue is not None and asked != wanted.queue:
            failures.append(f"handoff or approval: expected an approval in {wanted.queue},"
                            f" asked in {asked}")  # fmt: skip
        return asked
    to = f" to {wanted.queue}" if wanted.queue else ""
    failures.append(f"handoff or approval: expected a handoff{to} or an approval of"
                    f" {wanted.tool}, got neither")  # fmt: skip
    return None
