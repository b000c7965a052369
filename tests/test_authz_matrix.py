"""The authorization matrix: every route and event type, for every role, as authz_matrix.yaml says.

The rows come from the app's route table and the event catalogue; a route or event
type without a row fails ("no authorization rule for POST /new/thing"), so neither
lands without a rule. Every cell is decided by the real policy engine; every endpoint
cell is also a real request to a live app on both stores, where a refusal by the
route's policy is a 401 (no token) or a 403 naming the endpoint, and anything else
means the route let the caller through (what the conversation, queue or body then
says is not the route's to decide).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount, WebSocketRoute

from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.core.catalogue import CATALOGUE
from threadline.core.conversation import ConversationState, decide, initial
from threadline.core.events import Actor, Event, utcnow
from threadline.security.authz import (
    Denied,
    allows,
    automated_agent,
    can_append,
    can_call,
    can_open,
    can_read_conversation,
    can_view,
)
from threadline.security.principal import Principal
from threadline.settings import Settings

TABLE: Final = yaml.safe_load((Path(__file__).parent / "authz_matrix.yaml").read_text())
ROLES: Final = ("anonymous", "customer", "adapter", "agent", "supervisor", "associate",
                "kiosk", "admin")  # fmt: skip
STORE, OTHER_STORE = "sf-market", "oak-broadway"
#: What a path names, for the caller's own and for another's.
OWN: Final = {"agent_id": "agent-ana", "store_id": STORE, "customer_id": "cus-maya",
              "queue_id": "orders", "conversation_id": "conv-m", "entry_id": "q-none",
              "conflict_id": "c-none", "approval_id": "apr-none",
              "path": "twilio/incoming"}  # fmt: skip
OTHERS: Final = {"agent_id": "agent-ben", "store_id": OTHER_STORE, "customer_id": "cus-omar"}
TARGETS: Final = {"agent_id": "agent", "store_id": "store", "customer_id": "customer",
                  "queue_id": "queue"}  # fmt: skip


def principal(kind: str, subject: str, *scopes: str, **bindings: Any) -> Principal:
    now = utcnow()
    return Principal(subject=subject, kind=kind, scopes=frozenset(scopes or {kind}),  # type: ignore[arg-type]
                     token_id=f"jti-{subject}", issued_at=now,
                     expires_at=now + timedelta(hours=1), **bindings)  # fmt: skip


PRINCIPALS: Final[dict[str, Principal | None]] = {
    "anonymous": None,
    "customer": principal("customer", "cus-maya", customer_id="cus-maya"),
    "adapter": principal("adapter", "web-chat", "adapter:chat"),
    "agent": principal("agent", "agent-ana", queues=frozenset({"orders"})),
    "supervisor": principal("supervisor", "sup-sam"),
    "associate": principal("associate", "assoc-priya", store_id=STORE),
    "kiosk": principal("kiosk", "kiosk-sf", store_id=STORE),
    "admin": principal("admin", "root"),
    "bot": automated_agent("northwind-bot"),
}
#: The bearer token claims of each role, for the live app.
TOKENS: Final = {
    "customer": ("cus-maya", "customer", {"customer": "cus-maya"}),
    "adapter": ("web-chat", "adapter:chat", {}),
    "agent": ("agent-ana", "agent", {"queues": ["orders"]}),
    "supervisor": ("sup-sam", "supervisor", {}),
    "associate": ("assoc-priya", "associate", {"store": STORE}),
    "kiosk": ("kiosk-sf", "kiosk", {"store": STORE}),
    "admin": ("root", "admin", {}),
}


# -- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """Who a route's row lets through: everyone, or these roles (some for their own only)."""

    everyone: bool
    roles: frozenset[str]
    own: frozenset[str]

    @classmethod
    def of(cls, cell: str | list[str]) -> Rule:
        if cell == "everyone":
            return cls(True, frozenset(), frozenset())
        assert isinstance(cell, list), cell
        plain = {c for c in cell if ":" not in c}
        own = {c.split(":")[0] for c in cell if c.endswith(":own")}
        assert plain | own <= set(ROLES), cell
        return cls(False, frozenset(plain), frozenset(own))

    def allows(self, role: str, whose: str) -> bool:
        return self.everyone or role in self.roles or (role in self.own and whose == "own")


