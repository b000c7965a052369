"""Customer identifiers, parsed into one canonical form each.

* **phone**: E.164 (``+13125550147``) via ``phonenumbers``; numbers without a
  country code are read in the default region (US).
* **email**: trimmed and lower-cased. No provider-specific folding (Gmail dots,
  ``+tags``): those rules differ per provider and folding wrongly would join
  two people, which is worse than missing a match.
* **device**: a chat device or session id (the chat's visitor id), kept as is.
* **member**: a loyalty or member id, upper-case ``PREFIX-DIGITS`` (``ZX-200001``).
* **idp**: the subject of a trusted identity provider, ``<iss>#<sub>`` (an
  OpenID issuer URL never has a fragment, so the first ``#`` splits them).

Bad input raises :class:`~threadline.core.errors.ValidationError` naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

import phonenumbers

from threadline.core.errors import ValidationError

Kind = Literal["phone", "email", "device", "member", "idp"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
DEFAULT_REGION: Final = "US"

_EMAIL: Final = re.compile(r"[^@\s]{1,64}@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_DEVICE: Final = re.compile(r"[A-Za-z0-9._:-]{8,128}")
_MEMBER: Final = re.compile(r"([A-Z]{2,4})[-\s]?(\d{4,12})")
_ISSUER: Final = re.compile(
    r"https://[^\s#?]{1,200}|http://(127\.0\.0\.1|localhost)(:\d+)?[^\s#?]*"
)
_SUBJECT: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True, slots=True)
class Identifier:
    """One canonical identifier; ``key`` is how the directory indexes it."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"

    def __str__(self) -> str:
        return self.key


def _refuse(kind: str, message: str) -> ValidationError:
    return ValidationError(f"bad {kind}: {message}", [{"field": kind, "reason": message}])


def phone(raw: str, region: str = DEFAULT_REGION) -> Identifier:
    """A phone number in E.164; refuses what is not a valid number."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise _refuse("phone", f"{raw!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise _refuse("phone", f"{raw!r} is not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Identifier("phone", e164)


def email(raw: str) -> Identifier:
    """An email address, trimmed and lower-cased."""
    value = raw.strip().lower()
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise _refuse("email", f"{raw!r} is not an email address")
    return Identifier("email", value)


def device(raw: str) -> Identifier:
    """A chat device or session id: 8-128 letters, digits and ``._:-``."""
    value = raw.strip()
    if not _DEVICE.fullmatch(value):
        raise _refuse("device", "a device id is 8-128 letters, digits or . _ : -")
    return Identifier("device", value)


def member(raw: str) -> Identifier:
    """A loyalty or member id such as ``ZX-200001`` (``zx 200001`` reads the same)."""
    match = _MEMBER.fullmatch(raw.strip().upper())
    if match is None:
        raise _refuse("member", f"{raw!r} is not a member id like ZX-200001")
    return Identifier("member", f"{match[1]}-{match[2]}")


def idp(issuer: str, subject: str) -> Identifier:
    """The subject ``sub`` of the identity provider ``iss``."""
    if not _ISSUER.fullmatch(issuer):
        raise _refuse("idp", "the issuer must be an https URL without query or fragment")
    if not _SUBJECT.fullmatch(subject):
        raise _refuse("idp", "the subject must be 1-255 printable characters")
    return Identifier("idp", f"{issuer}#{subject}")


def parse(kind: str, raw: str, region: str = DEFAULT_REGION) -> Identifier:
    """An identifier of ``kind`` from what someone typed, said or sent."""
    if not isinstance(raw, str) or not raw.strip():
        raise _refuse(kind, "empty")
    if kind == "phone":
        return phone(raw, region)
    if kind == "email":
        return email(raw)
    if kind == "device":
        return device(raw)
    if kind == "member":
        return member(raw)
    if kind == "idp":
        issuer, sep, subject = raw.partition("#")
        if not sep:
            raise _refuse("idp", "write an IdP subject as <issuer>#<sub>")
        return idp(issuer, subject)
    raise ValidationError(
        f"unknown identifier kind {kind!r}",
        [{"field": "kind", "reason": f"one of {', '.join(KINDS)}"}],
    )


def from_key(key: str) -> Identifier:
    """The identifier of a directory key (``kind:value``), as stored."""
    kind, _, value = key.partition(":")
    return Identifier(kind, value)
