"""Domain biasing for speech-to-text: what a business's callers are likely to say.

The prompt reads like the start of a call in the business's own words: the
first examples of each of the bot's intents (DEMO.md's phrasings) and the
values its slots take (order numbers, stores and their cities, postcodes).
Whisper reads a prompt as the text that came before, so it spells these the
way the bot expects them ("order 1042", "Market Street").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from threadline.agents.examples import EXAMPLES
from threadline.business import Business
from threadline.core.ports import SpeechHints

#: Example phrases taken from each intent for the prompt.
EXAMPLES_PER_INTENT: Final = 2
#: Intents whose phrasings carry no words worth biasing towards.
_SKIPPED: Final = frozenset({"greeting", "thanks"})


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
    """The values callers say: order numbers, store names and streets, cities, postcodes."""
    short_names = [
        store.name.removeprefix(business.name.split()[0]).strip() for store in business.stores
    ]
    return _unique([
        *(order.number for order in business.orders),
        *short_names,
        *(store.city for store in business.stores),
        *(customer.postcode for customer in business.customers),
    ])  # fmt: skip


def domain_hints(
    business: Business,
    examples: Mapping[str, Iterable[str]] = EXAMPLES,
    per_intent: int = EXAMPLES_PER_INTENT,
) -> SpeechHints:
    """A prompt and key phrases for recognising ``business``'s callers."""
    values = slot_phrases(business)
    proper = {"i": "I", "i'm": "I'm", "i'd": "I'd", "i've": "I've", "i'll": "I'll"}
    proper.update((word.casefold(), word) for value in values for word in value.split())
    phrases = [
        _sentence(text, proper)
        for intent, texts in examples.items()
        if intent not in _SKIPPED
        for text in list(texts)[:per_intent]
    ]
    orders = [order.number for order in business.orders]
    stores = [
        f"the {store.name.removeprefix(business.name.split()[0]).strip()} store in {store.city}"
        for store in business.stores
    ]
    postcodes = _unique(customer.postcode for customer in business.customers)
    facts = [
        f"Order {', order '.join(orders)}." if orders else "",
        _sentence(f"{' and '.join(stores)}.", proper) if stores else "",
        f"My postcode is {', '.join(postcodes)}." if postcodes else "",
    ]
    prompt = " ".join(part for part in [f"Hello, {business.name}.", *phrases, *facts] if part)
    return SpeechHints(prompt=prompt, phrases=values)
