"""Parsing identifiers into their canonical forms; bad input is a clear ValidationError."""

from __future__ import annotations

import pytest

from threadline.core.errors import ValidationError
from threadline.identity.identifiers import parse


@pytest.mark.parametrize(
    ("kind", "raw", "canonical"),
    [
        ("phone", "+1 415 555 0123", "+14155550123"),
        ("phone", "(510) 555-0188", "+15105550188"),
        ("phone", "+44 20 7946 0958", "+442079460958"),
        ("email", "  Maya.Chen@Example.COM ", "maya.chen@example.com"),
        ("email", "omar.h+orders@example.net", "omar.h+orders@example.net"),  # no folding
        ("member", "nw 100234", "NW-100234"),
        ("member", "NW-100871", "NW-100871"),
        ("device", "visitor-0190a1b2-c3d4", "visitor-0190a1b2-c3d4"),
        ("idp", "https://login.example#user|42", "https://login.example#user|42"),
    ],
)
def test_identifiers_are_canonical(kind: str, raw: str, canonical: str) -> None:
    identifier = parse(kind, raw)
    assert (identifier.kind, identifier.value) == (kind, canonical)
    assert identifier.key == f"{kind}:{canonical}"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("phone", "12"),
        ("phone", "call me maybe"),
        ("phone", "+1 415 555 012"),
        ("email", "maya.chen"),
        ("email", "maya@@example.com"),
        ("email", "maya chen@example.com"),
        ("member", "100234"),
        ("device", "short"),
        ("device", "has space in it"),
        ("idp", "no-fragment"),
        ("idp", "ftp://issuer#sub"),
        ("phone", "   "),
        ("passport", "X123"),
    ],
)
def test_bad_identifiers_are_refused_naming_the_field(kind: str, raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(kind, raw)
    assert caught.value.errors and caught.value.errors[0]["field"] in {kind, "kind"}
