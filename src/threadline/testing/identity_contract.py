"""The identity-directory contract: every backend subclasses :class:`IdentityContract`.

A subclass provides ``store`` (a fresh, empty store) and ``reopen`` (closes a
store and opens the same database again, as after a restart).
"""

from __future__ import annotations

from typing import Any

import pytest

from threadline.core.errors import DomainError
from threadline.core.events import Actor
from threadline.identity.identifiers import email, member, phone
from threadline.identity.service import Identity
from threadline.store import open_directory

SAM = Actor("human", "sup-sam")
GATEWAY = Actor("system", "voice-gateway")
MAYA_PHONE = phone("+1 415 555 0123")
MAYA_EMAIL = email("maya.chen@example.com")


async def service(store: Any) -> Identity:
    return Identity(store, await open_directory(store))


async def claim(identity: Identity, customer: str, identifier: Any, verified: bool = False) -> Any:
    method = "seed" if verified else "caller_id"
    return await identity.link(customer, identifier, verified=verified, method=method,
                               linked_by="test", reason="test", actor=GATEWAY)  # fmt: skip


class IdentityContract:
    """Behaviour every IdentityDirectory backend must show, through the service."""

    async def test_a_claim_is_found_unverified_then_verified(self, store: Any) -> None:
        identity = await service(store)
        assert await identity.resolve("phone", "(415) 555-0123") is None
        outcome = await claim(identity, "cus-maya", MAYA_PHONE)
        assert outcome.status == "linked"
        found = await identity.resolve("phone", "+14155550123")
        assert found is not None and found.customer_id == "cus-maya" and not found.verified
        outcome = await identity.link("cus-maya", MAYA_PHONE, verified=True, method="knowledge",
                                      linked_by="northwind-bot", reason="postcode 94103",
                                      actor=GATEWAY)  # fmt: skip
        assert outcome.status == "verified"
        found = await identity.resolve("phone", "415-555-0123")
        assert found is not None and found.verified and found.method == "knowledge"
        types = [e.type for e in await identity.history("cus-maya")]
        assert types == ["identity.claimed", "identity.verified"]

    async def test_identifiers_of_a_customer_carry_their_verification(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-maya", MAYA_PHONE, verified=True)
        await claim(identity, "cus-maya", MAYA_EMAIL)
        links = await identity.identifiers("cus-maya")
        assert [(x.kind, x.value, x.verified) for x in links] == [
            ("email", "maya.chen@example.com", False),
            ("phone", "+14155550123", True),
        ]

    async def test_a_claim_held_by_another_customer_is_a_conflict_not_a_move(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-maya", MAYA_PHONE, verified=True)
        outcome = await claim(identity, "cus-omar", MAYA_PHONE)
        assert outcome.status == "conflict" and outcome.held_by == "cus-maya"
        found = await identity.resolve("phone", MAYA_PHONE.value)
        assert found is not None and found.customer_id == "cus-maya"
        (conflict,) = await identity.conflicts()
        assert (conflict.claimed_for, conflict.held_by, conflict.status) == (
            "cus-omar", "cus-maya", "open",
        )  # fmt: skip

    async def test_resolving_a_conflict_by_moving_gives_the_claimant_the_identifier(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-maya", MAYA_PHONE)
        outcome = await claim(identity, "cus-omar", MAYA_PHONE)
        assert outcome.conflict_id is not None
        settled = await identity.resolve_conflict(outcome.conflict_id, "move", by="sup-sam",
                                                  note="Omar's new number", actor=SAM)  # fmt: skip
        assert settled.status == "move"
        found = await identity.resolve("phone", MAYA_PHONE.value)
        assert found is not None and found.customer_id == "cus-omar"
        assert await identity.conflicts() == []
        with pytest.raises(DomainError):
            await identity.resolve_conflict(outcome.conflict_id, "keep", by="sup-sam", note="",
                                            actor=SAM)  # fmt: skip

    async def test_a_merge_moves_links_and_an_unmerge_restores_exactly_them(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-dup", MAYA_EMAIL)
        await claim(identity, "cus-dup", member("NW-100234"), verified=True)
        await claim(identity, "cus-maya", MAYA_PHONE, verified=True)
        merge_id = await identity.merge("cus-dup", "cus-maya", reason="same person", by="sup-sam",
                                        actor=SAM)  # fmt: skip
        for kind, value in (("email", MAYA_EMAIL.value), ("member", "nw100234")):
            found = await identity.resolve(kind, value)
            assert found is not None and found.customer_id == "cus-maya"
        assert len(await identity.identifiers("cus-maya")) == 3
        assert await identity.directory.survivor("cus-dup") == "cus-maya"
        # Linked to the survivor after the merge: stays there on un-merge.
        await claim(identity, "cus-maya", phone("+1 510 555 0100"))
        assert await identity.unmerge("cus-dup", reason="two people", by="sup-sam",
                                      actor=SAM) == merge_id  # fmt: skip
        found = await identity.resolve("member", "NW-100234")
        assert found is not None and found.customer_id == "cus-dup" and found.verified
        kept = {x.value for x in await identity.identifiers("cus-maya")}
        assert kept == {MAYA_PHONE.value, "+15105550100"}
        types = [e.type for e in await identity.history("cus-dup")]
        assert types[-2:] == ["customer.merged", "customer.unmerged"]

    async def test_a_claim_for_a_merged_customer_lands_on_the_survivor(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-dup", MAYA_EMAIL)
        await identity.merge("cus-dup", "cus-maya", reason="same", by="sup-sam", actor=SAM)
        await claim(identity, "cus-dup", MAYA_PHONE)
        found = await identity.resolve("phone", MAYA_PHONE.value)
        assert found is not None and found.customer_id == "cus-maya"

    async def test_merging_twice_or_into_an_absorbed_customer_is_refused(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-a", MAYA_EMAIL)
        await claim(identity, "cus-c", MAYA_PHONE)
        await identity.merge("cus-a", "cus-b", reason="same", by="sup-sam", actor=SAM)
        with pytest.raises(DomainError):
            await identity.merge("cus-a", "cus-b", reason="again", by="sup-sam", actor=SAM)
        with pytest.raises(DomainError):
            await identity.merge("cus-c", "cus-a", reason="into absorbed", by="sup-sam", actor=SAM)

    async def test_the_projection_persists_and_rebuilds_from_the_log(
        self, store: Any, reopen: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-maya", MAYA_PHONE, verified=True)
        await claim(identity, "cus-dup", MAYA_EMAIL)
        await identity.merge("cus-dup", "cus-maya", reason="same", by="sup-sam", actor=SAM)
        checkpoint = await identity.directory.checkpoint()
        assert checkpoint > 0
        store = await reopen(store)
        identity = await service(store)
        assert await identity.directory.checkpoint() == checkpoint
        found = await identity.directory.lookup(MAYA_EMAIL)  # no catch-up: persisted
        assert found is not None and found.customer_id == "cus-maya"
        await identity.directory.clear()
        assert await identity.directory.lookup(MAYA_EMAIL) is None
        rebuilt = await identity.resolve("email", MAYA_EMAIL.value)  # rebuilt from the log
        assert rebuilt is not None and rebuilt.customer_id == "cus-maya"
        assert await identity.directory.checkpoint() == checkpoint

    async def test_applying_the_same_records_twice_changes_nothing(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-maya", MAYA_PHONE)
        records = await store.read_all(0)
        await identity.directory.apply(records)
        await identity.unlink("cus-maya", MAYA_PHONE, by="sup-sam", reason="wrong", actor=SAM)
        await identity.directory.apply(records)
        assert await identity.resolve("phone", MAYA_PHONE.value) is None

    async def test_learning_from_the_business_records_is_idempotent(self, store: Any) -> None:
        identity = await service(store)
        ids = [MAYA_PHONE, MAYA_EMAIL, member("NW-100234")]
        first = await identity.learn("cus-maya", ids, method="import", source="customers.csv")
        again = await identity.learn("cus-maya", ids, method="import", source="customers.csv")
        assert [o.status for o in first] == ["linked"] * 3
        assert [o.status for o in again] == ["unchanged"] * 3
        assert len(await identity.history("cus-maya")) == 3
        found = await identity.resolve("member", "NW-100234")
        assert found is not None and found.verified and found.method == "import"
