"""Domain biasing for speech-to-text: what a business's callers are likely to say.

The prompt reads like the start of a call in the business's own words: the
first examples of each of the pack's intents that lead somewhere, and the
pack's own recognition prompt and phrases (its references, places,
postcodes). Whisper reads a prompt as the text that came before, so it spells
these the way the agent expects them ("order 5120", "Harbour Road").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from threadline.business import Business
from threadline.core.ports import SpeechHints

#: Example phrases taken from each intent for the prompt.
EXAMPLES_PER_INTENT: Final = 2


_QUESTION_STARTS: Final = frozenset(
    {"where", "when", "what", "which", "who", "why", "how", "can", "could", "is", "are", "has",
     "have", "do", "does", "will", "would"}
)  # fmt: skip


def _sentence(text: str, proper: Mapping[str, str]) -> str:
    """An example phrase as a written sentence: capitals, names, and its full stop or mark."""
    words = [proper.get(word.casefold(), word) for word in text.strip().split()]
    if not words:
        return ""
    words[0] = words[0][0].upper() + words[0][1:]
    sentence = " ".join(words)
    if sentence[-1] in ".?!":
        return sentence
    return sentence + ("?" if words[0].casefold() in _QUESTION_STARTS else ".")


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def slot_phrases(business: Business) -> tuple[str, ...]:
    """The values callers say: the pack's phrases, and its places' short names and cities."""
    return _unique([
        *business.pack.voice.phrases,
        *(loc.short_name for loc in business.locations),
        *(loc.city for loc in business.locations),
    ])  # fmt: skip


def domain_hints(business: Business, per_intent: int = EXAMPLES_PER_INTENT) -> SpeechHints:
    """A prompt and key phrases for recognising ``business``'s callers.

    Intents that only answer (a greeting, thanks) carry no words worth biasing towards.
    """
    values = slot_phrases(business)
    proper = {"i": "I", "i'm": "I'm", "i'd": "I'd", "i've": "I've", "i'll": "I'll"}
    proper.update((word.casefold(), word) for value in values for word in value.split())
    phrases = [
        _sentence(text, proper)
        for spec in business.pack.intents.values()
        if spec.does != "answer"
        for text in list(spec.examples)[:per_intent]
    ]
    parts = [f"Hello, {business.name}.", *phrases, *business.pack.voice.prompt]
    return SpeechHints(prompt=" ".join(p for p in parts if p), phrases=values)
