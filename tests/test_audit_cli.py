"""``threadline audit``: the token commands record, ``verify`` says verified or where it
breaks (exit 0 or 1), ``checkpoint`` prints a signed checkpoint that ``verify`` holds the
trail to, and ``show`` prints the latest entries."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import jwt
import pytest

from threadline.audit import POLICY_VERSION, AuditKey
from threadline.cli import main

VERIFIED = re.compile(r"audit trail verified: (\d+) entries, (\d+) checkpoints, head [0-9a-f]{16}")


@pytest.fixture
def store_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "var" / "threadline.db"
    monkeypatch.setenv("THREADLINE_STORE", f"sqlite:///{path}")
    return path


def ok(capsys, *args: str) -> str:
    """The stdout of a command that must succeed."""
    assert main(list(args)) == 0, capsys.readouterr().err
    return str(capsys.readouterr().out)


def fails(capsys, *args: str) -> str:
    """The one error line of a command that must fail with status 1 and print nothing."""
    assert main(list(args)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("threadline: error: ") and captured.err.count("\n") == 1
    return str(captured.err.removeprefix("threadline: error: ").strip())


def issue(capsys, count: int = 1) -> list[str]:
    """Token ids of ``count`` admin tokens issued from the command line."""
    tokens = [ok(capsys, "token", "create", "--kind", "admin", "--subject", f"root-{n}").strip()
              for n in range(count)]  # fmt: skip
    return [jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens]


def verified(capsys, *args: str) -> tuple[int, int]:
    line = ok(capsys, "audit", "verify", *args)
    match = VERIFIED.fullmatch(line.strip())
    assert match is not None and line.count("\n") == 1, line
    return int(match[1]), int(match[2])


def tamper(store: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(store, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def row(store: Path, seq: int) -> tuple[bytes, bytes]:
    conn = sqlite3.connect(store)
    try:
        data, hash_ = conn.execute("SELECT entry, hash FROM audit_entries WHERE seq = ?",
                                   (seq,)).fetchone()  # fmt: skip
    finally:
        conn.close()
    return bytes(data), bytes(hash_)


def test_issuing_and_revoking_tokens_is_recorded_and_the_trail_verifies(store_path, capsys) -> None:
    (jti,) = issue(capsys)
    assert ok(capsys, "token", "revoke", jti, "--reason", "laptop lost on the 9:40 train")
    assert verified(capsys) == (2, 0)
    shown = ok(capsys, "audit", "show").splitlines()
    assert len(shown) == 2
    assert "token.issued" in shown[0] and f"token:{jti}" in shown[0] and "operator:cli" in shown[0]
    assert "token.revoked" in shown[1] and "purpose=token-administration" in shown[1]
    assert all(f"policy={POLICY_VERSION}" in line for line in shown)
    # The reason stays on the revocation event, where erasure can reach it.
    assert all(b"laptop" not in row(store_path, seq)[0] for seq in (1, 2))
    assert ok(capsys, "audit", "show", "--limit", "1").splitlines() == shown[1:]


def test_a_flipped_byte_fails_verify_naming_the_entry(store_path, capsys) -> None:
    issue(capsys, 3)
    data, _ = row(store_path, 2)
    at = data.index(b"root-1")
    tamper(store_path, "UPDATE audit_entries SET entry = ? WHERE seq = 2",
           data[:at] + b"X" + data[at + 1 :])  # fmt: skip
    error = fails(capsys, "audit", "verify")
    assert error.startswith("audit trail broken at entry 2: its bytes or its hash were altered")


def test_a_deleted_entry_fails_verify_naming_it(store_path, capsys) -> None:
    issue(capsys, 3)
    tamper(store_path, "DELETE FROM audit_entries WHERE seq = 2")
    assert fails(capsys, "audit", "verify").startswith("audit trail broken at entry 2: entry 2 is"
                                                      " missing")  # fmt: skip


def test_checkpoints_are_signed_every_n_entries_as_set(store_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("THREADLINE_AUDIT_CHECKPOINT_EVERY", "2")
    issue(capsys, 5)
    assert verified(capsys) == (5, 2)


def test_a_printed_checkpoint_holds_the_trail_to_what_it_was(store_path, capsys, tmp_path) -> None:
    issue(capsys, 3)
    printed = ok(capsys, "audit", "checkpoint")
    assert printed.count("\n") == 1 and '"seq":3' in printed
    kept = tmp_path / "kept.json"
    kept.write_text(printed)
    assert verified(capsys, "--from-checkpoint", str(kept)) == (3, 2)
    # Someone with the database cuts the last entry, its checkpoint and rewinds the head.
    _, second_hash = row(store_path, 2)
    tamper(store_path, "DELETE FROM audit_entries WHERE seq = 3")
    tamper(store_path, "DELETE FROM audit_checkpoints WHERE seq = 3")
    tamper(store_path, "UPDATE audit_head SET seq = 2, hash = ?", second_hash)
    assert verified(capsys) == (2, 0)  # the database alone can no longer tell
    error = fails(capsys, "audit", "verify", "--from-checkpoint", str(kept))
    assert error.startswith("audit trail broken at entry 3: the trail ends at entry 2, before"
                            " the trusted checkpoint")  # fmt: skip


def test_a_forged_checkpoint_fails_verify(store_path, capsys) -> None:
    issue(capsys, 2)
    ok(capsys, "audit", "checkpoint")
    _, first_hash = row(store_path, 1)
    tamper(store_path, "UPDATE audit_checkpoints SET seq = 1, hash = ?", first_hash)
    error = fails(capsys, "audit", "verify")
    assert error.startswith("audit trail broken at entry 1: the checkpoint signed at entry 1 has"
                            " a bad signature")  # fmt: skip


def test_verify_needs_only_the_public_key(store_path, capsys, tmp_path, monkeypatch) -> None:
    key = AuditKey.generate()
    private, public, stranger = (tmp_path / name for name in ("a.pem", "a.pub", "b.pub"))
    private.write_bytes(key.private_pem())
    private.chmod(0o600)
    public.write_bytes(key.public_pem())
    stranger.write_bytes(AuditKey.generate().public_pem())
    monkeypatch.setenv("THREADLINE_AUDIT_KEY_FILE", str(private))
    issue(capsys, 2)
    ok(capsys, "audit", "checkpoint")
    monkeypatch.setenv("THREADLINE_AUDIT_KEY_FILE", str(public))
    assert verified(capsys) == (2, 1)
    assert "needs the private key" in fails(capsys, "audit", "checkpoint")
    monkeypatch.setenv("THREADLINE_AUDIT_KEY_FILE", str(stranger))
    assert "bad signature" in fails(capsys, "audit", "verify")


def test_an_empty_trail_verifies_and_has_nothing_to_checkpoint(store_path, capsys) -> None:
    assert verified(capsys) == (0, 0)
    assert fails(capsys, "audit", "checkpoint") == (
        "the audit trail is empty: there is nothing to checkpoint"
    )


def test_a_file_that_is_no_checkpoint_is_one_error_line(store_path, capsys, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"seq": 3}')
    assert fails(capsys, "audit", "verify", "--from-checkpoint", str(bad)).startswith(
        f"{bad}: not an audit checkpoint"
    )
