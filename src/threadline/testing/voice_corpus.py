"""The utterances a voice accuracy run speaks: a business pack's own evaluation set.

A pack may carry ``evaluation/voice.yaml``: what its callers say, each with the
intent the agent should find and the key words the transcript must carry
(references as digits, place names). Entries without an intent are slot turns
(a postcode on its own), checked for their key words only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

#: espeak-ng voices an accuracy set is spoken in (an American, a British and a female voice).
VOICES: Final = ("en-us", "en-gb", "en-us+f3")
#: Where a pack keeps its voice evaluation set.
CORPUS_FILE: Final = Path("evaluation") / "voice.yaml"


@dataclass(frozen=True, slots=True)
class DemoUtterance:
    """What the caller says, the intent it carries, and the words the transcript needs."""

    text: str
    intent: str | None
    keywords: tuple[str, ...] = ()


def load_corpus(pack: Path) -> tuple[DemoUtterance, ...]:
    """The voice evaluation set of the pack at ``pack``."""
    data = yaml.safe_load((pack / CORPUS_FILE).read_text(encoding="utf-8"))
    return tuple(
        DemoUtterance(str(u["text"]), u.get("intent"), tuple(str(k) for k in u.get("keywords", ())))
        for u in data["utterances"]
    )
