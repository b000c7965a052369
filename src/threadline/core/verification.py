"""How sure we are who a customer is: levels of proof, and who is nobody yet.

A proof has a strength, not a yes or no. The levels, weakest first:

* ``claimed``: the customer says so, or the channel hints it (caller id).
* ``knowledge``: they answered what only the customer should know (a postcode).
* ``possession``: they read back a one-time code sent to a phone or email on file.
* ``idp``: they signed in with the business's identity provider.

A business pack says which level each kind of data needs, and may grant a
proof method another level than its default (an ID token of a weak provider
counting as ``possession``, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

Level = Literal["claimed", "knowledge", "possession", "idp"]
#: The levels, weakest first.
LEVELS: Final[tuple[Level, ...]] = ("claimed", "knowledge", "possession", "idp")
_RANK: Final[Mapping[str, int]] = {name: rank for rank, name in enumerate(LEVELS, start=1)}

#: What each proof method counts as unless the business says otherwise. A knowledge
#: slot (the postcode) counts as ``knowledge`` whatever its name.
DEFAULT_METHOD_LEVELS: Final[Mapping[str, Level]] = {
    "caller_id": "claimed",
    "typed": "claimed",
    "claimed": "claimed",
    "knowledge": "knowledge",
    "agent": "knowledge",
    "otp": "possession",
    "login": "idp",
    "oidc": "idp",
}

#: Customer ids that stand for nobody yet: an unrecognised caller, an anonymous chat visitor.
ANONYMOUS_PREFIXES: Final = ("caller-", "visitor-")


def default_level(method: str, verified: bool) -> Level:
    """The level a proof by ``method`` has unless the business says otherwise."""
    if not verified:
        return "claimed"
    level = DEFAULT_METHOD_LEVELS.get(method, "knowledge")
    return "knowledge" if level == "claimed" else level  # a verified link proves something


def rank(level: str | None) -> int:
    """0 for no proof; 1 (claimed) to 4 (idp) otherwise."""
    return _RANK.get(level or "", 0)


def at_least(level: str | None, needed: str | None) -> bool:
    """Whether ``level`` satisfies ``needed`` (no requirement is always satisfied)."""
    return needed is None or rank(level) >= rank(needed)


def anonymous(customer_id: str | None) -> bool:
    """Whether ``customer_id`` stands for nobody known yet."""
    return customer_id is None or customer_id.startswith(ANONYMOUS_PREFIXES)