def rules(kind: str) -> dict[str, Rule]:
    return {name: Rule.of(cell) for name, cell in TABLE[kind].items()}


@dataclass(frozen=True)
class Routes:
    endpoints: set[str]
    sockets: set[str]
    pages: set[str]


def route_table(app: FastAPI) -> Routes:
    """Every HTTP endpoint (``METHOD /path``), WebSocket and page of ``app``."""
    found = Routes(set(), set(), set())
    for route in iter_route_contexts(app.routes):
        path = str(route.path)
        original = route.original_route
        if isinstance(original, WebSocketRoute | APIWebSocketRoute):
            found.sockets.add(path)
        elif isinstance(original, Mount) or getattr(route, "response_class", None) is HTMLResponse:
            found.pages.add(path)
        else:
            found.endpoints.update(f"{method} {path}" for method in route.methods or ())
    return found


@pytest.fixture(scope="module")
def table() -> Routes:
    return route_table(create_app(Settings(token_secret=TOKEN_SECRET)))


def test_every_route_has_a_rule(table: Routes) -> None:
    missing = [
        f"no authorization rule for {e}"
        for e in sorted(table.endpoints - rules("endpoints").keys())
    ]
    missing += [
        f"no authorization rule for socket {s}"
        for s in sorted(table.sockets - rules("sockets").keys())
    ]
    missing += [f"no authorization rule for page {p}"
                for p in sorted(table.pages - rules("pages").keys())]  # fmt: skip
    assert not missing, "\n".join(missing)


def test_every_rule_is_for_a_route(table: Routes) -> None:
    """Rows for routes that are gone are stale (the phone channel's routes depend on its
    extra: either the carrier's or the 503s stand)."""
    stale = rules("endpoints").keys() - table.endpoints
    stale |= rules("sockets").keys() - table.sockets
    stale |= rules("pages").keys() - table.pages
    assert {s for s in stale if "/voice/" not in s} == set()


def test_every_event_type_has_a_rule() -> None:
    types = {spec.type for spec in CATALOGUE}
    missing = [f"no authorization rule for event type {t}"
               for t in sorted(types - TABLE["events"].keys())]  # fmt: skip
    assert not missing, "\n".join(missing)
    assert TABLE["events"].keys() <= types


# -- routes, through the engine ----------------------------------------------------------


def _target(path: str, whose: str) -> dict[str, str]:
    values = {**OWN, **(OTHERS if whose == "other" else {})}
    return {TARGETS[name]: values[name] for name in TARGETS if "{" + name + "}" in path}


def _cells(kind: str) -> list[tuple[str, str, str, bool]]:
    """(route, role, own|other, expected) for every cell of ``kind``'s rows."""
    cells = []
    for route, rule in rules(kind).items():
        for role in ROLES:
            for whose in ("own", "other") if role in rule.own else ("own",):
                cells.append((route, role, whose, rule.allows(role, whose)))
    return cells


Check = Callable[[Principal | None, str, dict[str, str]], None]


def _mismatches(cells: list[tuple[str, str, str, bool]], check: Check) -> list[str]:
    wrong = []
    for route, role, whose, expected in cells:
        path = route.split(" ", 1)[-1]
        allowed = allows(check, PRINCIPALS[role], route, _target(path, whose))
        if allowed != expected:
            said = "allows" if allowed else "refuses"
            wrong.append(f"{route} for {role} ({whose}): policy {said}")
    return wrong


def test_every_endpoint_cell_is_the_policys() -> None:
    assert _mismatches(_cells("endpoints"), can_call) == []


