"""The policy engine: versioned policy files, validated, decided by Cedar, failing closed."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from tests.test_authz_matrix import PRINCIPALS, SCENES, STATES, TABLE, event_for
from threadline.core.catalogue import CATALOGUE
from threadline.security.authz import (
    conversation_entity,
    event_context,
    principal_entity,
)
from threadline.security.policy import (
    ENGINE,
    FAILED,
    POLICIES,
    POLICY_VERSION,
    SCHEMA_FILE,
    Entity,
    PolicyEngine,
    Request,
    policy_files,
    problems,
    render,
    version_of,
)

ADMIN = Entity("Admin", "root", {"subject": "root"})


def _policies_and_schema() -> tuple[str, str]:
    files = policy_files()
    return "\n".join(text for name, text in files if name != SCHEMA_FILE), files[-1][1]


def _requests() -> list[Request]:
    """A request for every cell of the matrix: each role's events and reads in its states."""
    found = []
    for role, states in STATES.items():
        who = PRINCIPALS[role]
        assert who is not None
        entity = principal_entity(who)
        assert entity is not None
        for state in states:
            scene = SCENES[state]
            found.append(Request(entity, "read", conversation_entity(scene)))
            for type_ in TABLE["events"]:
                event = event_for(role, type_, state)
                found.append(Request(entity, type_, conversation_entity(scene),
                                     event_context(scene, event)))  # fmt: skip
    return found


# -- the files ------------------------------------------------------------------------------


def test_the_policies_validate_against_the_schema() -> None:
    assert problems() == []


@pytest.mark.parametrize(
    ("typo", "fixed"),
    [
        ('Threadline::Action::"mesage.received"', 'Threadline::Action::"message.received"'),
        ("context.payload.verfied", "context.payload.verified"),
        ("principal.queus", "principal.queues"),
        ("Threadline::Agnt", "Threadline::Agent"),
    ],
)
def test_a_typo_in_a_policy_fails_validation(typo: str, fixed: str) -> None:
    policies, schema = _policies_and_schema()
    assert fixed in policies
    import cedarpy

    assert not cedarpy.validate_policies(policies.replace(fixed, typo, 1), schema).validation_passed


def test_the_version_is_a_digest_of_the_policy_files() -> None:
    files = policy_files()
    assert re.fullmatch(r"authz-[0-9a-f]{12}", POLICY_VERSION)
    assert POLICY_VERSION == version_of(files) == ENGINE.version
    assert [name for name, _ in files][-1] == SCHEMA_FILE
    changed = [
        (name, text + "\n// changed" if name == files[0][0] else text) for name, text in files
    ]
    assert version_of(changed) != POLICY_VERSION


def test_every_policy_has_an_id_and_every_forbid_a_reason() -> None:
    policies, _ = _policies_and_schema()
    note = r'@\w+\("(?:[^"\\]|\\.)*"\)\s*'
    for found in re.finditer(rf"((?:{note})*)(permit|forbid)\s*\(", policies):
        notes, effect = found.group(1), found.group(2)
        assert "@id(" in notes, found.group(0)
        if effect == "forbid":
            assert "@reason(" in notes, notes


def test_the_schema_has_an_append_action_for_every_event_type_and_no_other() -> None:
    schema = (POLICIES / SCHEMA_FILE).read_text()
    block = schema[schema.index('action "append";') : schema.index('in ["append"]')]
    declared = set(re.findall(r'"([a-z_]+\.[a-z_]+)"', block))
    assert declared == {spec.type for spec in CATALOGUE}


def test_the_audit_trail_records_decisions_under_this_version() -> None:
    from threadline.audit import POLICY_VERSION as AUDITED

    assert AUDITED == POLICY_VERSION


# -- deciding -----------------------------------------------------------------------------


def test_a_permit_names_itself_and_a_refusal_its_first_forbid() -> None:
    agent = principal_entity(PRINCIPALS["agent"])  # type: ignore[arg-type]
    assert agent is not None
    allowed = ENGINE.decide(Request(agent, "read", conversation_entity(SCENES["assigned"])))
    assert allowed.allowed and allowed.policies == ("agent.conversations",) and not allowed.reason
    reply = event_for("agent", "message.sent", "closed")
    closed = SCENES["closed"]
    refused = ENGINE.decide(Request(agent, "message.sent", conversation_entity(closed),
                                    event_context(closed, reply)))  # fmt: skip
    assert not refused.allowed
    assert refused.policies == ("agent.assignees-work.unassigned", "agent.within-reach")
    assert (
        refused.reason
        == "message.sent is the assignee's: conversation conv-m is not assigned to them"
    )
    assert refused.version == POLICY_VERSION


