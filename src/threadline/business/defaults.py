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
GENERAL_REPLIES: Final = ("not_understood", "needs_person", "handoff", "waiting", "welcome_back")

#: Replies each flow speaks: the intent's own, or the pack's of that name.
FLOW_REPLIES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "answer": ("text",),
    "handoff": (),
    "lookup": ("ask", "found", "found_public", "mismatch", "not_found"),
    "booking": ("ask_location", "ask_day", "offer_times", "none_free", "booked",
                "already_booked", "refused"),
    "hours": ("answer",),
    "visit": ("ask_location", "by_phone", "code_coming"),
})  # fmt: skip
