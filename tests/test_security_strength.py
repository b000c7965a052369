"""The token secret's entropy estimate: guessable secrets fail it, random ones pass."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.security.strength import MIN_SECRET_BITS, estimate_bits, weakness

WEAK = [
    "a" * 32,
    "x" * 64,
    "ab" * 16,
    "abababababababababababababababab" * 4,
    "0123456789" * 4,
    "0123456789" * 20,
    "abcdefghijklmnopqrstuvwxyz012345",
    "password" * 4,
    "threadline" * 4,
    "correcthorse" * 3,
    "internationalization" * 2,
    "correcthorsebatterystaple" * 2,
    "Secret123!" * 4,
]


@pytest.mark.parametrize("secret", WEAK)
def test_a_guessable_secret_is_refused(secret: str) -> None:
    assert estimate_bits(secret) < MIN_SECRET_BITS
    problem = weakness(secret)
    assert problem is not None and problem.startswith("is too predictable: about ")
    assert secret[:8] not in problem  # the message never quotes the secret


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(32),
        lambda: secrets.token_urlsafe(48),
    ],
    ids=["token_urlsafe(32)", "openssl rand -hex 32", "the generated secret"],
)
def test_a_random_secret_of_32_bytes_passes(make) -> None:
    for _ in range(500):
        secret = make()
        assert weakness(secret) is None, secret


def test_the_estimate_of_a_random_secret_is_near_its_real_entropy() -> None:
    assert 180 < estimate_bits(secrets.token_hex(32)) <= 256
    assert 160 < estimate_bits(secrets.token_urlsafe(32)) <= 258


@given(st.binary(min_size=1, max_size=16), st.integers(min_value=2, max_value=40))
def test_any_chunk_of_16_bytes_or_fewer_repeated_is_refused(chunk: bytes, times: int) -> None:
    assert estimate_bits(chunk * times) < MIN_SECRET_BITS


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=2, max_value=8))
def test_repeating_a_secret_adds_no_entropy(chunk: bytes, times: int) -> None:
    assert estimate_bits(chunk * times) <= 8 * len(chunk)


@given(
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=32, max_value=200),
)
def test_a_run_of_evenly_spaced_bytes_is_refused(start: int, step: int, length: int) -> None:
    run = bytes((start + i * step) % 256 for i in range(length))
    assert estimate_bits(run) < MIN_SECRET_BITS


@given(st.binary(max_size=300))
def test_the_estimate_never_exceeds_eight_bits_a_byte(data: bytes) -> None:
    assert 0 <= estimate_bits(data) <= 8 * len(data)


def test_text_and_its_bytes_score_the_same() -> None:
    secret = secrets.token_urlsafe(32)
    assert estimate_bits(secret) == estimate_bits(secret.encode())
