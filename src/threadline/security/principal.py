"""Who is calling: scopes, the kinds of principal they make, and their bindings.

A token holds one kind of principal, never a mix, so a token carries no more
power than the job it was made for:

========================  ===============================  =======================
scope                     kind                             binding claims
========================  ===============================  =======================
``customer``              a customer's session             ``customer`` (required),
                                                           ``conversation`` (optional)
``adapter:<channel>``     a channel adapter (one or more   none
                          of chat, voice, in_person)
``agent``                 a human agent                    ``queues`` (list, may be empty)
``supervisor``            a supervisor of every queue      none
``admin``                 an administrator                 none
``associate``             a store associate                ``store`` (required)
``kiosk``                 a store's check-in kiosk         ``store`` (required)
========================  ===============================  =======================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

#: The kinds of principal; every one but ``bot`` (the in-process automated agent, see
#: :func:`threadline.security.authz.automated_agent`) is the kind of a token.
Kind = Literal["customer", "adapter", "agent", "supervisor", "admin", "associate", "kiosk", "bot"]

CUSTOMER: Final = "customer"
AGENT: Final = "agent"
SUPERVISOR: Final = "supervisor"
ADMIN: Final = "admin"
ASSOCIATE: Final = "associate"
KIOSK: Final = "kiosk"
ADAPTER_CHANNELS: Final = ("chat", "voice", "in_person")
#: adapter scope → the channel it may write
ADAPTER_SCOPES: Final = {f"adapter:{channel}": channel for channel in ADAPTER_CHANNELS}
SCOPES: Final = frozenset({CUSTOMER, AGENT, SUPERVISOR, ADMIN, ASSOCIATE, KIOSK, *ADAPTER_SCOPES})
KINDS: Final[tuple[Kind, ...]] = (
    "customer", "adapter", "agent", "supervisor", "admin", "associate", "kiosk",
)  # fmt: skip

#: binding claim → whether each kind requires it (True), allows it (False), or neither (absent)
_BINDINGS: Final[dict[Kind, dict[str, bool]]] = {
    "customer": {"customer": True, "conversation": False},
    "adapter": {},
    "agent": {"queues": True},
    "supervisor": {},
    "admin": {},
    "associate": {"store": True},
    "kiosk": {"store": True},
}
BINDING_CLAIMS: Final = frozenset({"customer", "conversation", "queues", "store"})
MAX_QUEUES: Final = 100
_IDENTIFIER: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")


class BadClaims(ValueError):
    """Scopes or binding claims that do not make a valid principal.

    Issuing turns this into a ValidationError, verifying into InvalidClaims.
    """


def identifier(value: object, name: str) -> str:
    """``value`` if it is a non-empty, printable, whitespace-free string of at most 200."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise BadClaims(f"{name} must be 1-200 printable characters without spaces")
    return value


def parse_scopes(scope: str | Iterable[str]) -> frozenset[str]:
    """The set of scopes in a space-separated string (or an iterable of them)."""
    if isinstance(scope, str):
        items = scope.split(" ")
    else:
        items = [identifier(part, "a scope") for part in scope]
    scopes = frozenset(s for s in items if s)
    if not scopes:
        raise BadClaims("no scope")
    unknown = sorted(scopes - SCOPES)
    if unknown:
        raise BadClaims(f"unknown scope {unknown[0]!r}; known: {', '.join(sorted(SCOPES))}")
    return scopes


def kind_of(scopes: frozenset[str]) -> Kind:
    """The one kind of principal that ``scopes`` make; mixing kinds is refused."""
    if scopes <= ADAPTER_SCOPES.keys():
        return "adapter"
    if len(scopes) == 1:
        (scope,) = scopes
        for kind in KINDS:
            if kind == scope:
                return kind
    raise BadClaims(
        f"scopes {' '.join(sorted(scopes))!r} mix kinds of principal; use one token each"
    )


def bindings(kind: Kind, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The binding claims of a ``kind`` principal, checked and normalised."""
    allowed = _BINDINGS[kind]
    present = {name: claims[name] for name in BINDING_CLAIMS if name in claims}
    for name in sorted(present.keys() - allowed.keys()):
        raise BadClaims(f"a {kind} token cannot carry a {name!r} claim")
    for name, required in sorted(allowed.items()):
        if required and name not in present:
            raise BadClaims(f"a {kind} token needs a {name!r} claim")
    out: dict[str, Any] = {}
    for name, value in present.items():
        if name == "queues":
            if not isinstance(value, list | tuple) or len(value) > MAX_QUEUES:
                raise BadClaims(f"queues must be a list of at most {MAX_QUEUES} queue names")
            out[name] = sorted({identifier(q, "a queue name") for q in value})
        else:
            out[name] = identifier(value, name)
    return out


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: what its verified token says it is and may do."""

    subject: str
    kind: Kind
    scopes: frozenset[str]
    token_id: str
    issued_at: datetime
    expires_at: datetime
    customer_id: str | None = None
    conversation_id: str | None = None
    queues: frozenset[str] = frozenset()
    store_id: str | None = None

    @property
    def channels(self) -> frozenset[str]:
        """The channels an adapter principal may write; empty for every other kind."""
        return frozenset(ADAPTER_SCOPES[s] for s in self.scopes if s in ADAPTER_SCOPES)
