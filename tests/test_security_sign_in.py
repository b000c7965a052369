"""Who signs in to the staff pages, and the development links that sign them in."""

from __future__ import annotations

import stat
from datetime import timedelta
from urllib.parse import urlsplit

from threadline.business import Business
from threadline.security import RevocationList, TokenIssuer, TokenKey, TokenVerifier
from threadline.security.sign_in import (
    SHOWN_MARKER,
    SignIn,
    development_links,
    first_start,
    link,
    sign_in_people,
)

KEY = TokenKey.hs256("Vb8Rt2Lm6Qx0Zc4Nw9Hs3Kd7Fy1Jp5Ga")


def test_the_demo_business_signs_in_its_agents_supervisor_associates_and_kiosks(
    northwind,
) -> None:
    assert sign_in_people(northwind) == (
        SignIn("agent-ana", "agent", {"queues": ["orders", "billing"]}),
        SignIn("agent-ben", "agent", {"queues": ["repairs", "billing"]}),
        SignIn("sup-sam", "supervisor"),
        SignIn("assoc-priya", "associate", {"store": "sf-market"}),
        SignIn("assoc-diego", "associate", {"store": "oak-broadway"}),
        SignIn("kiosk-sf-market", "kiosk", {"store": "sf-market"}),
        SignIn("kiosk-oak-broadway", "kiosk", {"store": "oak-broadway"}),
    )


def test_who_signs_in_follows_the_business(northwind) -> None:
    pack = northwind.pack
    store = pack.locations[0].model_copy(update={"id": "berkeley", "name": "Berkeley"})
    grown_pack = pack.model_copy(update={
        "locations": (*pack.locations, store),
        "queues": (*pack.queues, pack.queues[0].model_copy(update={"id": "returns"})),
        "staff": (*pack.staff,
                  pack.staff[0].model_copy(update={"id": "agent-cy", "name": "Cy",
                                                   "queues": ("returns",)}),
                  pack.staff[3].model_copy(update={"id": "assoc-eve", "name": "Eve",
                                                   "location": "berkeley"})),
    })  # fmt: skip
    grown = Business(grown_pack, northwind.root)
    people = {person.subject: person for person in sign_in_people(grown)}
    assert people["agent-cy"] == SignIn("agent-cy", "agent", {"queues": ["returns"]})
    assert people["assoc-eve"].claims == {"store": "berkeley"}
    assert people["kiosk-berkeley"] == SignIn("kiosk-berkeley", "kiosk", {"store": "berkeley"})


def test_each_kind_signs_in_to_its_page(northwind) -> None:
    pages = {person.kind: person.page for person in sign_in_people(northwind)}
    assert pages == {
        "agent": "/desk", "supervisor": "/desk", "associate": "/associate", "kiosk": "/kiosk",
    }  # fmt: skip


def test_a_link_carries_its_token_in_the_fragment_only() -> None:
    parts = urlsplit(link("http://127.0.0.1:8080/", "/desk", "eyJ.a.b"))
    assert (parts.path, parts.query, parts.fragment) == ("/desk", "", "token=eyJ.a.b")


def test_development_links_sign_each_person_in_for_eight_hours(northwind) -> None:
    issuer = TokenIssuer(KEY, issuer="threadline", audience="threadline-api")
    verifier = TokenVerifier(
        KEY, issuer="threadline", audience="threadline-api", revocations=RevocationList()
    )
    for person, url in development_links(northwind, issuer, "http://127.0.0.1:8080"):
        principal = verifier.verify(url.split("#token=")[1])
        assert (principal.subject, principal.kind) == (person.subject, person.kind)
        assert principal.expires_at - principal.issued_at == timedelta(hours=8)
        assert principal.store_id == person.claims.get("store")


def test_the_first_start_of_a_data_directory_is_told_once(tmp_path) -> None:
    store = f"sqlite:///{tmp_path / 'data' / 'threadline.db'}"
    assert first_start(store) is True
    assert first_start(store) is False
    marker = tmp_path / "data" / SHOWN_MARKER
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600


def test_a_shared_store_has_no_first_start_of_its_own() -> None:
    assert first_start("postgresql://postgres@127.0.0.1:5432/test") is False