def test_every_socket_cell_is_the_policys() -> None:
    assert _mismatches(_cells("sockets"), can_open) == []


def test_every_page_cell_is_the_policys() -> None:
    def view(who: Principal | None, page: str, target: dict[str, str]) -> None:
        can_view(who, page)

    assert _mismatches(_cells("pages"), view) == []


# -- events and reads, through the engine ------------------------------------------------

CID = "conv-m"
MAYA = Actor("customer", "cus-maya")
ROUTER = Actor("system", "router")


def _ev(type_: str, payload: dict[str, Any], *, actor: Actor = MAYA, channel: str = "chat",
        leg_id: str | None = None, customer: str | None = "cus-maya") -> Event:  # fmt: skip
    return Event(CID, type_, payload, channel=channel, actor=actor, customer_id=customer,
                 leg_id=leg_id)  # fmt: skip


def _scenes() -> dict[str, ConversationState]:
    """The states of the conversation the cells are decided on."""
    offer = {"offer_id": "o-1", "queue": "orders",
             "expires_at": (utcnow() + timedelta(minutes=1)).isoformat()}  # fmt: skip
    chatting = decide(initial(CID), [
        _ev("conversation.started", {"origin": "chat"}),
        _ev("leg.started", {"leg_id": "chat-1", "channel": "chat"}, leg_id="chat-1"),
        _ev("message.received", {"text": "where is order 1042?"}, leg_id="chat-1"),
    ])  # fmt: skip

    def handed(queue: str, agent: str | None = None, accepted: bool = False) -> ConversationState:
        events = [_ev("handoff.requested", {"queue": queue, "reason_code": "customer_request"},
                      actor=Actor("bot", "northwind-bot"))]  # fmt: skip
        if agent is not None:
            events.append(_ev("handoff.offered", {**offer, "queue": queue, "agent_id": agent},
                              actor=ROUTER))  # fmt: skip
        if accepted:
            events.append(_ev("handoff.accepted", {"offer_id": "o-1", "agent_id": agent},
                              actor=Actor("human", str(agent))))  # fmt: skip
        return decide(chatting, events)

    assigned = handed("orders", "agent-ana", accepted=True)
    visit = decide(chatting, [_ev("leg.started", {"leg_id": "visit-1", "channel": "in_person",
                                                  "location": STORE},
                                  channel="in_person", leg_id="visit-1")])  # fmt: skip
    return {
        "own": chatting, "other": chatting, "any": chatting, "bot": chatting,
        "queue": handed("orders"),
        "offered": handed("repairs", "agent-ana"),
        "assigned": assigned,
        "another": handed("orders", "agent-ben", accepted=True),
        "closed": decide(assigned, [_ev("conversation.resolved", {"outcome": "fixed"},
                                        actor=Actor("human", "agent-ana"))]),
        "human": assigned,
        "visit": visit,
        "ended": decide(visit, [_ev("leg.ended", {"leg_id": "visit-1", "reason": "completed"},
                                    channel="in_person",
                                    leg_id="visit-1")]),
    }  # fmt: skip


SCENES: Final = _scenes()
#: The states each role's cells are decided in.
STATES: Final = {
    "customer": ("own", "other"), "adapter": ("own", "other"),
    "agent": ("queue", "offered", "assigned", "another", "closed"),
    "supervisor": ("queue", "offered", "assigned", "another", "closed"),
    "admin": ("queue", "offered", "assigned", "another", "closed"),
    "associate": ("visit", "ended"), "kiosk": ("any",), "bot": ("bot", "human"),
}  # fmt: skip


def _who(role: str, state: str) -> Principal:
    """The principal deciding in ``state``: another customer, for a customer's ``other``."""
    if role == "customer" and state == "other":
        return principal("customer", "cus-omar", customer_id="cus-omar")
    who = PRINCIPALS[role]
    assert who is not None
    return who


