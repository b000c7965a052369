"""The conversation state machine: legal transitions, refused ones, and what the state holds."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from threadline.core.conversation import (
    ABANDONED,
    AWAITING_HUMAN,
    BOT_ACTIVE,
    RECENT_INTENTS,
    RESOLVED,
    SUMMARY_LINES,
    WAITING_ON_CUSTOMER,
    WITH_HUMAN,
    ConversationState,
    Policy,
    decide,
    evolve,
    initial,
)
from threadline.core.errors import DomainError, IllegalTransition
from threadline.core.events import Actor, Event, EventCodec
from threadline.engine.conversations import Conversations
from threadline.store.sqlite import SQLiteStore, open_sqlite

CID = "conv-1"
T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
CODEC = EventCodec()
MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ROUTER = Actor("system", "router")
ANA = Actor("human", "ana")


def ev(
    type_: str, payload: dict[str, Any], minute: float = 0, actor: Actor = BOT, **kw: Any
) -> Event:
    """An event as the engine decides on it: validated and in its current shape."""
    event = Event(
        CID, type_, payload, actor=actor, occurred_at=T0 + timedelta(minutes=minute), **kw
    )
    return CODEC.decode(CODEC.encode(event))


def started(origin: str = "chat") -> Event:
    return ev("conversation.started", {"origin": origin}, customer_id="cus-maya", channel=origin)


def leg_started(leg_id: str = "chat-1", channel: str = "chat", minute: float = 0) -> Event:
    return ev("leg.started", {"leg_id": leg_id, "channel": channel}, minute, channel=channel)


def leg_ended(leg_id: str = "chat-1", minute: float = 0) -> Event:
    return ev("leg.ended", {"leg_id": leg_id, "reason": "hangup"}, minute)


def received(text: str = "where is my order 1042?", minute: float = 0) -> Event:
    return ev("message.received", {"text": text}, minute, actor=MAYA, channel="chat")


def sent(text: str = "Let me check that for you.", minute: float = 0) -> Event:
    return ev("message.sent", {"text": text}, minute, channel="chat")


def requested(queue: str = "billing", code: str = "customer_request") -> Event:
    return ev("handoff.requested", {"queue": queue, "reason_code": code, "skills": ["refunds"]})


def offered(offer_id: str = "offer-1", agent: str = "ana") -> Event:
    expires = (T0 + timedelta(minutes=5)).isoformat()
    payload = {"offer_id": offer_id, "agent_id": agent, "queue": "billing", "expires_at": expires}
    return ev("handoff.offered", payload, actor=ROUTER)


def accepted(offer_id: str = "offer-1", agent: str = "ana") -> Event:
    return ev("handoff.accepted", {"offer_id": offer_id, "agent_id": agent}, actor=ANA)


def declined(offer_id: str = "offer-1", agent: str = "ana") -> Event:
    return ev("handoff.declined", {"offer_id": offer_id, "agent_id": agent}, actor=ANA)


def returned(agent: str = "ana") -> Event:
    return ev("handoff.returned", {"agent_id": agent}, actor=Actor("human", agent))


def waiting(reason: str = "photo of the damage") -> Event:
    return ev("conversation.waiting", {"reason": reason})


def resolved(minute: float = 0, outcome: str = "refund_issued") -> Event:
    return ev("conversation.resolved", {"outcome": outcome}, minute)


def reopened(minute: float) -> Event:
    return ev("conversation.reopened", {"reason": "new contact"}, minute, actor=MAYA)


def abandoned(minute: float = 0) -> Event:
    return ev("conversation.abandoned", {"reason": "no reply"}, minute)


def intent(name: str, confidence: float = 0.9) -> Event:
    return ev("intent.detected", {"intent": name, "confidence": confidence}, channel="chat")


def slot(name: str, value: str) -> Event:
    return ev("slot.filled", {"name": name, "value": value}, channel="chat")


def action(type_: str, action_id: str, **payload: Any) -> Event:
    return ev(f"action.{type_}", {"action_id": action_id, **payload})


def consent(type_: str, purpose: str) -> Event:
    return ev(f"consent.{type_}", {"purpose": purpose}, actor=MAYA)


def after(*events: Event, policy: Policy | None = None) -> ConversationState:
    """The state after deciding ``events`` from scratch."""
    if policy is None:
        return decide(initial(CID), events)
    return decide(initial(CID), events, policy)


WITH_ANA = (started(), requested(), offered(), accepted())


# -- legal transitions -----------------------------------------------------------------


def test_a_new_conversation_has_no_status() -> None:
    state = initial(CID)
    assert state.status is None and state.seq == 0 and not state.is_open


def test_starting_puts_the_bot_in_charge() -> None:
    state = after(started("voice"))
    assert state.status == BOT_ACTIVE
    assert state.origin == "voice"
    assert state.opened_at == T0.isoformat()
    assert state.is_open


def test_a_handoff_request_waits_for_a_human() -> None:
    state = after(started(), requested("returns", "sensitive_intent"))
    assert state.status == AWAITING_HUMAN
    assert (state.queue, state.handoff_reason) == ("returns", "sensitive_intent")
    assert state.assignee is None


def test_an_offer_is_held_until_it_is_answered() -> None:
    state = after(started(), requested(), offered("offer-7", "ana"))
    assert state.status == AWAITING_HUMAN
    assert state.offer is not None
    assert (state.offer["offer_id"], state.offer["agent_id"]) == ("offer-7", "ana")


def test_accepting_the_offer_puts_the_human_in_charge() -> None:
    state = after(*WITH_ANA)
    assert state.status == WITH_HUMAN
    assert state.assignee == "ana"
    assert state.offer is None


def test_a_declined_offer_clears_the_way_for_another() -> None:
    state = after(started(), requested(), offered("offer-1", "ana"), declined("offer-1", "ana"))
    assert state.status == AWAITING_HUMAN and state.offer is None
    state = decide(state, [offered("offer-2", "raj"), accepted("offer-2", "raj")])
    assert state.assignee == "raj"


def test_resolving_closes_the_conversation_with_its_outcome() -> None:
    state = after(*WITH_ANA, resolved(minute=30))
    assert state.status == RESOLVED
    assert state.outcome == "refund_issued"
    assert state.closed_at == (T0 + timedelta(minutes=30)).isoformat()
    assert state.assignee is None
    assert not state.is_open


def test_the_bot_can_resolve_without_a_human() -> None:
    assert after(started(), resolved()).status == RESOLVED


def test_the_bot_can_wait_on_the_customer() -> None:
    assert after(started(), waiting()).status == WAITING_ON_CUSTOMER


def test_a_customer_message_resumes_the_bot_after_waiting() -> None:
    assert after(started(), waiting(), received()).status == BOT_ACTIVE


def test_a_customer_message_resumes_the_human_after_waiting() -> None:
    state = after(*WITH_ANA, waiting(), received())
    assert state.status == WITH_HUMAN
    assert state.assignee == "ana"


def test_a_message_to_the_customer_does_not_end_the_wait() -> None:
    assert after(started(), waiting(), sent("Any luck with the photo?")).status == (
        WAITING_ON_CUSTOMER
    )


def test_a_handoff_can_be_requested_while_waiting() -> None:
    assert after(started(), waiting(), requested()).status == AWAITING_HUMAN


def test_a_human_can_transfer_back_to_a_queue() -> None:
    state = after(*WITH_ANA, requested("returns", "transfer"))
    assert state.status == AWAITING_HUMAN
    assert state.assignee is None
    assert state.queue == "returns"


def test_returning_hands_the_conversation_back_to_the_bot() -> None:
    state = after(*WITH_ANA, returned("ana"))
    assert state.status == BOT_ACTIVE
    assert state.assignee is None
    assert state.queue is None


def test_abandoning_closes_the_conversation() -> None:
    state = after(started(), abandoned(minute=20))
    assert state.status == ABANDONED
    assert state.closed_at == (T0 + timedelta(minutes=20)).isoformat()
    assert not state.is_open


def test_reopening_within_the_window_puts_the_bot_back_in_charge() -> None:
    state = after(started(), resolved(minute=10), reopened(minute=10 + 60 * 24 * 6))
    assert state.status == BOT_ACTIVE
    assert state.closed_at is None and state.outcome is None


def test_reopening_at_the_edge_of_the_window_is_allowed() -> None:
    policy = Policy(reopen_window=timedelta(hours=1))
    state = after(started(), resolved(minute=0), reopened(minute=60), policy=policy)
    assert state.status == BOT_ACTIVE


def test_an_abandoned_conversation_can_be_reopened() -> None:
    assert after(started(), abandoned(minute=1), reopened(minute=5)).status == BOT_ACTIVE


def test_reopening_leaves_no_human_assigned() -> None:
    state = after(*WITH_ANA, abandoned(minute=1), reopened(minute=5))
    assert state.status == BOT_ACTIVE
    assert state.assignee is None


def test_decide_numbers_the_events_it_accepts() -> None:
    assert after(started(), received(), sent()).seq == 3


# -- refused transitions (pure) ------------------------------------------------------


def test_nothing_but_a_start_may_open_a_conversation() -> None:
    with pytest.raises(IllegalTransition, match="not started"):
        after(received())


def test_an_illegal_transition_is_a_domain_error_naming_event_and_status() -> None:
    with pytest.raises(DomainError) as caught:
        after(started(), resolved(), received())
    assert isinstance(caught.value, IllegalTransition)
    assert (caught.value.event_type, caught.value.status) == ("message.received", RESOLVED)


def test_the_default_reopen_window_is_seven_days() -> None:
    with pytest.raises(IllegalTransition, match="reopen window"):
        after(started(), resolved(minute=0), reopened(minute=60 * 24 * 7 + 1))


def test_a_conversation_that_was_never_closed_cannot_be_reopened() -> None:
    with pytest.raises(IllegalTransition):
        after(started(), reopened(minute=1))


def test_only_one_offer_may_be_open_at_a_time() -> None:
    with pytest.raises(IllegalTransition, match="already open"):
        after(started(), requested(), offered("offer-1", "ana"), offered("offer-2", "raj"))


def test_a_leg_cannot_start_twice() -> None:
    with pytest.raises(IllegalTransition, match="already started"):
        after(started(), leg_started("call-1", "voice"), leg_started("call-1", "voice"))


def test_a_human_cannot_return_a_conversation_the_bot_holds() -> None:
    with pytest.raises(IllegalTransition):
        after(started(), returned("ana"))


def test_a_closed_conversation_cannot_be_handed_off() -> None:
    with pytest.raises(IllegalTransition):
        after(started(), resolved(), requested())


# -- refused transitions write nothing (engine on SQLite) -------------------------------


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SQLiteStore]:
    store = await open_sqlite(tmp_path / "threadline.db")
    yield store
    await store.close()


@pytest.fixture
def conversations(store: SQLiteStore) -> Conversations:
    return Conversations(store, policy=Policy(reopen_window=timedelta(hours=1)))


async def refused(
    conversations: Conversations, history: list[Event], attempt: list[Event]
) -> IllegalTransition:
    """Record ``history``, then assert ``attempt`` is refused and the log is unchanged."""
    await conversations.record(CID, history)
    before = await conversations.store.read(CID)
    with pytest.raises(IllegalTransition) as caught:
        await conversations.record(CID, attempt)
    assert await conversations.store.read(CID) == before
    return caught.value


async def test_a_message_after_resolution_is_refused(conversations: Conversations) -> None:
    error = await refused(conversations, [started(), resolved()], [received()])
    assert error.status == RESOLVED


async def test_accepting_without_an_offer_is_refused(conversations: Conversations) -> None:
    error = await refused(conversations, [started(), requested()], [accepted()])
    assert "no such open offer" in str(error)


async def test_accepting_another_offer_than_the_open_one_is_refused(
    conversations: Conversations,
) -> None:
    history = [started(), requested(), offered("offer-1", "ana")]
    await refused(conversations, history, [accepted("offer-9", "ana")])


async def test_accepting_an_offer_made_to_another_agent_is_refused(
    conversations: Conversations,
) -> None:
    history = [started(), requested(), offered("offer-1", "ana")]
    error = await refused(conversations, history, [accepted("offer-1", "raj")])
    assert "another agent" in str(error)


async def test_declining_an_offer_made_to_another_agent_is_refused(
    conversations: Conversations,
) -> None:
    history = [started(), requested(), offered("offer-1", "ana")]
    await refused(conversations, history, [declined("offer-1", "raj")])


async def test_a_return_by_someone_other_than_the_assignee_is_refused(
    conversations: Conversations,
) -> None:
    error = await refused(conversations, list(WITH_ANA), [returned("raj")])
    assert "assignee" in str(error)


async def test_reopening_after_the_window_has_passed_is_refused(
    conversations: Conversations,
) -> None:
    history = [started(), resolved(minute=0)]
    error = await refused(conversations, history, [reopened(minute=61)])
    assert "reopen window" in str(error)


async def test_a_second_conversation_started_is_refused(conversations: Conversations) -> None:
    await refused(conversations, [started()], [started("voice")])


async def test_ending_a_leg_that_never_started_is_refused(conversations: Conversations) -> None:
    error = await refused(conversations, [started(), leg_started("chat-1")], [leg_ended("call-9")])
    assert "not live" in str(error)


async def test_ending_a_leg_twice_is_refused(conversations: Conversations) -> None:
    history = [started(), leg_started("chat-1"), leg_ended("chat-1")]
    await refused(conversations, history, [leg_ended("chat-1")])


async def test_one_illegal_event_refuses_the_whole_batch(conversations: Conversations) -> None:
    await refused(conversations, [started()], [received(), accepted()])


async def test_the_first_event_must_start_the_conversation(conversations: Conversations) -> None:
    with pytest.raises(IllegalTransition):
        await conversations.record(CID, [received()])
    assert await conversations.store.read(CID) == []


# -- legs --------------------------------------------------------------------------------


def test_a_started_leg_is_live() -> None:
    state = after(started("voice"), leg_started("call-1", "voice", minute=1))
    assert state.legs["call-1"] == {
        "channel": "voice",
        "started_at": (T0 + timedelta(minutes=1)).isoformat(),
        "ended_at": None,
    }
    assert set(state.live_legs) == {"call-1"}


def test_an_ended_leg_is_kept_but_no_longer_live() -> None:
    state = after(started(), leg_started("chat-1"), leg_ended("chat-1", minute=4))
    assert state.legs["chat-1"]["ended_at"] == (T0 + timedelta(minutes=4)).isoformat()
    assert state.live_legs == {}


def test_legs_on_several_channels_can_be_live_at_once() -> None:
    state = after(
        started("chat"),
        leg_started("chat-1", "chat"),
        leg_started("call-1", "voice"),
        leg_started("visit-1", "in_person"),
        leg_ended("chat-1"),
    )
    assert {leg["channel"] for leg in state.live_legs.values()} == {"voice", "in_person"}
    assert len(state.legs) == 3


def test_a_leg_can_end_after_the_conversation_is_resolved() -> None:
    state = after(started(), leg_started("call-1", "voice"), resolved(), leg_ended("call-1"))
    assert state.status == RESOLVED and state.live_legs == {}


# -- slots, intents, actions -------------------------------------------------------------


def test_a_filled_slot_holds_its_value_source_and_seq() -> None:
    state = after(started(), slot("order_number", "1042"))
    assert state.slots == {"order_number": {"value": "1042", "source": "customer", "seq": 2}}


def test_refilling_a_slot_keeps_the_latest_value() -> None:
    state = after(started(), slot("order_number", "1042"), slot("order_number", "1043"))
    assert state.slots["order_number"]["value"] == "1043"


def test_intents_are_kept_in_order_with_confidence_and_seq() -> None:
    state = after(started(), intent("order_status", 0.91), intent("refund", 0.55))
    assert list(state.intents) == [
        {"intent": "order_status", "confidence": 0.91, "seq": 2},
        {"intent": "refund", "confidence": 0.55, "seq": 3},
    ]


def test_only_the_most_recent_intents_are_kept() -> None:
    state = after(started(), *(intent(f"intent_{i}") for i in range(RECENT_INTENTS + 5)))
    assert len(state.intents) == RECENT_INTENTS
    assert state.intents[0]["intent"] == "intent_5"
    assert state.intents[-1]["intent"] == f"intent_{RECENT_INTENTS + 4}"


def test_a_requested_action_is_pending_until_it_completes() -> None:
    state = after(started(), action("requested", "a-1", tool="lookup_order"))
    assert state.pending_actions == {"a-1": {"tool": "lookup_order", "seq": 2}}
    state = decide(state, [action("completed", "a-1", result={"status": "shipped"})])
    assert state.pending_actions == {}
    assert state.actions_done == 1


def test_a_failed_action_is_no_longer_pending_and_is_counted() -> None:
    state = after(
        started(),
        action("requested", "a-1", tool="issue_refund"),
        action("requested", "a-2", tool="lookup_order"),
        action("failed", "a-1", error="payment gateway timeout", retryable=True),
    )
    assert set(state.pending_actions) == {"a-2"}
    assert (state.actions_done, state.actions_failed) == (0, 1)


def test_messages_are_counted_in_each_direction() -> None:
    state = after(started(), received(), sent(), received(), sent(), sent())
    assert (state.messages_in, state.messages_out) == (2, 3)


# -- consent, identity, envelope ------------------------------------------------------------


def test_granted_consent_is_recorded_per_purpose() -> None:
    state = after(started(), consent("granted", "recording"), consent("granted", "marketing"))
    assert state.consent == {"recording": True, "marketing": True}


def test_revoking_consent_withdraws_only_that_purpose() -> None:
    state = after(
        started(),
        consent("granted", "recording"),
        consent("granted", "marketing"),
        consent("revoked", "marketing"),
    )
    assert state.consent == {"recording": True, "marketing": False}


def test_consent_can_be_revoked_after_the_conversation_is_closed() -> None:
    state = after(started(), consent("granted", "recording"), resolved())
    state = decide(state, [consent("revoked", "recording")])
    assert state.consent == {"recording": False}


def test_a_verified_identity_stays_verified_when_linked_again_unverified() -> None:
    phone = {"kind": "phone", "value": "+14155550100"}
    state = after(
        started(),
        ev("identity.linked", {**phone, "verified": True, "method": "otp"}),
        ev("identity.linked", phone),
        ev("identity.linked", {"kind": "email", "value": "maya@example.com"}),
    )
    assert state.identities == {"phone": True, "email": False}


def test_a_new_callers_id_claim_does_not_inherit_earlier_verification() -> None:
    phone = {"kind": "phone", "value": "+14155550123"}
    state = after(
        started("voice"),
        ev("identity.linked", {**phone, "method": "caller_id"}),
        ev("identity.linked", {**phone, "verified": True, "method": "postcode"}),
        ev("identity.linked", {"kind": "email", "value": "m@example.com", "verified": True}),
    )
    assert state.identities == {"phone": True, "email": True}
    # A second call from the same number: whoever is on the line has proved nothing yet.
    state = decide(state, [ev("identity.linked", {**phone, "method": "caller_id"})])
    assert state.identities == {"phone": False, "email": False}
    state = decide(
        state, [ev("identity.linked", {**phone, "verified": True, "method": "postcode"})]
    )
    assert state.identities == {"phone": True, "email": False}


def test_a_callers_id_claim_marks_where_the_new_contact_begins() -> None:
    phone = {"kind": "phone", "value": "+14155550123"}
    postcode = {"name": "postcode", "value": "94103", "source": "customer"}
    state = after(started(), ev("slot.filled", postcode))
    assert state.contact_seq == 0
    state = decide(state, [ev("identity.linked", {**phone, "method": "caller_id"})])
    assert state.contact_seq == state.seq > state.slots["postcode"]["seq"]
    # Proofs and claims that come with no new contact leave it where it was.
    claim_seq = state.seq
    state = decide(state, [ev("identity.linked", {**phone, "verified": True, "method": "postcode"}),
                           ev("identity.linked", {"kind": "email", "value": "m@example.com",
                                                  "method": "typed"})])  # fmt: skip
    assert state.contact_seq == claim_seq
    restored = ConversationState.from_bytes(state.to_bytes())
    assert restored.contact_seq == claim_seq


def test_the_customer_and_correlation_come_from_the_first_event_that_has_them() -> None:
    state = after(started(), received())
    assert state.customer_id == "cus-maya"
    assert state.correlation_id == CID


# -- summary -------------------------------------------------------------------------------


def test_the_summary_tells_the_story_for_the_handoff_packet() -> None:
    state = after(
        started("voice"),
        leg_started("call-1", "voice"),
        intent("refund", 0.42),
        slot("order_number", "1042"),
        action("requested", "a-1", tool="issue_refund"),
        action("failed", "a-1", error="gateway timeout"),
        requested("billing", "tool_failure"),
        offered(),
        accepted(),
        ev("note.added", {"author_id": "ana", "text": "VIP, be gentle"}, actor=ANA),
        resolved(outcome="refund_issued"),
    )
    assert list(state.summary) == [
        "started on voice",
        "voice leg started",
        "intent refund (0.42) on chat",
        "order_number = 1042 (chat)",
        "issue_refund failed: gateway timeout",
        "handoff to billing: tool_failure",
        "accepted by ana",
        "note by ana",
        "resolved: refund_issued",
    ]


def test_the_summary_keeps_only_the_latest_lines() -> None:
    state = after(started(), *(slot(f"s{i}", str(i)) for i in range(SUMMARY_LINES + 10)))
    assert len(state.summary) == SUMMARY_LINES
    assert state.summary[-1] == f"s{SUMMARY_LINES + 9} = {SUMMARY_LINES + 9} (chat)"


def test_evolve_is_replace_without_the_checks() -> None:
    state = initial(CID)
    changed = evolve(state, seq=7, updated_at="2025-03-04T09:00:00+00:00", summary=("a",))
    assert changed == dataclasses.replace(
        state, seq=7, updated_at="2025-03-04T09:00:00+00:00", summary=("a",)
    )
    assert state == initial(CID)  # the source is untouched
    with pytest.raises(TypeError):
        evolve(state, sequence=7)
