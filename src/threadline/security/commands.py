"""``threadline token``: create, revoke and verify bearer tokens from the shell.

``create`` prints only the token on stdout (its id and expiry go to stderr),
so ``TOKEN=$(threadline token create …)`` works. ``create`` and ``revoke`` are
recorded in the audit trail of the configured store (a token is printed only
once its issue is recorded). ``links`` prints development
sign-in links for the staff pages (refused in production). Bad input is one
line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final, NoReturn

import orjson

from threadline.audit.actions import token_issued, token_revoked
from threadline.audit.trail import AuditTrail
from threadline.core.errors import ConfigurationError, ThreadlineError
from threadline.core.events import Actor
from threadline.security.principal import ADAPTER_CHANNELS, KINDS, BadClaims, kind_of, parse_scopes
from threadline.security.revocation import RevocationList, latest_expiry, revoke
from threadline.security.sign_in import LINK_TTL, development_links
from threadline.security.tokens import IssuedToken, TokenIssuer, TokenVerifier, span
from threadline.settings import Settings, load_settings
from threadline.store import open_store

DEFAULT_TTL: Final = {
    "customer": timedelta(hours=1),
    "adapter": timedelta(hours=24),
    "agent": timedelta(hours=8),
    "supervisor": timedelta(hours=8),
    "admin": timedelta(hours=1),
    "associate": timedelta(hours=8),
    "kiosk": timedelta(hours=24),
}
DEFAULT_BASE_URL: Final = "http://127.0.0.1:8080"
_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class UsageError(ThreadlineError):
    """The command line is wrong."""


class _OneLineParser(argparse.ArgumentParser):
    """Reports bad arguments as one ``threadline: error:`` line and exit status 1."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog.removeprefix('threadline ')}: {message}")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``8h``, ``7d`` or combinations such as ``1h30m``."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise UsageError(f"bad duration {text!r}: use for example 90s, 30m, 8h, 7d or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def add_token_parser(commands: Any) -> None:
    """Add ``token create|revoke|verify|links`` to the ``threadline`` command's subparsers."""
    token = commands.add_parser(
        "token", help="create, revoke and verify bearer tokens; development sign-in links"
    )
    actions = token.add_subparsers(dest="token_command", required=True, parser_class=_OneLineParser)
    create = actions.add_parser("create", help="print a new signed token")
    create.add_argument("--kind", choices=KINDS, help="the kind of principal")
    create.add_argument("--scope", action="append", help="raw scope (instead of --kind)")
    create.add_argument("--subject", help="who the token is for (sub)")
    create.add_argument("--customer", help="customer id (customer tokens)")
    create.add_argument("--conversation", help="bind a customer token to one conversation")
    create.add_argument("--queue", action="append", help="an agent's queue (repeatable)")
    create.add_argument("--store", help="the store of an associate or kiosk token")
    create.add_argument("--channel", action="append", choices=ADAPTER_CHANNELS,
                        help="an adapter's channel (repeatable)")  # fmt: skip
    create.add_argument("--ttl", type=parse_duration, help="lifetime, e.g. 30m, 8h, 7d")
    revoke_ = actions.add_parser("revoke", help="revoke a token by its id (jti)")
    revoke_.add_argument("jti")
    revoke_.add_argument("--reason", default="unspecified", help="why, for the audit trail")
    revoke_.add_argument("--by", help="who revokes it (default: cli:<user>)")
    verify = actions.add_parser("verify", help="check a token and print its principal")
    verify.add_argument("token", help="the token, or - to read it from stdin")
    links = actions.add_parser("links", help="print development sign-in links for the staff")
    links.add_argument("--base-url", help="the service's URL (default: THREADLINE_PUBLIC_URL,"
                       f" else {DEFAULT_BASE_URL})")  # fmt: skip


def run_token_command(args: argparse.Namespace) -> None:
    """Run ``threadline token …``; raises ThreadlineError with a one-line message on failure."""
    settings = load_settings()
    if args.token_command == "create":
        issued = asyncio.run(_create(settings, args))
        print(issued.token)
        principal = issued.principal
        print(f"issued {principal.token_id} for {principal.subject} "
              f"({' '.join(sorted(principal.scopes))}), expires "
              f"{principal.expires_at.isoformat()}", file=sys.stderr)  # fmt: skip
    elif args.token_command == "revoke":
        print(asyncio.run(_revoke(settings, args.jti, args.reason, args.by)))
    elif args.token_command == "verify":
        token = sys.stdin.read().strip() if args.token == "-" else args.token
        print(asyncio.run(_verify(settings, token)))
    elif args.token_command == "links":
        for subject, url in sign_in_links(settings, args.base_url):
            print(f"{subject:<18} {url}")
        print(f"development sign-in links, each good for {span(LINK_TTL)}", file=sys.stderr)