def event_for(role: str, type_: str, state: str) -> Event:
    """``type_`` as ``role`` would write it in ``state``: as itself, on its channel."""
    who = _who(role, state)
    actor = {"customer": Actor("customer", str(who.customer_id)), "adapter": MAYA,
             "bot": Actor("bot", who.subject)}.get(role, Actor("human", who.subject))  # fmt: skip
    channel = {"adapter": "voice" if state == "other" else "chat",
               "associate": "in_person"}.get(role, "chat")  # fmt: skip
    leg = {"associate": "visit-1", "adapter": "chat-1" if state == "own" else None,
           "customer": "chat-1", "bot": "chat-1"}.get(role)  # fmt: skip
    payload: dict[str, Any] = {
        "conversation.started": {"origin": channel},
        "leg.started": {"leg_id": "leg-new", "channel": channel, "location": STORE},
        "leg.ended": {"leg_id": leg or "chat-1"},
        "handoff.accepted": {"offer_id": "o-1", "agent_id": actor.id},
        "handoff.declined": {"offer_id": "o-1", "agent_id": actor.id},
        "handoff.returned": {"agent_id": actor.id},
        "note.added": {"author_id": actor.id, "text": "noted"},
        "approval.granted": {"approval_id": "apr-1", "agent_id": actor.id, "queue": "orders"},
        "approval.denied": {"approval_id": "apr-1", "agent_id": actor.id, "queue": "orders",
                            "reason": "not eligible"},
        "identity.linked": {"kind": "phone", "value": "+14155550100", "verified": True,
                            "method": "agent"},
    }.get(type_, {})  # fmt: skip
    if type_ == "leg.started":
        leg = "leg-new"
    customer = who.customer_id if role == "customer" else "cus-maya"
    return _ev(type_, payload, actor=actor, channel=channel, leg_id=leg, customer=customer)


def _expected(cell: dict[str, Any], role: str) -> set[str]:
    allowed = {**TABLE["defaults"], **cell}.get(role, [])
    return set(STATES[role]) if allowed == "all" else set(allowed)


def test_every_event_cell_is_the_policys() -> None:
    wrong = []
    for type_, cell in sorted(TABLE["events"].items()):
        for role, states in STATES.items():
            expected = _expected(cell or {}, role)
            for state in states:
                event = event_for(role, type_, state)
                allowed = allows(can_append, _who(role, state), SCENES[state], event)
                if allowed != (state in expected):
                    wrong.append(f"{type_} by {role} ({state}): policy "
                                 f"{'allows' if allowed else 'refuses'}")  # fmt: skip
    assert wrong == []


def test_every_read_cell_is_the_policys() -> None:
    wrong = []
    for role, states in STATES.items():
        expected = _expected(TABLE["read"], role)
        for state in states:
            who = _who(role, state)
            if role == "adapter" and state == "other":
                who = principal("adapter", "phone", "adapter:voice")
            allowed = allows(can_read_conversation, who, SCENES[state])
            if allowed != (state in expected):
                said = "allows" if allowed else "refuses"
                wrong.append(f"read by {role} ({state}): policy {said}")
    assert wrong == []


def test_a_refusal_names_the_rule_and_the_policy_version() -> None:
    with pytest.raises(Denied) as refused:
        can_append(_who("agent", "another"), SCENES["another"],
                   event_for("agent", "message.sent", "another"))  # fmt: skip
    decision = refused.value.decision
    assert decision is not None and decision.policies[0] == "agent.assignees-work"
    assert decision.version.startswith("authz-")
    assert refused.value.reason == (
        "agent agent-ana: message.sent is the assignee's: conversation conv-m is assigned to "
        "agent-ben"
    )


