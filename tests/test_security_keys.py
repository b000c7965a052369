"""Where the token key comes from: settings, a PEM file, or a secret generated once."""

from __future__ import annotations

import os
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from threadline.core.errors import ConfigurationError
from threadline.security import TokenIssuer, TokenKey, key_from_settings, load_or_create_secret
from threadline.security.keys import secret_path
from threadline.settings import Settings, load_settings

SECRET = "Zt4Qm8Ws1Ek6Rb0Yn3Hx7Jc2Vp5Lg9Fa"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "var" / "token-secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert mode(path) == 0o600
    assert load_or_create_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["token-secret"]


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    found: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: found.append(load_or_create_secret(path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    load_or_create_secret(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match=r"readable by others.*chmod 600"):
        load_or_create_secret(path)


def test_a_short_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short\n")
    os.close(fd)
    with pytest.raises(ConfigurationError, match="shorter than 32 bytes"):
        load_or_create_secret(path)


def test_the_generated_secret_lives_beside_the_sqlite_store(tmp_path: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path}/data/threadline.db")
    key = key_from_settings(settings)
    assert key.algorithm == "HS256"
    assert (tmp_path / "data" / "token-secret").read_bytes().strip() == key.verifying
    assert key_from_settings(settings).verifying == key.verifying


def test_the_default_store_keeps_the_secret_in_var() -> None:
    assert secret_path("sqlite:///var/threadline.db") == Path("var/token-secret")


def test_a_shared_store_needs_a_configured_secret() -> None:
    settings = Settings(store="postgresql://127.0.0.1/test")
    with pytest.raises(ConfigurationError, match="THREADLINE_TOKEN_SECRET"):
        key_from_settings(settings)


def test_a_configured_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    settings = load_settings(
        {"THREADLINE_STORE": f"sqlite:///{tmp_path}/t.db", "THREADLINE_TOKEN_SECRET": SECRET}
    )
    assert key_from_settings(settings).verifying == SECRET.encode()
    assert not (tmp_path / "token-secret").exists()
    assert SECRET not in repr(settings)


def test_a_short_configured_secret_is_a_bad_setting() -> None:
    with pytest.raises(ConfigurationError, match="bad setting THREADLINE_TOKEN_SECRET"):
        load_settings({"THREADLINE_TOKEN_SECRET": "hunter2"})


def test_token_settings_have_safe_defaults_and_read_durations() -> None:
    defaults = load_settings({})
    assert (defaults.token_issuer, defaults.token_audience) == ("threadline", "threadline-api")
    assert defaults.token_max_ttl == timedelta(days=7)
    assert defaults.token_secret is None and defaults.token_key_file is None
    assert load_settings({"THREADLINE_TOKEN_MAX_TTL": "PT8H"}).token_max_ttl == timedelta(hours=8)


def test_a_secret_and_a_key_file_together_are_refused(tmp_path: Path) -> None:
    settings = Settings(token_secret=SECRET, token_key_file=tmp_path / "key.pem")
    with pytest.raises(ConfigurationError, match="not both"):
        key_from_settings(settings)


def write_key(path: Path, pem: bytes, permissions: int) -> Path:
    path.write_bytes(pem)
    path.chmod(permissions)
    return path


def ed25519_pems() -> tuple[bytes, bytes]:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    return (
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def test_a_private_key_file_signs_with_eddsa(tmp_path: Path) -> None:
    private, _ = ed25519_pems()
    path = write_key(tmp_path / "token.pem", private, 0o600)
    settings = Settings(store=f"sqlite:///{tmp_path}/t.db", token_key_file=path)
    issuer = TokenIssuer.from_settings(settings)
    assert issuer.key.algorithm == "EdDSA" and issuer.key.can_sign
    assert not (tmp_path / "token-secret").exists()


def test_a_private_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    private, _ = ed25519_pems()
    path = write_key(tmp_path / "token.pem", private, 0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        key_from_settings(Settings(token_key_file=path))


def test_a_public_key_file_may_be_world_readable_and_only_verifies(tmp_path: Path) -> None:
    _, public = ed25519_pems()
    path = write_key(tmp_path / "token.pub", public, 0o644)
    key = key_from_settings(Settings(token_key_file=path))
    assert key == TokenKey("EdDSA", key.verifying, None)
    with pytest.raises(ConfigurationError, match="can only verify"):
        TokenIssuer.from_settings(Settings(token_key_file=path))


def test_an_hs256_secret_has_no_public_half() -> None:
    with pytest.raises(ConfigurationError, match="no public half"):
        TokenKey.hs256(SECRET).public()


@pytest.mark.parametrize("weak", ["a" * 32, "abcd" * 8, "0123456789" * 4, "password" * 4])
def test_a_guessable_configured_secret_is_refused_without_quoting_it(weak: str) -> None:
    with pytest.raises(ConfigurationError, match="THREADLINE_TOKEN_SECRET is too predictable") as e:
        key_from_settings(load_settings({"THREADLINE_TOKEN_SECRET": weak}))
    assert weak[:8] not in str(e.value)


def test_a_guessable_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"ab" * 24 + b"\n")
    os.close(fd)
    settings = Settings(store=f"sqlite:///{tmp_path}/t.db")
    with pytest.raises(ConfigurationError, match=f"the token secret in {path} is too predictable"):
        key_from_settings(settings)


def test_production_generates_no_secret(tmp_path: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path}/t.db", env="production")
    with pytest.raises(ConfigurationError, match="THREADLINE_ENV=production needs"):
        key_from_settings(settings)
    assert list(tmp_path.iterdir()) == []


def test_production_takes_a_configured_secret_or_key(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    secret = Settings(store=store, env="production", token_secret=SECRET)
    assert key_from_settings(secret).verifying == SECRET.encode()
    private, _ = ed25519_pems()
    path = write_key(tmp_path / "token.pem", private, 0o600)
    keyed = Settings(store=store, env="production", token_key_file=path)
    assert key_from_settings(keyed).algorithm == "EdDSA"
    assert not (tmp_path / "token-secret").exists()