def test_a_refusal_no_policy_applies_to_says_what_was_refused() -> None:
    kiosk = principal_entity(PRINCIPALS["kiosk"])  # type: ignore[arg-type]
    assert kiosk is not None
    refused = ENGINE.decide(Request(kiosk, "read", conversation_entity(SCENES["any"])))
    assert (refused.allowed, refused.policies, refused.reason) == (
        False, (), "may not read conversations")  # fmt: skip


def test_a_request_cedar_cannot_evaluate_is_refused_and_logged_without_its_data() -> None:
    broken = Entity("Conversation", "conv-x", {"id": "conv-x", "system": "no"})  # not a bool
    with capture_logs() as logs:
        decision = PolicyEngine.load().decide(Request(ADMIN, "read", broken))
    assert (decision.allowed, decision.reason) == (False, FAILED)
    (entry,) = [e for e in logs if e["event"] == "authorization failed closed"]
    assert entry["action"] == "read" and entry["resource_type"] == "Conversation"
    assert "conv-x" not in repr(entry)


def test_an_action_the_schema_does_not_know_is_refused_even_to_an_admin() -> None:
    scene = SCENES["any"]
    with capture_logs():
        decision = ENGINE.decide(Request(ADMIN, "message.shouted", conversation_entity(scene),
                                         {"conversation": "conv-m"}))  # fmt: skip
    assert not decision.allowed


def test_the_same_request_is_answered_from_the_cache_and_any_change_is_decided_again() -> None:
    engine = PolicyEngine.load()
    request = _requests()[3]
    first = engine.decide(request)
    assert (engine.hits, engine.misses) == (0, 1)
    assert engine.decide(replace(request)) == first
    assert (engine.hits, engine.misses) == (1, 1)
    moved = replace(request, resource=replace(request.resource, attrs={
        **request.resource.attrs, "status": "resolved"}))  # fmt: skip
    engine.decide(moved)
    assert (engine.hits, engine.misses) == (1, 2)


def test_the_cache_is_bounded() -> None:
    engine = PolicyEngine.load(cache_size=5)
    for request in _requests()[:20]:
        engine.decide(request)
    assert engine.cached == 5


def test_requests_decided_together_are_decided_as_alone() -> None:
    requests = _requests()
    alone = PolicyEngine.load(cache_size=0)
    together = PolicyEngine.load(cache_size=0).decide_all(requests)
    assert together == [alone.decide(r) for r in requests]


def test_the_partitioned_policies_decide_as_the_whole_set() -> None:
    requests = _requests()
    whole = PolicyEngine.load(partition=False).decide_all(requests)
    assert PolicyEngine.load().decide_all(requests) == whole


def test_every_request_the_service_builds_fits_the_schema() -> None:
    """Entities and contexts are validated against the schema as Cedar decides them; any
    misfit would refuse (fail closed) and log, which none of the matrix's requests does."""
    with capture_logs() as logs:
        PolicyEngine.load().decide_all(_requests())
    assert [e for e in logs if e["event"] == "authorization failed closed"] == []


# -- reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{action} on {resource}", "message.sent on conv-m"),
        ("in {resource.queue}, not in {principal.queues}", "in orders, not in billing, orders"),
        ("{principal.channels|/}", "chat/voice"),
        ("{principal.missing} and {context.leg.id}", "none and chat-1"),
        ("{principal.empty|, |no queues}", "no queues"),
    ],
)
def test_a_reason_is_rendered_from_the_request(template: str, said: str) -> None:
    request = Request(
        Entity("Agent", "ana", {"queues": ["orders", "billing"], "channels": ["voice", "chat"],
                                "empty": []}),
        "message.sent",
        Entity("Conversation", "conv-m", {"queue": "orders"}),
        {"leg": {"id": "chat-1"}},
    )  # fmt: skip
    assert render(template, request) == said