def sign_in_links(settings: Settings, base_url: str | None = None) -> list[tuple[str, str]]:
    """Fresh development sign-in links, by subject; refused in production."""
    if settings.env == "production":
        raise ConfigurationError(
            "sign-in links are for development only (THREADLINE_ENV=production):"
            " issue tokens with `threadline token create` or the identity provider"
        )
    from threadline.business import load_configured

    base = base_url or settings.public_url or DEFAULT_BASE_URL
    issuer = TokenIssuer.from_settings(settings)
    business = load_configured(settings.business)
    return [(person.subject, url) for person, url in development_links(business, issuer, base)]


def create_token(settings: Settings, args: argparse.Namespace) -> IssuedToken:
    """Issue the token the ``create`` arguments describe."""
    if args.kind and args.scope:
        raise UsageError("use --kind or --scope, not both")
    if args.scope:
        try:
            scopes = parse_scopes(" ".join(args.scope))
            kind = kind_of(scopes)
        except BadClaims as exc:
            raise UsageError(str(exc)) from None
    elif args.kind == "adapter":
        if not args.channel:
            raise UsageError("an adapter token needs --channel (chat, voice or in_person)")
        scopes = frozenset(f"adapter:{channel}" for channel in args.channel)
        kind = "adapter"
    elif args.kind:
        scopes = frozenset({args.kind})
        kind = args.kind
    else:
        raise UsageError(f"--kind is required: one of {', '.join(KINDS)}")
    if args.channel and kind != "adapter":
        raise UsageError("--channel is only for adapter tokens")
    if kind == "customer" and not args.customer:
        raise UsageError("a customer token needs --customer (the customer id)")
    claims: dict[str, Any] = {}
    if args.customer is not None:
        claims["customer"] = args.customer
    if args.conversation is not None:
        claims["conversation"] = args.conversation
    if args.queue is not None or kind == "agent":
        claims["queues"] = args.queue or []
    if getattr(args, "store", None) is not None:
        claims["store"] = args.store
    subject = args.subject or _default_subject(kind, scopes, args.customer)
    ttl = args.ttl if args.ttl is not None else min(DEFAULT_TTL[kind], settings.token_max_ttl)
    return TokenIssuer.from_settings(settings).issue(subject, scopes, ttl, claims)


async def _create(settings: Settings, args: argparse.Namespace) -> IssuedToken:
    """Issue the token and record it in the audit trail; no token is shown unless recorded."""
    store = await open_store(settings.store)
    try:
        trail = AuditTrail.open(settings, store)  # a key that cannot sign refuses first
        issued = create_token(settings, args)
        await trail.record(token_issued(_operator(), issued.principal))
    finally:
        await store.close()
    return issued


def _default_subject(kind: str, scopes: frozenset[str], customer: str | None) -> str:
    if kind == "customer" and customer:
        return customer
    if kind == "adapter":
        return "+".join(sorted(s.removeprefix("adapter:") for s in scopes)) + "-adapter"
    raise UsageError(f"--subject is required for {kind} tokens")


async def _revoke(settings: Settings, token_id: str, reason: str, by: str | None) -> str:
    revoked_by = by or _operator()
    expires_at = latest_expiry(settings.token_max_ttl)
    store = await open_store(settings.store)
    try:
        trail = AuditTrail.open(settings, store)
        result = await revoke(
            store,
            token_id,
            reason=reason,
            revoked_by=revoked_by,
            expires_at=expires_at,
            actor=Actor("system", "threadline-cli"),
        )
        await trail.record(token_revoked(_operator(), token_id, position=result.positions[0],
                                         duplicate=result.duplicate))  # fmt: skip
    finally:
        await store.close()
    if result.duplicate:
        return f"{token_id} was already revoked"
    return f"revoked {token_id} until {expires_at.isoformat(timespec='seconds')}"


async def _verify(settings: Settings, token: str) -> str:
    store = await open_store(settings.store)
    try:
        revocations = await RevocationList.load(store)
    finally:
        await store.close()
    principal = TokenVerifier.from_settings(settings, revocations).verify(token)
    summary = {
        "subject": principal.subject,
        "kind": principal.kind,
        "scopes": sorted(principal.scopes),
        "token_id": principal.token_id,
        "issued_at": principal.issued_at.isoformat(),
        "expires_at": principal.expires_at.isoformat(),
        "customer_id": principal.customer_id,
        "conversation_id": principal.conversation_id,
        "queues": sorted(principal.queues),
        "store_id": principal.store_id,
    }
    return orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
