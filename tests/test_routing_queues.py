"""Routing decisions: a pure fold of handoff and presence events, and who gets offered what."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.test_routing_demo import demo_config
from threadline.core.catalogue import CATALOGUE
from threadline.core.errors import ConfigurationError, ValidationError
from threadline.core.events import Actor, Event
from threadline.routing import (
    AgentSpec,
    ExpireOffer,
    OfferTo,
    QueueSpec,
    RoutingConfig,
    RoutingState,
    agent_stream,
    choose_agent,
    eligible_agents,
    fold,
    next_deadline,
    plan,
    queue_order,
)

T0 = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
CONFIG = demo_config()


class Log:
    """Builds events as the store would hand them back: seq per stream, global positions."""

    def __init__(self) -> None:
        self.seqs: Counter[str] = Counter()
        self.position = 0
        self.events: list[Event] = []

    def __call__(self, cid: str, type_: str, payload: dict[str, Any], minute: float) -> Event:
        self.seqs[cid] += 1
        self.position += 1
        event = Event(
            cid, type_, payload, actor=Actor("system", "test"),
            occurred_at=T0 + timedelta(minutes=minute), seq=self.seqs[cid],
            position=self.position, correlation_id=f"corr-{cid}",
        )  # fmt: skip
        self.events.append(event)
        return event

    def presence(self, agent_id: str, presence: str, minute: float = 0) -> Event:
        payload = {"agent_id": agent_id, "presence": presence}
        return self(agent_stream(agent_id), "agent.presence_changed", payload, minute)

    def request(
        self, cid: str, queue: str, minute: float = 1, skills: tuple[str, ...] = ()
    ) -> Event:
        payload = {"queue": queue, "reason_code": "customer_request", "skills": list(skills)}
        return self(cid, "handoff.requested", payload, minute)

    def offer(self, cid: str, agent_id: str, minute: float = 2, ttl: float = 0.5) -> Event:
        expires = (T0 + timedelta(minutes=minute + ttl)).isoformat()
        payload = {
            "offer_id": f"o-{cid}",
            "agent_id": agent_id,
            "queue": "q",
            "expires_at": expires,
        }
        return self(cid, "handoff.offered", payload, minute)

    def accept(self, cid: str, agent_id: str, minute: float = 3) -> Event:
        return self(cid, "handoff.accepted", {"offer_id": f"o-{cid}", "agent_id": agent_id}, minute)

    def decline(
        self, cid: str, agent_id: str, minute: float = 3, reason: str = "declined"
    ) -> Event:
        payload = {"offer_id": f"o-{cid}", "agent_id": agent_id, "reason": reason}
        return self(cid, "handoff.declined", payload, minute)

    def take(self, cid: str, agent_id: str, minute: float) -> None:
        """Requested in orders or billing, offered and accepted by ``agent_id`` at ``minute``."""
        self.request(cid, "billing", minute)
        self.offer(cid, agent_id, minute)
        self.accept(cid, agent_id, minute)

    def state(self) -> RoutingState:
        return fold(RoutingState(), self.events)


def available(*agent_ids: str) -> Log:
    log = Log()
    for agent_id in agent_ids:
        log.presence(agent_id, "available")
    return log


def offers(state: RoutingState, config: RoutingConfig = CONFIG, minute: float = 4) -> list[Any]:
    actions = plan(state, config, T0 + timedelta(minutes=minute))
    return [(a.conversation_id, a.agent_id) for a in actions if isinstance(a, OfferTo)]


# -- eligibility ---------------------------------------------------------------------


def test_an_available_member_of_the_queue_is_offered_the_conversation() -> None:
    log = available("agent-ana")
    log.request("c1", "orders")
    assert offers(log.state()) == [("c1", "agent-ana")]


@pytest.mark.parametrize("presence", ["away", "offline"])
def test_an_agent_who_is_not_available_is_not_offered_anything(presence: str) -> None:
    log = available("agent-ana")
    log.presence("agent-ana", presence, minute=0.5)
    log.request("c1", "orders")
    assert offers(log.state()) == []


def test_an_agent_with_no_presence_yet_counts_as_offline() -> None:
    log = Log()
    log.request("c1", "orders")
    assert log.state().agent("agent-ana").presence == "offline"
    assert offers(log.state()) == []


def test_an_agent_outside_the_queue_is_not_offered_its_conversations() -> None:
    log = available("agent-ana", "agent-ben")
    log.request("c1", "repairs")
    assert offers(log.state()) == [("c1", "agent-ben")]


def test_only_agents_with_every_requested_skill_are_eligible() -> None:
    log = available("agent-ana", "agent-ben")
    request = log.request("c1", "billing", skills=("refunds", "delivery"))
    waiting = log.state().waiting[request.conversation_id]
    assert eligible_agents(log.state(), CONFIG, waiting) == ["agent-ana"]


def test_a_handoff_that_names_no_skills_needs_the_queues_skills() -> None:
    config = RoutingConfig(
        queues=(QueueSpec("billing", {"payments", "refunds"}),),
        agents=(
            AgentSpec("agent-ana", "Ana Ruiz", {"billing"}, {"payments"}),
            AgentSpec("agent-ben", "Ben Okafor", {"billing"}, {"payments", "refunds"}),
        ),
    )
    log = available("agent-ana", "agent-ben")
    log.request("c1", "billing")
    assert offers(log.state(), config) == [("c1", "agent-ben")]


def test_the_supervisor_is_never_routed_to() -> None:
    log = available("sup-sam")
    log.request("c1", "billing")
    assert offers(log.state()) == []


def test_a_queue_nobody_works_keeps_its_conversations_waiting() -> None:
    log = available("agent-ana", "agent-ben")
    log.request("c1", "returns")
    assert offers(log.state()) == []
    assert [w.conversation_id for w in queue_order(log.state(), "returns")] == ["c1"]


# -- longest idle ----------------------------------------------------------------------


def test_the_agent_idle_longest_since_finishing_work_is_chosen() -> None:
    log = available("agent-ana", "agent-ben")
    log.take("c-old", "agent-ben", minute=1)
    log.take("c-new", "agent-ana", minute=2)
    log("c-old", "conversation.resolved", {"outcome": "done"}, minute=5)
    log("c-new", "conversation.resolved", {"outcome": "done"}, minute=6)
    log.request("c1", "billing", minute=7)
    waiting = log.state().waiting["c1"]
    assert eligible_agents(log.state(), CONFIG, waiting) == ["agent-ben", "agent-ana"]


def test_accepting_work_counts_as_the_start_of_idle_time_too() -> None:
    log = available("agent-ana", "agent-ben")
    log.take("c-ana", "agent-ana", minute=1)
    log.take("c-ben", "agent-ben", minute=2)
    log.request("c1", "billing", minute=3)
    assert choose_agent(log.state(), CONFIG, log.state().waiting["c1"]) == "agent-ana"


def test_an_agent_who_never_worked_goes_first_and_ties_go_by_agent_id() -> None:
    log = available("agent-ben", "agent-ana")
    log.request("c1", "billing")
    assert eligible_agents(log.state(), CONFIG, log.state().waiting["c1"]) == [
        "agent-ana",
        "agent-ben",
    ]
    log.take("c-ana", "agent-ana", minute=2)
    log.request("c2", "billing", minute=3)
    assert choose_agent(log.state(), CONFIG, log.state().waiting["c2"]) == "agent-ben"


# -- capacity --------------------------------------------------------------------------


def test_an_agent_at_capacity_is_offered_nothing_more() -> None:
    config = demo_config(capacity=1)
    log = available("agent-ana")
    log.take("c1", "agent-ana", minute=1)
    log.request("c2", "orders", minute=2)
    assert log.state().agent("agent-ana").load == 1
    assert offers(log.state(), config) == []


def test_an_open_offer_takes_a_place_of_capacity() -> None:
    config = demo_config(capacity=1)
    log = available("agent-ana")
    log.request("c1", "orders", minute=1)
    log.offer("c1", "agent-ana", minute=1)
    log.request("c2", "orders", minute=2)
    assert offers(log.state(), config, minute=1.1) == []


def test_one_plan_never_offers_an_agent_more_than_their_free_places() -> None:
    log = available("agent-ana")
    for n in range(4):
        log.request(f"c{n}", "orders", minute=n)
    assert offers(log.state(), demo_config(capacity=2)) == [
        ("c0", "agent-ana"),
        ("c1", "agent-ana"),
    ]


def test_a_capacity_change_overrides_the_configured_capacity() -> None:
    log = available("agent-ana")
    log(
        agent_stream("agent-ana"),
        "agent.capacity_changed",
        {"agent_id": "agent-ana", "capacity": 0},
        0,
    )
    log.request("c1", "orders")
    assert offers(log.state()) == []
    log(
        agent_stream("agent-ana"),
        "agent.capacity_changed",
        {"agent_id": "agent-ana", "capacity": 3},
        2,
    )
    assert offers(log.state()) == [("c1", "agent-ana")]


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        ("conversation.resolved", {"outcome": "done"}),
        ("conversation.abandoned", {"reason": "hung_up"}),
        ("handoff.returned", {"agent_id": "agent-ana"}),
        ("handoff.requested", {"queue": "repairs", "reason_code": "transfer"}),
    ],
)
def test_finishing_or_passing_on_a_conversation_frees_the_agent(type_: str, payload: dict) -> None:
    log = available("agent-ana")
    log.take("c1", "agent-ana", minute=1)
    assert log.state().agent("agent-ana").load == 1
    log("c1", type_, payload, minute=9)
    ana = log.state().agent("agent-ana")
    assert (ana.load, ana.last_work_at) == (0, T0 + timedelta(minutes=9))
    assert "c1" not in log.state().assignees


# -- FIFO --------------------------------------------------------------------------------


def test_the_oldest_request_in_a_queue_is_offered_first() -> None:
    log = available("agent-ana")
    log.request("c-late", "orders", minute=5)
    log.request("c-early", "orders", minute=2)
    assert [w.conversation_id for w in queue_order(log.state(), "orders")] == ["c-early", "c-late"]
    assert offers(log.state(), demo_config(capacity=1), minute=6) == [("c-early", "agent-ana")]


def test_a_declined_conversation_keeps_its_place_at_the_head_of_the_queue() -> None:
    log = available("agent-ana", "agent-ben")
    log.request("c1", "billing", minute=1)
    log.offer("c1", "agent-ana", minute=1)
    log.request("c2", "billing", minute=2)
    log.decline("c1", "agent-ana", minute=3)
    assert offers(log.state(), demo_config(capacity=1)) == [
        ("c1", "agent-ben"),
        ("c2", "agent-ana"),
    ]


# -- declines, expiry, transfers -------------------------------------------------------


@pytest.mark.parametrize("reason", ["declined", "expired"])
def test_the_next_offer_goes_to_another_agent_never_back(reason: str) -> None:
    log = available("agent-ana", "agent-ben")
    log.request("c1", "billing", minute=1)
    log.offer("c1", "agent-ana", minute=1)
    log.decline("c1", "agent-ana", minute=2, reason=reason)
    assert offers(log.state()) == [("c1", "agent-ben")]
    log.offer("c1", "agent-ben", minute=3)
    log.decline("c1", "agent-ben", minute=4, reason=reason)
    assert offers(log.state(), minute=5) == []
    assert log.state().waiting["c1"].excluded == {"agent-ana", "agent-ben"}


def test_a_new_request_forgets_who_declined_the_old_one() -> None:
    log = available("agent-ana")
    log.request("c1", "orders", minute=1)
    log.offer("c1", "agent-ana", minute=1)
    log.decline("c1", "agent-ana", minute=2)
    log("c1", "conversation.resolved", {"outcome": "gave_up"}, minute=3)
    log("c1", "conversation.reopened", {"reason": "new contact"}, minute=4)
    log.request("c1", "orders", minute=5)
    assert offers(log.state(), minute=6) == [("c1", "agent-ana")]


def test_a_transfer_is_not_offered_back_to_the_agent_who_passed_it_on() -> None:
    log = available("agent-ana", "agent-ben")
    log.take("c1", "agent-ana", minute=1)
    log("c1", "handoff.requested", {"queue": "billing", "reason_code": "transfer"}, minute=2)
    assert offers(log.state()) == [("c1", "agent-ben")]


def test_an_offer_past_its_expiry_is_expired_and_not_re_offered_in_the_same_plan() -> None:
    log = available("agent-ana", "agent-ben")
    log.request("c1", "billing", minute=1)
    offered = log.offer("c1", "agent-ana", minute=1, ttl=0.5)
    assert plan(log.state(), CONFIG, T0 + timedelta(minutes=1.4)) == []
    [expire] = plan(log.state(), CONFIG, T0 + timedelta(minutes=1.5))
    assert expire == ExpireOffer("c1", "o-c1", "agent-ana", offered.event_id, "corr-c1", None)
    assert expire.key == f"router:expire:{offered.event_id}"
    assert next_deadline(log.state()) == T0 + timedelta(minutes=1.5)


# -- pending actions and idempotency ---------------------------------------------------


def test_an_offer_key_is_derived_from_the_event_that_opened_the_attempt() -> None:
    log = available("agent-ana", "agent-ben")
    request = log.request("c1", "billing", minute=1)
    [first] = plan(log.state(), CONFIG, T0)
    assert first.key == f"router:offer:{request.event_id}"
    log.offer("c1", "agent-ana", minute=1)
    declined = log.decline("c1", "agent-ana", minute=2)
    [second] = plan(log.state(), CONFIG, T0)
    assert second.key == f"router:offer:{declined.event_id}"


def test_a_pending_offer_is_not_planned_again_and_holds_its_place() -> None:
    log = available("agent-ana")
    log.request("c1", "orders", minute=1)
    log.request("c2", "orders", minute=2)
    config = demo_config(capacity=1)
    [offer] = plan(log.state(), config, T0)
    assert offer.conversation_id == "c1"
    assert plan(log.state(), config, T0, {"c1": offer}) == []


def test_a_pending_expiry_is_not_planned_again_nor_awaited() -> None:
    log = available("agent-ana")
    log.request("c1", "orders", minute=1)
    log.offer("c1", "agent-ana", minute=1)
    [expire] = plan(log.state(), CONFIG, T0 + timedelta(hours=1))
    assert plan(log.state(), CONFIG, T0 + timedelta(hours=1), {"c1": expire}) == []
    assert next_deadline(log.state(), {"c1": expire}) is None


def test_folding_a_redelivered_event_changes_nothing() -> None:
    log = available("agent-ana")
    log.take("c1", "agent-ana", minute=1)
    state = log.state()
    assert fold(state, log.events) == state
    assert fold(state, [log.events[-1], log.events[2]]).agent("agent-ana").load == 1


def test_events_that_do_not_route_leave_the_state_as_it_is() -> None:
    state = available("agent-ana").state()
    message = Event("c1", "message.received", {"text": "hello"}, seq=1)
    assert fold(state, [message]) is state


# -- configuration and schemas ---------------------------------------------------------


def test_an_agent_in_an_unknown_queue_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown queues"):
        RoutingConfig((QueueSpec("orders"),), (AgentSpec("agent-ana", "Ana", {"billing"}),))


def test_skills_given_as_one_string_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not the string"):
        QueueSpec("orders", "orders")


def test_the_demo_config_has_the_demo_queues_and_agents() -> None:
    assert [a.id for a in CONFIG.members("billing")] == ["agent-ana", "agent-ben"]
    assert [a.id for a in CONFIG.members("orders")] == ["agent-ana"]
    assert [a.id for a in CONFIG.members("repairs")] == ["agent-ben"]


def test_presence_must_be_available_away_or_offline() -> None:
    assert CATALOGUE.validate("agent.presence_changed", 1, {"agent_id": "a", "presence": "away"})
    with pytest.raises(ValidationError) as caught:
        CATALOGUE.validate("agent.presence_changed", 1, {"agent_id": "a", "presence": "busy"})
    assert caught.value.errors[0]["field"] == "payload.presence"
    with pytest.raises(ValidationError):
        CATALOGUE.validate("agent.capacity_changed", 1, {"agent_id": "a", "capacity": -1})
