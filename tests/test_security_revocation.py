"""Revocation through the log: ``token.revoked`` on ``system:tokens``, folded into a list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from threadline.core.catalogue import CATALOGUE
from threadline.core.errors import ValidationError
from threadline.core.events import Actor, Event, EventCodec, utcnow
from threadline.security import (
    LEEWAY,
    REVOCATIONS,
    IssuedToken,
    RevocationList,
    RevokedToken,
    TokenIssuer,
    TokenKey,
    TokenVerifier,
    latest_expiry,
    revocation,
    revoke,
)
from threadline.store.sqlite import open_sqlite

KEY = TokenKey.hs256("Rk2Pw9Xn4Tb7Lc0Vq5Md8Hs1Jf6Gy3Ze")
ISSUER = TokenIssuer(KEY, issuer="threadline", audience="threadline-api")
CODEC = EventCodec()


def verifier(revocations: RevocationList) -> TokenVerifier:
    return TokenVerifier(
        KEY, issuer="threadline", audience="threadline-api", revocations=revocations
    )


def agent_token() -> IssuedToken:
    return ISSUER.issue("agent-ana", "agent", timedelta(hours=8), {"queues": ["orders"]})


async def revoke_token(store, issued: IssuedToken, reason: str = "laptop stolen"):
    return await revoke(
        store,
        issued.principal.token_id,
        reason=reason,
        revoked_by="sup-sam",
        expires_at=issued.principal.expires_at,
        actor=Actor("human", "sup-sam"),
    )


async def test_a_revoked_token_fails_verification_and_still_fails_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "threadline.db"
    issued, other = agent_token(), agent_token()
    store = await open_sqlite(path)
    try:
        revocations = await RevocationList.load(store)
        assert verifier(revocations).verify(issued.token) == issued.principal
        await revoke_token(store, issued)
        await revocations.catch_up(store)
        with pytest.raises(RevokedToken):
            verifier(revocations).verify(issued.token)
    finally:
        await store.close()

    restarted = await open_sqlite(path)
    try:
        fresh = await RevocationList.load(restarted)
    finally:
        await restarted.close()
    assert issued.principal.token_id in fresh and len(fresh) == 1
    with pytest.raises(RevokedToken):
        verifier(fresh).verify(issued.token)
    assert verifier(fresh).verify(other.token) == other.principal


async def test_revocations_are_events_on_the_system_tokens_stream(sqlite_store) -> None:
    issued = agent_token()
    result = await revoke_token(sqlite_store, issued)
    assert result.conversation_id == REVOCATIONS == "system:tokens"
    [record] = await sqlite_store.read(REVOCATIONS)
    event = CODEC.decode(record)
    assert (event.type, event.version, event.channel) == ("token.revoked", 1, "system")
    assert event.idempotency_key == f"revoke:{issued.principal.token_id}"
    assert event.actor == Actor("human", "sup-sam")
    assert event.payload == {
        "jti": issued.principal.token_id,
        "reason": "laptop stolen",
        "revoked_by": "sup-sam",
        "expires_at": issued.principal.expires_at.isoformat().replace("+00:00", "Z"),
    }


async def test_revoking_twice_appends_once_and_keeps_the_first_reason(sqlite_store) -> None:
    issued = agent_token()
    first = await revoke_token(sqlite_store, issued, "laptop stolen")
    again = await revoke_token(sqlite_store, issued, "left the company")
    assert not first.duplicate and again.duplicate and again.seqs == first.seqs
    [record] = await sqlite_store.read(REVOCATIONS)
    assert CODEC.decode(record).payload["reason"] == "laptop stolen"


async def test_catch_up_reads_only_revocations_it_has_not_seen(sqlite_store) -> None:
    revocations = await RevocationList.load(sqlite_store)
    assert await revocations.catch_up(sqlite_store) == 0
    first, second = agent_token(), agent_token()
    await revoke_token(sqlite_store, first)
    assert await revocations.catch_up(sqlite_store) == 1
    await revoke_token(sqlite_store, second)
    assert await revocations.catch_up(sqlite_store) == 1
    assert revocations.seq == 2 and len(revocations) == 2


def revoked(jti: str, expires_at: datetime, *, stream: str = REVOCATIONS) -> Event:
    event = revocation(jti, reason="r", revoked_by="admin", expires_at=expires_at)
    return Event(stream, event.type, event.payload, seq=1)


def test_note_folds_revocations_from_the_bus() -> None:
    revocations = RevocationList()
    revocations.note(revoked("t-1", utcnow() + timedelta(hours=1)))
    assert revocations.is_revoked("t-1") and "t-1" in revocations
    assert not revocations.is_revoked("t-2")


def test_note_ignores_other_streams_and_types() -> None:
    revocations = RevocationList()
    revocations.note(revoked("t-1", utcnow() + timedelta(hours=1), stream="conv-1"))
    revocations.note(Event(REVOCATIONS, "note.added", {"author_id": "x", "text": "t-2"}))
    assert len(revocations) == 0


def test_an_entry_is_forgotten_once_its_token_could_no_longer_be_accepted() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    clock = [now]
    revocations = RevocationList(clock=lambda: clock[0])
    revocations.note(revoked("t-1", now + timedelta(hours=1)))
    clock[0] = now + timedelta(hours=1) + LEEWAY - timedelta(seconds=1)
    assert revocations.is_revoked("t-1"), "kept while the verifier's leeway still accepts it"
    clock[0] = now + timedelta(hours=1) + LEEWAY
    assert not revocations.is_revoked("t-1") and len(revocations) == 0


async def test_a_list_loaded_after_an_expiry_does_not_hold_it(sqlite_store) -> None:
    issued = agent_token()
    await revoke_token(sqlite_store, issued)
    later = issued.principal.expires_at + timedelta(minutes=5)
    revocations = await RevocationList.load(sqlite_store, clock=lambda: later)
    assert len(revocations) == 0 and revocations.seq == 1


def test_a_revocation_without_a_timezone_is_refused() -> None:
    event = revocation("t-1", reason="r", revoked_by="a", expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValidationError, match=r"payload\.expires_at"):
        CODEC.encode(event)


@pytest.mark.parametrize("jti", ["", "has space", "x" * 201])
def test_a_revocation_needs_a_plain_token_id(jti: str) -> None:
    with pytest.raises(ValidationError, match="token id"):
        revocation(jti, reason="r", revoked_by="a", expires_at=utcnow())


def test_a_revocation_by_id_alone_outlives_any_token_accepted_now() -> None:
    issuer = TokenIssuer(KEY, issuer="i", audience="a", max_ttl=timedelta(hours=8))
    longest = issuer.issue("a", "admin", timedelta(hours=8)).principal
    assert latest_expiry(timedelta(hours=8)) >= longest.expires_at + LEEWAY


def test_the_catalogue_holds_the_revocation_schema() -> None:
    schema = CATALOGUE.json_schema(CATALOGUE.spec("token.revoked", 1))
    assert set(schema["required"]) == {"jti", "reason", "revoked_by", "expires_at"}
    assert schema["x-pii-fields"] == [] and schema["additionalProperties"] is False
