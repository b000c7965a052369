"""Authorization rules: each kind of principal, what it may do, and what it may not."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from threadline.core.conversation import ConversationState, decide, initial
from threadline.core.events import Actor, Event, utcnow
from threadline.security import (
    Forbidden,
    Principal,
    allows,
    can_append,
    can_manage_tokens,
    can_read_conversation,
    can_read_queue,
    revocation,
)
from threadline.security.authz import conversation_entity, event_context, principal_entity
from threadline.security.policy import ENGINE, Decision, Request
from threadline.security.principal import ADAPTER_SCOPES

CID = "conv-1"
MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")
ROUTER = Actor("system", "router")
ANA_ACTOR = Actor("human", "agent-ana")
PRIYA_ACTOR = Actor("human", "assoc-priya")


def ev(type_: str, payload: dict[str, Any], channel: str = "chat", actor: Actor = MAYA,
       conversation_id: str = CID, **envelope: Any) -> Event:  # fmt: skip
    return Event(conversation_id, type_, payload, channel=channel, actor=actor,
                 customer_id=envelope.pop("customer_id", "cus-maya"), **envelope)  # fmt: skip


def said(text: str = "where is order 1042?", **kw: Any) -> Event:
    return ev("message.received", {"text": text}, **kw)


def reply(actor: Actor = ANA_ACTOR, channel: str = "chat") -> Event:
    return ev("message.sent", {"text": "On it"}, channel=channel, actor=actor)


def offer(agent: str) -> Event:
    expires = (utcnow() + timedelta(minutes=1)).isoformat()
    return ev("handoff.offered", {"offer_id": f"o-{agent}", "agent_id": agent, "queue": "orders",
              "expires_at": expires}, actor=ROUTER)  # fmt: skip


def accept(agent: str, actor: Actor | None = None) -> Event:
    return ev("handoff.accepted", {"offer_id": f"o-{agent}", "agent_id": agent},
              actor=actor or Actor("human", agent))  # fmt: skip


CHATTING = decide(initial(CID), [
    ev("conversation.started", {"origin": "chat"}),
    ev("leg.started", {"leg_id": "chat-1", "channel": "chat"}, leg_id="chat-1"),
    said(leg_id="chat-1"),
])  # fmt: skip
IN_ORDERS = decide(CHATTING, [
    ev("handoff.requested", {"queue": "orders", "reason_code": "customer_request"}, actor=BOT),
])  # fmt: skip
OFFERED_TO_BEN = decide(IN_ORDERS, [offer("agent-ben")])
WITH_ANA = decide(IN_ORDERS, [offer("agent-ana"), accept("agent-ana")])
RETURNED = decide(WITH_ANA, [ev("handoff.returned", {"agent_id": "agent-ana"}, actor=ANA_ACTOR)])
IN_REPAIRS_WITH_ANA = replace(WITH_ANA, queue="repairs")
NO_CUSTOMER = decide(initial("conv-2"), [
    ev("conversation.started", {"origin": "voice"}, channel="voice", actor=ROUTER,
       conversation_id="conv-2", customer_id=None),
])  # fmt: skip
SYSTEM_TOKENS = initial("system:tokens")


def principal(kind: str, subject: str, *scopes: str, **bindings: Any) -> Principal:
    now = utcnow()
    return Principal(subject=subject, kind=kind, scopes=frozenset(scopes or {kind}),  # type: ignore[arg-type]
                     token_id=f"jti-{subject}", issued_at=now,
                     expires_at=now + timedelta(hours=1), **bindings)  # fmt: skip


MAYA_P = principal("customer", "cus-maya", customer_id="cus-maya")
MAYA_IN_CONV_1 = principal("customer", "cus-maya", customer_id="cus-maya", conversation_id=CID)
MAYA_IN_CONV_9 = principal("customer", "cus-maya", customer_id="cus-maya", conversation_id="c-9")
OMAR_P = principal("customer", "cus-omar", customer_id="cus-omar")
CHAT = principal("adapter", "chat-adapter", "adapter:chat")
VOICE = principal("adapter", "voice-adapter", "adapter:voice")
IN_PERSON = principal("adapter", "in_person-adapter", "adapter:in_person")
ANA = principal("agent", "agent-ana", queues=frozenset({"orders", "billing"}))
BEN = principal("agent", "agent-ben", queues=frozenset({"repairs", "billing"}))
SAM = principal("supervisor", "sup-sam")
ROOT = principal("admin", "root")
EVERYONE = [MAYA_P, CHAT, VOICE, IN_PERSON, ANA, BEN, SAM, ROOT]


def refusal(check: Any, *args: Any) -> str:
    with pytest.raises(Forbidden) as caught:
        check(*args)
    return caught.value.reason


# -- customers -------------------------------------------------------------------------


def test_a_customer_reads_their_own_conversation() -> None:
    assert allows(can_read_conversation, MAYA_P, CHATTING)
    assert allows(can_read_conversation, MAYA_IN_CONV_1, CHATTING)


def test_a_customer_may_not_read_another_customers_conversation() -> None:
    assert refusal(can_read_conversation, OMAR_P, CHATTING) == (
        "customer cus-omar: conversation conv-1 is not theirs"
    )


def test_a_customer_token_bound_to_one_conversation_reads_no_other() -> None:
    assert "bound to conversation c-9" in refusal(can_read_conversation, MAYA_IN_CONV_9, CHATTING)


def test_a_customer_may_not_read_a_conversation_without_a_customer() -> None:
    assert not allows(can_read_conversation, MAYA_P, NO_CUSTOMER)


def test_a_customer_sends_messages_as_themselves_to_their_conversation() -> None:
    assert allows(can_append, MAYA_P, CHATTING, said())
    assert allows(can_append, MAYA_IN_CONV_1, WITH_ANA, said(channel="voice"))


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (reply(MAYA), "may only send messages, not message.sent"),
        (ev("handoff.requested", {"queue": "billing", "reason_code": "other"}), "not handoff"),
        (said(actor=Actor("customer", "cus-omar")), "only write as themselves"),
        (said(actor=ANA_ACTOR), "only write as themselves"),
        (said(customer_id="cus-omar"), "must name the customer of the token"),
        (said(channel="system"), "not write on the system channel"),
    ],
)
def test_a_customer_may_not_write_anything_else(event: Event, reason: str) -> None:
    assert reason in refusal(can_append, MAYA_P, CHATTING, event)


def test_a_customer_may_not_write_to_another_customers_conversation() -> None:
    omars_message = said(actor=Actor("customer", "cus-omar"), customer_id="cus-omar")
    assert "not theirs" in refusal(can_append, OMAR_P, CHATTING, omars_message)


def test_a_customer_may_not_start_a_conversation() -> None:
    started = ev("conversation.started", {"origin": "chat"}, conversation_id="new")
    assert not allows(can_append, MAYA_P, initial("new"), started)


# -- channel adapters --------------------------------------------------------------------


def test_an_adapter_starts_a_conversation_on_its_channel() -> None:
    events = [
        ev("conversation.started", {"origin": "chat"}, conversation_id="new"),
        ev("leg.started", {"leg_id": "c-1", "channel": "chat"}, conversation_id="new"),
    ]
    for event in events:
        assert allows(can_append, CHAT, initial("new"), event)


def test_an_adapter_writes_customer_messages_and_bot_replies_on_its_channel() -> None:
    assert allows(can_append, CHAT, CHATTING, said())
    assert allows(can_append, CHAT, CHATTING, reply(BOT))


def test_the_voice_adapter_joins_a_chat_conversation_with_a_voice_leg() -> None:
    call = ev("leg.started", {"leg_id": "call-1", "channel": "voice"}, channel="voice")
    assert allows(can_append, VOICE, CHATTING, call)


def test_the_in_person_adapter_writes_an_associates_note_and_resolution() -> None:
    arrived = ev("leg.started", {"leg_id": "v-1", "channel": "in_person"},
                 channel="in_person", actor=PRIYA_ACTOR, leg_id="v-1")  # fmt: skip
    visit = decide(WITH_ANA, [arrived])
    note = ev("note.added", {"author_id": "assoc-priya", "text": "Laptop handed over"},
              channel="in_person", actor=PRIYA_ACTOR, leg_id="v-1")  # fmt: skip
    resolved = ev("conversation.resolved", {"outcome": "replacement_collected"},
                  channel="in_person", actor=PRIYA_ACTOR)  # fmt: skip
    assert allows(can_append, IN_PERSON, visit, note)
    assert allows(can_append, IN_PERSON, visit, resolved)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (said(channel="voice"), "may write only chat events, not voice"),
        (ev("leg.started", {"leg_id": "call-1", "channel": "voice"}), "names channel voice"),
        (ev("conversation.started", {"origin": "voice"}), "names channel voice"),
        (accept("agent-ana"), "may not write handoff.accepted"),
        (ev("intent.detected", {"intent": "refund", "confidence": 0.9}, actor=BOT), "intent"),
        (revocation("t", reason="r", revoked_by="x", expires_at=utcnow()), "system"),
    ],
)
def test_an_adapter_may_not_write_outside_its_channel_or_role(event: Event, reason: str) -> None:
    state = CHATTING if event.conversation_id == CID else initial(event.conversation_id)
    assert reason in refusal(can_append, CHAT, state, event)


def test_an_adapter_may_not_end_a_leg_of_another_channel() -> None:
    on_call = decide(CHATTING, [ev("leg.started", {"leg_id": "call-1", "channel": "voice"},
                                   channel="voice")])  # fmt: skip
    end_call = ev("leg.ended", {"leg_id": "call-1"}, channel="chat")
    assert "call-1 is a voice leg" in refusal(can_append, CHAT, on_call, end_call)
    stray = ev("message.received", {"text": "hi"}, channel="chat", leg_id="call-1")
    assert not allows(can_append, CHAT, on_call, stray)


def test_an_adapter_reads_conversations_with_a_leg_on_its_channel_only() -> None:
    assert allows(can_read_conversation, CHAT, CHATTING)
    assert "has no voice leg" in refusal(can_read_conversation, VOICE, CHATTING)
    assert allows(can_read_conversation, VOICE, NO_CUSTOMER)


def test_every_adapter_scope_names_a_canonical_channel() -> None:
    assert set(ADAPTER_SCOPES.values()) == {"chat", "voice", "in_person"}


# -- human agents --------------------------------------------------------------------------


def test_an_agent_reads_conversations_in_their_queues() -> None:
    assert allows(can_read_conversation, ANA, IN_ORDERS)


def test_an_agent_may_not_read_a_conversation_of_another_queue() -> None:
    assert refusal(can_read_conversation, BEN, IN_ORDERS) == (
        "agent agent-ben: conversation conv-1 is awaiting_human in queue orders, not waiting in"
        " billing, repairs, and not assigned or offered to them"
    )


def test_an_agent_reads_their_queue_only_while_the_conversation_waits_in_it() -> None:
    ben_in_orders = replace(BEN, queues=frozenset({"orders"}))
    resolved = decide(WITH_ANA, [ev("conversation.resolved", {"outcome": "answered"},
                                    actor=ANA_ACTOR)])  # fmt: skip
    assert allows(can_read_conversation, ben_in_orders, IN_ORDERS)
    assert "is with_human in queue orders" in refusal(
        can_read_conversation, ben_in_orders, WITH_ANA
    )  # a colleague holds it
    assert not allows(can_read_conversation, ben_in_orders, resolved)
    assert not allows(can_read_conversation, ben_in_orders, RETURNED)  # back with the bot
    note = ev("note.added", {"author_id": "agent-ben", "text": "hi"},
              actor=Actor("human", "agent-ben"))  # fmt: skip
    assert not allows(can_append, ben_in_orders, WITH_ANA, note)


def test_an_agent_reads_a_conversation_offered_or_assigned_to_them_in_any_queue() -> None:
    assert allows(can_read_conversation, BEN, OFFERED_TO_BEN)
    assert allows(can_read_conversation, ANA, IN_REPAIRS_WITH_ANA)
    assert not allows(can_read_conversation, ANA, replace(OFFERED_TO_BEN, queue="repairs"))


def test_an_agent_loses_a_conversation_handed_back_to_the_bot() -> None:
    assert not allows(can_read_conversation, ANA, RETURNED)


def test_an_agent_works_a_conversation_they_hold_as_themselves() -> None:
    assert allows(can_append, ANA, IN_REPAIRS_WITH_ANA, reply())
    assert allows(can_append, BEN, OFFERED_TO_BEN, accept("agent-ben"))
    note = ev("note.added", {"author_id": "agent-ana", "text": "held"}, actor=ANA_ACTOR)
    assert allows(can_append, ANA, WITH_ANA, note)
    back = ev("handoff.returned", {"agent_id": "agent-ana"}, actor=ANA_ACTOR)
    assert allows(can_append, ANA, WITH_ANA, back)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (reply(Actor("human", "agent-ben")), "may only write as themselves"),
        (reply(BOT), "may only write as themselves"),
        (accept("agent-ben", actor=ANA_ACTOR), "must name them as agent_id"),
        (ev("note.added", {"author_id": "sup-sam", "text": "x"}, actor=ANA_ACTOR), "author_id"),
        (said(actor=ANA_ACTOR), "agents may not write message.received"),
        (offer("agent-ana"), "agents may not write handoff.offered"),
    ],
)
def test_an_agent_may_not_impersonate_or_step_outside_their_role(event: Event, reason: str) -> None:
    assert reason in refusal(can_append, ANA, WITH_ANA, event)


def test_an_agent_may_not_write_to_a_conversation_outside_their_queues() -> None:
    note = ev("note.added", {"author_id": "agent-ben", "text": "hi"},
              actor=Actor("human", "agent-ben"))  # fmt: skip
    assert "not waiting in billing, repairs" in refusal(can_append, BEN, IN_ORDERS, note)
    assert "is the assignee's" in refusal(can_append, BEN, WITH_ANA,
                                          reply(Actor("human", "agent-ben")))  # fmt: skip


def test_an_agent_sees_their_queues_only() -> None:
    assert allows(can_read_queue, ANA, "orders")
    assert refusal(can_read_queue, ANA, "repairs") == "agent agent-ana: may not see queue repairs"


# -- supervisors and admins ------------------------------------------------------------------


def test_a_supervisor_reads_every_conversation_and_queue() -> None:
    for state in (CHATTING, IN_ORDERS, WITH_ANA, RETURNED, NO_CUSTOMER):
        assert allows(can_read_conversation, SAM, state)
    assert allows(can_read_queue, SAM, "repairs")


def test_a_supervisor_intervenes_as_themselves_in_any_conversation() -> None:
    sam = Actor("human", "sup-sam")
    reassign = replace(offer("agent-ben"), actor=sam)
    assert allows(can_append, SAM, IN_ORDERS, reassign)
    back = ev("handoff.returned", {"agent_id": "agent-ana"}, actor=sam)
    assert allows(can_append, SAM, IN_REPAIRS_WITH_ANA, back)
    assert allows(can_append, SAM, WITH_ANA, reply(sam))


def test_a_supervisor_may_not_write_as_someone_else_or_as_the_customer() -> None:
    assert "only write as themselves" in refusal(can_append, SAM, WITH_ANA, reply(ANA_ACTOR))
    assert "may not write message.received" in refusal(can_append, SAM, WITH_ANA, said())


def test_an_admin_may_do_everything() -> None:
    tokens_event = revocation("t", reason="r", revoked_by="root", expires_at=utcnow())
    assert allows(can_append, ROOT, SYSTEM_TOKENS, tokens_event)
    assert allows(can_read_conversation, ROOT, SYSTEM_TOKENS)
    assert allows(can_append, ROOT, WITH_ANA, said(actor=Actor("customer", "cus-omar")))
    assert allows(can_read_queue, ROOT, "anything")
    assert allows(can_manage_tokens, ROOT)


@pytest.mark.parametrize("who", [p for p in EVERYONE if p.kind != "admin"], ids=lambda p: p.subject)
def test_only_admins_manage_tokens_and_use_system_streams(who: Principal) -> None:
    assert refusal(can_manage_tokens, who).endswith("only admins manage tokens")
    assert "system stream" in refusal(can_read_conversation, who, SYSTEM_TOKENS)
    event = revocation("t", reason="r", revoked_by=who.subject, expires_at=utcnow())
    assert "system stream" in refusal(can_append, who, SYSTEM_TOKENS, event)


# -- deny by default ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", EVERYONE, ids=lambda p: p.subject)
def test_an_event_for_another_conversation_is_refused_to_everyone(who: Principal) -> None:
    assert "is for conversation conv-2, not conv-1" in refusal(
        can_append, who, CHATTING, said(conversation_id="conv-2")
    )


def test_an_unknown_kind_of_principal_may_do_nothing() -> None:
    robot = principal("robot", "r2", "admin")
    assert refusal(can_read_conversation, robot, CHATTING) == "robot r2: may not read conversations"
    assert refusal(can_append, robot, CHATTING, said()) == "robot r2: may not append events"
    assert not allows(can_read_queue, robot, "orders")
    assert not allows(can_manage_tokens, robot)


@pytest.mark.parametrize("who", [MAYA_P, CHAT, ANA], ids=lambda p: p.subject)
def test_principals_outside_the_staff_see_no_queue_they_do_not_hold(who: Principal) -> None:
    assert not allows(can_read_queue, who, "repairs")


def test_the_states_used_here_are_what_the_fold_says() -> None:
    def where(state: ConversationState) -> tuple[Any, ...]:
        return state.status, state.queue, state.assignee, (state.offer or {}).get("agent_id")

    assert where(CHATTING) == ("bot_active", None, None, None)
    assert where(IN_ORDERS) == ("awaiting_human", "orders", None, None)
    assert where(OFFERED_TO_BEN) == ("awaiting_human", "orders", None, "agent-ben")
    assert where(WITH_ANA) == ("with_human", "orders", "agent-ana", None)
    assert where(RETURNED) == ("bot_active", None, None, None)


# -- decisions kept on the chat path ------------------------------------------------------


STATES = [CHATTING, IN_ORDERS, OFFERED_TO_BEN, WITH_ANA, RETURNED, IN_REPAIRS_WITH_ANA,
          NO_CUSTOMER]  # fmt: skip
EVENTS = [said(), said(leg_id="chat-1"), reply(), reply(BOT), accept("agent-ana"),
          ev("consent.granted", {"purpose": "ai_processing"}, actor=ANA_ACTOR)]  # fmt: skip


def test_kept_decisions_are_the_engines_on_the_same_facts_only() -> None:
    # Every check twice (the second answered from what was kept), each against Cedar on
    # a request built afresh: a kept decision never answers a state or event that differs.
    for _ in range(2):
        for who in [*EVERYONE, MAYA_IN_CONV_1, MAYA_IN_CONV_9, OMAR_P]:
            entity = principal_entity(who)
            assert entity is not None
            for state in STATES:
                fresh = ENGINE.decide(Request(entity, "read", conversation_entity(state)))
                assert allows(can_read_conversation, who, state) == fresh.allowed
                for event in EVENTS:
                    request = Request(entity, event.type, conversation_entity(state),
                                      event_context(state, event))  # fmt: skip
                    assert allows(can_append, who, state, event) == ENGINE.decide(request).allowed


def test_kept_decisions_go_when_the_engine_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert allows(can_append, CHAT, CHATTING, said())
    assert allows(can_read_conversation, ANA, WITH_ANA)
    refuse = lambda requests: [Decision(False, (), ENGINE.version, "no") for _ in requests]  # noqa: E731
    monkeypatch.setattr(ENGINE, "decide_all", refuse)
    assert allows(can_append, CHAT, CHATTING, said())  # kept: the engine is not asked
    ENGINE.forget()  # the policies changed
    assert not allows(can_append, CHAT, CHATTING, said())
    assert not allows(can_read_conversation, ANA, WITH_ANA)
    monkeypatch.undo()
    ENGINE.forget()
    assert allows(can_append, CHAT, CHATTING, said())
