"""Who signs in to the staff pages, and their development sign-in links.

:func:`sign_in_people` is the one place that knows who signs in: the business
pack's agents (with their queues), supervisors, associates (with their
location) and one kiosk per location. In development, ``threadline
serve`` prints a link for each of them on the first start of a data directory
(and ``threadline token links`` on demand). A link carries its token in the
URL fragment (``/desk#token=…``): browsers never send the fragment, so the
token never reaches a server or proxy log; the page reads it and removes it
from the address bar.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from threadline.business import Business
from threadline.core.errors import ConfigurationError
from threadline.security.keys import secret_path
from threadline.security.principal import AGENT, ASSOCIATE, KIOSK, SUPERVISOR, Kind
from threadline.security.tokens import TokenIssuer

#: How long a development link signs in for.
LINK_TTL: Final = timedelta(hours=8)
#: The page each kind of staff signs in to.
PAGES: Final[Mapping[str, str]] = {
    AGENT: "/desk",
    SUPERVISOR: "/desk",
    ASSOCIATE: "/associate",
    KIOSK: "/kiosk",
}
#: Beside the generated token secret: present once the links have been printed.
SHOWN_MARKER: Final = "sign-in-links-shown"


@dataclass(frozen=True, slots=True)
class SignIn:
    """Someone who signs in to a staff page: who, as what kind, with which bindings."""

    subject: str
    kind: Kind
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def page(self) -> str:
        return PAGES[self.kind]


def sign_in_people(business: Business) -> tuple[SignIn, ...]:
    """Everyone who signs in to a staff page of ``business``."""
    agents = tuple(SignIn(p.id, AGENT, {"queues": list(p.queues)})
                   for p in business.people("agent"))  # fmt: skip
    supervisors = tuple(SignIn(p.id, SUPERVISOR) for p in business.people("supervisor"))
    associates = tuple(SignIn(p.id, ASSOCIATE, {"store": p.location})
                       for p in business.people("associate"))  # fmt: skip
    kiosks = tuple(SignIn(f"kiosk-{loc.id}", KIOSK, {"store": loc.id})
                   for loc in business.locations)  # fmt: skip
    return (*agents, *supervisors, *associates, *kiosks)


def link(base_url: str, page: str, token: str) -> str:
    """``page`` under ``base_url`` with ``token`` in the fragment, never the query."""
    return f"{base_url.rstrip('/')}{page}#token={token}"


def development_links(
    business: Business, issuer: TokenIssuer, base_url: str
) -> list[tuple[SignIn, str]]:
    """A fresh sign-in link (:data:`LINK_TTL`) for everyone who signs in to ``business``."""
    people = sign_in_people(business)
    return [
        (person, link(base_url, person.page,
                      issuer.issue(person.subject, [person.kind], LINK_TTL, person.claims).token))
        for person in people
    ]  # fmt: skip


def marker_path(store_url: str) -> Path | None:
    """Where :func:`first_start` keeps its marker: beside the generated token secret, in the
    SQLite store's directory; None on a shared store, which has no data directory of its own."""
    try:
        return secret_path(store_url).with_name(SHOWN_MARKER)
    except ConfigurationError:
        return None


def first_start(store_url: str) -> bool:
    """True once per data directory: the call that creates its marker (mode 0600, like the
    token secret). False afterwards, and always on a shared store."""
    marker = marker_path(store_url)
    if marker is None:
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True