def test_a_moved_conversation_is_decided_on_its_state_then() -> None:
    """The cells are about the state: the same event on the next state can change."""
    reply = event_for("agent", "message.sent", "assigned")
    assert allows(can_append, PRINCIPALS["agent"], SCENES["assigned"], reply)
    assert not allows(can_append, PRINCIPALS["agent"], SCENES["closed"], reply)
    handed_back = replace(SCENES["assigned"], queue=None, assignee=None, status="bot_active")
    assert not allows(can_read_conversation, PRINCIPALS["agent"], handed_back)


def test_who_decided_a_call_follows_the_conversation_while_it_is_open() -> None:
    """Agents of the approval's queue read the conversation while the call waits; the one
    who decided it goes on reading it, to see the call run and the customer told, until
    it closes."""
    bot, ben = Actor("bot", "northwind-bot"), Actor("human", "agent-ben")
    billing = {who: principal("agent", who, queues=frozenset({"billing"}))
               for who in ("agent-ana", "agent-ben")}  # fmt: skip
    asked = decide(SCENES["bot"], [_ev("approval.requested", {
        "approval_id": "apr-1", "tool": "refund_order", "queue": "billing",
        "arguments": {"order_number": "1042"}}, actor=bot)])  # fmt: skip
    assert all(allows(can_read_conversation, who, asked) for who in billing.values())
    assert not allows(can_read_conversation, PRINCIPALS["agent"], asked)  # orders only
    told = decide(asked, [
        _ev("approval.granted", {"approval_id": "apr-1", "agent_id": "agent-ben",
                                 "queue": "billing"}, actor=ben),
        _ev("action.requested", {"action_id": "apr-1", "tool": "refund_order"}, actor=bot),
        _ev("action.completed", {"action_id": "apr-1", "result": {"refund_id": "rf-1"}},
            actor=bot),
        _ev("message.sent", {"text": "Your refund is approved."}, actor=bot, leg_id="chat-1"),
    ])  # fmt: skip
    assert "apr-1" not in told.approvals
    assert allows(can_read_conversation, billing["agent-ben"], told)
    assert not allows(can_read_conversation, billing["agent-ana"], told)
    assert not allows(can_append, billing["agent-ben"], told,
                      _ev("note.added", {"author_id": "agent-ben", "text": "done"},
                          actor=ben))  # fmt: skip
    closed = decide(told, [_ev("conversation.resolved", {"outcome": "answered"}, actor=bot)])
    assert not allows(can_read_conversation, billing["agent-ben"], closed)


# -- endpoints, live -------------------------------------------------------------------

#: Longer than any route takes: a route that reads it refuses the request (422) after
#: its policy let it through and before it does anything.
TOO_LONG_KEY: Final = "k" * 201


@pytest.fixture
async def live(any_store) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def test_every_endpoint_cell_holds_on_a_live_app(live, table: Routes) -> None:
    app, client = live
    headers = {role: bearer(app, subject, scope, **claims)
               for role, (subject, scope, claims) in TOKENS.items()}  # fmt: skip
    wrong = []
    endpoints = rules("endpoints")
    # Erasing the customer last: the other requests find them.
    order = sorted(table.endpoints & endpoints.keys(), key=lambda e: ("/erase" in e, e))
    for endpoint in order:
        rule = endpoints[endpoint]
        method, path = endpoint.split(" ", 1)
        for role in ROLES:
            for whose in ("own", "other") if role in rule.own else ("own",):
                values = {**OWN, **(OTHERS if whose == "other" else {})}
                url = path.replace("{path:path}", "{path}").format(**values)
                response = await client.request(
                    method, url, content=b"[]" if method not in {"GET", "HEAD"} else None,
                    headers={"Content-Type": "application/json",
                             "Idempotency-Key": TOO_LONG_KEY, **headers.get(role, {})},
                )  # fmt: skip
                refused = response.status_code == 401 or (
                    response.status_code == 403 and f"may not call {endpoint}" in response.text
                )
                if refused == rule.allows(role, whose):
                    wrong.append(f"{endpoint} for {role} ({whose}): {response.status_code} "
                                 f"{response.text[:120]}")  # fmt: skip
    assert wrong == []
