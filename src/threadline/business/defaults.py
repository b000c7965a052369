"""The replies every pack has unless it says otherwise, and which replies each flow needs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml


def _load() -> Mapping[str, Any]:
    text = (Path(__file__).parent / "defaults.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return MappingProxyType(loaded)


#: The product's default replies (``defaults.yaml``), under the pack's own.
DEFAULT_REPLIES: Final = _load()

#: Replies the agent itself speaks, whatever the intent.
GENERAL_REPLIES: Final = (
    "not_understood", "needs_person", "handoff", "waiting", "welcome_back", "checkin_code",
    "code_sent", "code_wrong", "code_expired", "code_message", "code_unsent", "verified",
    "proof_unavailable", "approval_waiting", "approval_done", "approval_failed",
    "approval_denied", "guardrail_refused",
)  # fmt: skip

#: What every reply template sees (``locale``: the one its times are said in).
COMMON_VARIABLES: Final = frozenset({"voice", "business", "today", "slots", "locations",
                                     "customer", "locale"})  # fmt: skip

#: What each reply sees beyond the common variables, by the reply's name.
REPLY_VARIABLES: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    name: frozenset(extra) for name, extra in {
        "not_understood": (), "needs_person": (), "text": (), "payment_details": (),
        "handoff": ("reason_code", "queue", "queue_name"),
        "waiting": ("queue", "queue_name", "verified"),
        "welcome_back": ("about", "earlier_on", "needs_proof", "proof_label"),
        "checkin_code": ("location", "until"),
        "code_sent": ("to", "via", "again", "length", "minutes"),
        "code_wrong": ("tries_left", "length", "minutes"),
        "code_expired": ("length", "minutes"),
        "code_message": ("code", "minutes"),
        "code_unsent": ("reason",),
        "verified": (),
        "proof_unavailable": ("label", "value", "record", "proof_label", "needed"),
        "locked": ("label", "value", "record", "proof_label"),
        "locked_out": ("label", "value", "record", "proof_label"),
        "verify_ask": (), "already_verified": (),
        "ask": ("label",), "found": ("label", "value", "record"),
        "found_public": ("label", "value", "record", "proof_label"),
        "mismatch": ("label", "value", "record", "proof_label"),
        "not_found": ("label", "value", "code"), "about": ("value",),
        "ask_location": ("locations", "location_label"), "ask_day": ("location",),
        "offer_times": ("location", "day", "free"), "none_free": ("location", "day", "closed"),
        "booked": ("appointment", "location", "start", "service_name"),
        "already_booked": ("location", "start"),
        "refused": ("error", "suggestions", "location"),
        "answer": ("answers",), "by_phone": ("location",), "code_coming": ("location",),
        "approval_waiting": ("what",), "approval_done": ("what", "result"),
        "approval_failed": ("what", "error"), "approval_denied": ("what", "reason"),
        "guardrail_refused": (),
    }.items()
})  # fmt: skip

#: Replies each flow speaks: the intent's own, or the pack's of that name.
FLOW_REPLIES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "answer": ("text",),
    "handoff": (),
    "lookup": ("ask", "found", "found_public", "mismatch", "locked", "locked_out", "not_found"),
    "booking": ("ask_location", "ask_day", "offer_times", "none_free", "booked",
                "already_booked", "refused"),
    "hours": ("answer",),
    "visit": ("ask_location", "by_phone", "code_coming"),
    "verify": ("verify_ask", "already_verified"),
})  # fmt: skip
