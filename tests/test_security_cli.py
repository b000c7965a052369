"""``threadline token``: create, verify and revoke tokens against the configured store."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from threadline.cli import main
from threadline.core.events import EventCodec, EventRecord
from threadline.security import REVOCATIONS, RevocationList, RevokedToken, TokenVerifier
from threadline.security.commands import parse_duration
from threadline.settings import load_settings
from threadline.store.sqlite import open_sqlite


@pytest.fixture
def store_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "var" / "threadline.db"
    monkeypatch.setenv("THREADLINE_STORE", f"sqlite:///{path}")
    return path


def create(capsys, *args: str) -> str:
    assert main(["token", "create", *args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return out.strip()


def body(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def fails(capsys, *args: str) -> str:
    """The one error line of a command that must fail with status 1 and print nothing."""
    assert main(list(args)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("threadline: error: ") and captured.err.count("\n") == 1
    return captured.err.removeprefix("threadline: error: ").strip()


def test_create_prints_just_a_token_that_verifies(store_path, capsys) -> None:
    token = create(capsys, "--kind", "agent", "--subject", "agent-ana",
                   "--queue", "orders", "--queue", "billing", "--ttl", "8h")  # fmt: skip
    verifier = TokenVerifier.from_settings(load_settings(), RevocationList())
    principal = verifier.verify(token)
    assert (principal.kind, principal.subject) == ("agent", "agent-ana")
    assert principal.queues == {"orders", "billing"}
    assert principal.expires_at - principal.issued_at == timedelta(hours=8)


def test_the_first_create_generates_a_private_secret_beside_the_store(store_path, capsys) -> None:
    create(capsys, "--kind", "admin", "--subject", "root")
    secret = store_path.parent / "token-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    before = secret.read_bytes()
    create(capsys, "--kind", "admin", "--subject", "root")
    assert secret.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--kind", "customer", "--customer", "cus-maya"],
         {"sub": "cus-maya", "scope": "customer", "customer": "cus-maya"}),
        (["--kind", "customer", "--customer", "cus-maya", "--conversation", "c-1"],
         {"customer": "cus-maya", "conversation": "c-1"}),
        (["--kind", "adapter", "--channel", "chat"],
         {"sub": "chat-adapter", "scope": "adapter:chat"}),
        (["--kind", "adapter", "--channel", "voice", "--channel", "in_person"],
         {"scope": "adapter:in_person adapter:voice"}),
        (["--kind", "supervisor", "--subject", "sup-sam"], {"sub": "sup-sam"}),
        (["--kind", "admin", "--subject", "root"], {"scope": "admin"}),
        (["--kind", "agent", "--subject", "agent-ben"], {"queues": []}),
        (["--scope", "adapter:voice", "--subject", "twilio"], {"sub": "twilio"}),
    ],
)  # fmt: skip
def test_create_makes_each_kind_of_token(store_path, capsys, args, expected) -> None:
    claims = body(create(capsys, *args))
    assert expected.items() <= claims.items()


@pytest.mark.parametrize(
    ("kind", "hours"), [("customer", 1), ("adapter", 24), ("agent", 8), ("admin", 1)]
)
def test_each_kind_has_a_short_default_lifetime(store_path, capsys, kind, hours) -> None:
    extra = {"customer": ["--customer", "cus-maya"], "adapter": ["--channel", "chat"]}
    claims = body(create(capsys, "--kind", kind, "--subject", "s", *extra.get(kind, [])))
    assert claims["exp"] - claims["iat"] == hours * 3600


def test_a_revoked_token_no_longer_verifies(store_path, capsys) -> None:
    token = create(capsys, "--kind", "agent", "--subject", "agent-ana", "--queue", "orders")
    assert main(["token", "verify", token]) == 0
    jti = json.loads(capsys.readouterr().out)["token_id"]
    assert main(["token", "revoke", jti, "--reason", "laptop stolen", "--by", "sup-sam"]) == 0
    assert capsys.readouterr().out.startswith(f"revoked {jti} until ")
    assert fails(capsys, "token", "verify", token) == f"token {jti} has been revoked"


def test_a_second_revoke_says_so_and_appends_nothing(store_path, capsys) -> None:
    assert main(["token", "revoke", "jti-1", "--reason", "leaked"]) == 0
    capsys.readouterr()
    assert main(["token", "revoke", "jti-1", "--reason", "again"]) == 0
    assert capsys.readouterr().out == "jti-1 was already revoked\n"


async def read_revocations(path: Path) -> tuple[list[EventRecord], RevocationList]:
    store = await open_sqlite(path)
    try:
        return await store.read(REVOCATIONS), await RevocationList.load(store)
    finally:
        await store.close()


def test_revoke_appends_the_event_to_the_configured_store(store_path, capsys) -> None:
    token = create(capsys, "--kind", "admin", "--subject", "root")
    jti = body(token)["jti"]
    assert main(["token", "revoke", jti, "--reason", "rotated", "--by", "root"]) == 0
    [record], revocations = asyncio.run(read_revocations(store_path))
    event = EventCodec().decode(record)
    assert event.idempotency_key == f"revoke:{jti}"
    assert (event.payload["reason"], event.payload["revoked_by"]) == ("rotated", "root")
    with pytest.raises(RevokedToken):
        TokenVerifier.from_settings(load_settings(), revocations).verify(token)


def test_revoke_names_the_operator_and_a_reason_by_default(store_path, capsys) -> None:
    assert main(["token", "revoke", "jti-2"]) == 0
    [record], revocations = asyncio.run(read_revocations(store_path))
    payload = EventCodec().decode(record).payload
    assert payload["revoked_by"].startswith("cli") and payload["reason"] == "unspecified"
    assert "jti-2" in revocations


def test_a_configured_secret_signs_and_nothing_is_generated(store_path, capsys, monkeypatch):
    monkeypatch.setenv("THREADLINE_TOKEN_SECRET", "Pz8Lw3Qe6Tn1Bv4Xs7Kd0Hg2Mc5Jr9Ya")
    token = create(capsys, "--kind", "admin", "--subject", "root")
    jwt.decode(token, "Pz8Lw3Qe6Tn1Bv4Xs7Kd0Hg2Mc5Jr9Ya", algorithms=["HS256"],
               audience="threadline-api")  # fmt: skip
    assert not (store_path.parent / "token-secret").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--kind is required"),
        (["--kind", "customer"], "a customer token needs --customer"),
        (["--kind", "agent"], "--subject is required for agent tokens"),
        (["--kind", "adapter"], "an adapter token needs --channel"),
        (["--kind", "adapter", "--channel", "sms"], "invalid choice: 'sms'"),
        (["--kind", "wizard"], "invalid choice: 'wizard'"),
        (["--kind", "agent", "--subject", "a", "--ttl", "8x"], "bad duration '8x'"),
        (["--kind", "agent", "--subject", "a", "--ttl", "30d"], "at most 7d, not 30d"),
        (["--kind", "agent", "--subject", "a", "--ttl", "0s"], "ttl must be more than 0s"),
        (["--kind", "customer", "--customer", "cus-maya", "--queue", "orders"],
         "a customer token cannot carry a 'queues' claim"),
        (["--kind", "supervisor", "--subject", "s", "--channel", "chat"],
         "--channel is only for adapter tokens"),
        (["--kind", "admin", "--scope", "admin", "--subject", "s"], "--kind or --scope, not both"),
        (["--scope", "customer agent", "--subject", "s"], "mix kinds"),
        (["--scope", "root", "--subject", "s"], "unknown scope 'root'"),
        (["--kind", "admin", "--subject", "two words"], "subject must be"),
        (["--kind", "admin", "--subject", "s", "--bogus"], "unrecognized arguments: --bogus"),
        (["--kind", "admin", "--subject"], "expected one argument"),
    ],
)  # fmt: skip
def test_bad_create_input_is_one_line_and_fails(store_path, capsys, args, message) -> None:
    assert message in fails(capsys, "token", "create", *args)


def test_a_garbage_token_fails_verification_with_one_line(store_path, capsys) -> None:
    assert (
        fails(capsys, "token", "verify", "not-a-token") == "a token has three dot-separated parts"
    )


def test_a_bad_token_id_is_refused(store_path, capsys) -> None:
    assert "token id must be" in fails(capsys, "token", "revoke", "two words")


def test_a_short_configured_secret_is_refused(store_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("THREADLINE_TOKEN_SECRET", "hunter2")
    message = fails(capsys, "token", "create", "--kind", "admin", "--subject", "root")
    assert message.startswith("bad setting THREADLINE_TOKEN_SECRET")


def test_a_shared_store_without_a_secret_is_refused(capsys, monkeypatch) -> None:
    monkeypatch.setenv("THREADLINE_STORE", "postgresql://127.0.0.1/test")
    message = fails(capsys, "token", "create", "--kind", "admin", "--subject", "root")
    assert "set THREADLINE_TOKEN_SECRET" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("8h", timedelta(hours=8)),
     ("7d", timedelta(days=7)), ("1h30m", timedelta(hours=1, minutes=30))],
)  # fmt: skip
def test_durations_are_written_as_people_write_them(text, expected) -> None:
    assert parse_duration(text) == expected


def test_verify_reads_the_token_from_stdin_so_it_stays_out_of_ps(store_path, capsys, monkeypatch):
    token = create(capsys, "--kind", "supervisor", "--subject", "sup-sam")
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["token", "verify", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["subject"] == "sup-sam"
