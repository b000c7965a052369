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

KIM = Actor("human", "sup-kim")
GATEWAY = Actor("system", "voice-gateway")
ADA_PHONE = phone("+1 312 555 0147")
ADA_EMAIL = email("ada.l@example.com")


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
        assert await identity.resolve("phone", "(312) 555-0147") is None
        outcome = await claim(identity, "cus-ada", ADA_PHONE)
        assert outcome.status == "linked"
        found = await identity.resolve("phone", "+13125550147")
        assert found is not None and found.customer_id == "cus-ada" and not found.verified
        outcome = await identity.link("cus-ada", ADA_PHONE, verified=True, method="knowledge",
                                      linked_by="shop-bot", reason="postcode 60601",
                                      actor=GATEWAY)  # fmt: skip
        assert outcome.status == "verified"
        found = await identity.resolve("phone", "312-555-0147")
        assert found is not None and found.verified and found.method == "knowledge"
        types = [e.type for e in await identity.history("cus-ada")]
        assert types == ["identity.claimed", "identity.verified"]

    async def test_identifiers_of_a_customer_carry_their_verification(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-ada", ADA_PHONE, verified=True)
        await claim(identity, "cus-ada", ADA_EMAIL)
        links = await identity.identifiers("cus-ada")
        assert [(x.kind, x.value, x.verified) for x in links] == [
            ("email", "ada.l@example.com", False),
            ("phone", "+13125550147", True),
        ]

    async def test_a_claim_held_by_another_customer_is_a_conflict_not_a_move(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-ada", ADA_PHONE, verified=True)
        outcome = await claim(identity, "cus-kofi", ADA_PHONE)
        assert outcome.status == "conflict" and outcome.held_by == "cus-ada"
        found = await identity.resolve("phone", ADA_PHONE.value)
        assert found is not None and found.customer_id == "cus-ada"
        (conflict,) = await identity.conflicts()
        assert (conflict.claimed_for, conflict.held_by, conflict.status) == (
            "cus-kofi", "cus-ada", "open",
        )  # fmt: skip

    async def test_resolving_a_conflict_by_moving_gives_the_claimant_the_identifier(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-ada", ADA_PHONE)
        outcome = await claim(identity, "cus-kofi", ADA_PHONE)
        assert outcome.conflict_id is not None
        settled = await identity.resolve_conflict(outcome.conflict_id, "move", by="sup-kim",
                                                  note="Kofi's new number", actor=KIM)  # fmt: skip
        assert settled.status == "move"
        found = await identity.resolve("phone", ADA_PHONE.value)
        assert found is not None and found.customer_id == "cus-kofi"
        assert await identity.conflicts() == []
        with pytest.raises(DomainError):
            await identity.resolve_conflict(outcome.conflict_id, "keep", by="sup-kim", note="",
                                            actor=KIM)  # fmt: skip

    async def test_a_merge_moves_links_and_an_unmerge_restores_exactly_them(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-dup", ADA_EMAIL)
        await claim(identity, "cus-dup", member("ZX-200001"), verified=True)
        await claim(identity, "cus-ada", ADA_PHONE, verified=True)
        merge_id = await identity.merge("cus-dup", "cus-ada", reason="same person", by="sup-kim",
                                        actor=KIM)  # fmt: skip
        for kind, value in (("email", ADA_EMAIL.value), ("member", "zx200001")):
            found = await identity.resolve(kind, value)
            assert found is not None and found.customer_id == "cus-ada"
        assert len(await identity.identifiers("cus-ada")) == 3
        assert await identity.directory.survivor("cus-dup") == "cus-ada"
        # Linked to the survivor after the merge: stays there on un-merge.
        await claim(identity, "cus-ada", phone("+1 206 555 0111"))
        assert await identity.unmerge("cus-dup", reason="two people", by="sup-kim",
                                      actor=KIM) == merge_id  # fmt: skip
        found = await identity.resolve("member", "ZX-200001")
        assert found is not None and found.customer_id == "cus-dup" and found.verified
        kept = {x.value for x in await identity.identifiers("cus-ada")}
        assert kept == {ADA_PHONE.value, "+12065550111"}
        types = [e.type for e in await identity.history("cus-dup")]
        assert types[-2:] == ["customer.merged", "customer.unmerged"]

    async def test_a_claim_for_a_merged_customer_lands_on_the_survivor(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-dup", ADA_EMAIL)
        await identity.merge("cus-dup", "cus-ada", reason="same", by="sup-kim", actor=KIM)
        await claim(identity, "cus-dup", ADA_PHONE)
        found = await identity.resolve("phone", ADA_PHONE.value)
        assert found is not None and found.customer_id == "cus-ada"

    async def test_merging_twice_or_into_an_absorbed_customer_is_refused(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-a", ADA_EMAIL)
        await claim(identity, "cus-c", ADA_PHONE)
        await identity.merge("cus-a", "cus-b", reason="same", by="sup-kim", actor=KIM)
        with pytest.raises(DomainError):
            await identity.merge("cus-a", "cus-b", reason="again", by="sup-kim", actor=KIM)
        with pytest.raises(DomainError):
            await identity.merge("cus-c", "cus-a", reason="into absorbed", by="sup-kim", actor=KIM)

    async def test_the_projection_persists_and_rebuilds_from_the_log(
        self, store: Any, reopen: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-ada", ADA_PHONE, verified=True)
        await claim(identity, "cus-dup", ADA_EMAIL)
        await identity.merge("cus-dup", "cus-ada", reason="same", by="sup-kim", actor=KIM)
        checkpoint = await identity.directory.checkpoint()
        assert checkpoint > 0
        store = await reopen(store)
        identity = await service(store)
        assert await identity.directory.checkpoint() == checkpoint
        found = await identity.directory.lookup(ADA_EMAIL)  # no catch-up: persisted
        assert found is not None and found.customer_id == "cus-ada"
        await identity.directory.clear()
        assert await identity.directory.lookup(ADA_EMAIL) is None
        rebuilt = await identity.resolve("email", ADA_EMAIL.value)  # rebuilt from the log
        assert rebuilt is not None and rebuilt.customer_id == "cus-ada"
        assert await identity.directory.checkpoint() == checkpoint

    async def test_applying_the_same_records_twice_changes_nothing(self, store: Any) -> None:
        identity = await service(store)
        await claim(identity, "cus-ada", ADA_PHONE)
        records = await store.read_all(0)
        await identity.directory.apply(records)
        await identity.unlink("cus-ada", ADA_PHONE, by="sup-kim", reason="wrong", actor=KIM)
        await identity.directory.apply(records)
        assert await identity.resolve("phone", ADA_PHONE.value) is None

    async def test_learning_from_the_business_records_is_idempotent(self, store: Any) -> None:
        identity = await service(store)
        ids = [ADA_PHONE, ADA_EMAIL, member("ZX-200001")]
        first = await identity.learn("cus-ada", ids, method="import", source="customers.csv")
        again = await identity.learn("cus-ada", ids, method="import", source="customers.csv")
        assert [o.status for o in first] == ["linked"] * 3
        assert [o.status for o in again] == ["unchanged"] * 3
        assert len(await identity.history("cus-ada")) == 3
        found = await identity.resolve("member", "ZX-200001")
        assert found is not None and found.verified and found.method == "import"

    async def test_absorbed_lists_every_customer_merged_into_one(self, store: Any) -> None:
        identity = await service(store)
        for customer, identifier in (("cus-a", ADA_EMAIL), ("cus-b", ADA_PHONE),
                                     ("cus-c", member("ZX-200001"))):  # fmt: skip
            await claim(identity, customer, identifier)
        await identity.merge("cus-a", "cus-b", reason="same", by="sup-kim", actor=KIM)
        await identity.merge("cus-b", "cus-c", reason="same", by="sup-kim", actor=KIM)
        assert await identity.directory.absorbed("cus-c") == ["cus-a", "cus-b"]
        assert await identity.directory.absorbed("cus-a") == []

    async def test_forgetting_customers_deletes_their_rows_and_no_one_elses(
        self, store: Any
    ) -> None:
        identity = await service(store)
        await claim(identity, "cus-dup", ADA_EMAIL)
        await claim(identity, "cus-ada", ADA_PHONE, verified=True)
        await claim(identity, "cus-kofi", phone("+1 206 555 0111"))
        await claim(identity, "cus-kofi", ADA_PHONE)  # a conflict with Ada
        await identity.merge("cus-dup", "cus-ada", reason="same", by="sup-kim", actor=KIM)
        deleted = await identity.directory.forget(["cus-ada", "cus-dup"])
        assert deleted == 4  # two links, the merge, the conflict
        assert await identity.resolve("phone", ADA_PHONE.value) is None
        assert await identity.resolve("email", ADA_EMAIL.value) is None
        assert await identity.conflicts(None) == []
        assert await identity.directory.survivor("cus-dup") == "cus-dup"
        found = await identity.resolve("phone", "+1 206 555 0111")
        assert found is not None and found.customer_id == "cus-kofi"
