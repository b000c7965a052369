"""Which events concern which desk: the pure worklist functions."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.core.events import Actor, Event
from threadline.routing.queues import RoutingState, agent_stream, fold
from threadline.routing.worklist import (
    Viewer,
    WorkChange,
    awaiting,
    changes,
    frame_for,
    held,
    needs_decoding,
    open_offers,
    rewind,
    waiting_approvals,
)

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
ANA = Viewer("agent-ana", frozenset({"orders", "billing"}))
BEN = Viewer("agent-ben", frozenset({"repairs", "billing"}))
SAM = Viewer("sup-sam", frozenset({"orders", "repairs", "billing"}), overseer=True)
BEA = Viewer("agent-bea", frozenset({"orders"}))


class Log:
    """Events with seqs and positions as a store assigns them, folded as they come."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.states: list[RoutingState] = [RoutingState()]
        self.changes: list[WorkChange | None] = []
        self._seqs: dict[str, int] = defaultdict(int)

    @property
    def state(self) -> RoutingState:
        return self.states[-1]

    def add(self, cid: str, type_: str, **payload: Any) -> WorkChange | None:
        self._seqs[cid] += 1
        position = len(self.events) + 1
        event = Event(cid, type_, payload, actor=Actor("system", "test"), seq=self._seqs[cid],
                      position=position, occurred_at=T0 + timedelta(seconds=position))  # fmt: skip
        after = fold(self.state, [event])
        change = changes(self.state, after, event)
        self.events.append(event)
        self.states.append(after)
        self.changes.append(change)
        return change

    def frames(self, viewer: Viewer, after: int = 0) -> list[dict[str, Any]]:
        found = (frame_for(c, viewer) for c in self.changes[after:] if c is not None)
        return [f for f in found if f is not None]


def requested(log: Log, cid: str, queue: str = "orders") -> WorkChange | None:
    return log.add(cid, "handoff.requested", queue=queue, reason_code="customer_request",
                   skills=[])  # fmt: skip


def offered(log: Log, cid: str, agent: str, n: int = 1) -> WorkChange | None:
    expires = (T0 + timedelta(minutes=5)).isoformat()
    return log.add(cid, "handoff.offered", offer_id=f"offer-{cid}-{n}", agent_id=agent,
                   queue="orders", expires_at=expires)  # fmt: skip


def accepted(log: Log, cid: str, agent: str, n: int = 1) -> WorkChange | None:
    return log.add(cid, "handoff.accepted", offer_id=f"offer-{cid}-{n}", agent_id=agent)


def for_(viewer: Viewer, change: WorkChange | None) -> dict[str, Any] | None:
    assert change is not None
    return frame_for(change, viewer)


# -- offers ----------------------------------------------------------------------------


def test_an_offer_reaches_the_agent_it_is_made_to_and_overseers_only() -> None:
    log = Log()
    requested(log, "c1")
    change = offered(log, "c1", "agent-ana")
    frame = for_(ANA, change)
    assert frame == {
        "type": "handoff.offered", "cursor": 2, "conversation_id": "c1",
        "offer_id": "offer-c1-1", "agent_id": "agent-ana", "queue": "orders",
        "expires_at": (T0 + timedelta(minutes=5)).isoformat(),
    }  # fmt: skip
    assert for_(BEN, change) is None
    assert for_(SAM, change) == frame
    assert for_(Viewer("agent-bea", frozenset({"orders"})), change) is None  # their queue only


def test_a_proof_given_while_an_offer_is_open_updates_the_offer_for_whom_it_is_made() -> None:
    log = Log()
    requested(log, "c1")
    assert needs_decoding(log.state, "identity.linked", "c1")  # it waits: its proofs count
    assert log.add("c1", "identity.linked", kind="phone", value="+1", verified=True) is None
    offered(log, "c1", "agent-ana")
    claim = log.add("c1", "identity.linked", kind="phone", value="+1", verified=False)
    assert claim is None  # a claim proves nothing
    change = log.add("c1", "identity.linked", kind="phone", value="+1", verified=True,
                     method="postcode")  # fmt: skip
    frame = for_(ANA, change)
    assert frame == {
        "type": "offer.updated", "cursor": 5, "conversation_id": "c1",
        "offer_id": "offer-c1-1", "agent_id": "agent-ana", "queue": "orders",
        "expires_at": (T0 + timedelta(minutes=5)).isoformat(),
    }  # fmt: skip
    assert for_(BEN, change) is None and for_(SAM, change) == frame
    assert not needs_decoding(log.state, "identity.linked", "c2")  # not waiting: skipped


def test_a_handoff_into_a_queue_moves_its_count_for_the_agents_of_that_queue() -> None:
    log = Log()
    change = requested(log, "c1")
    assert for_(ANA, change) == {"type": "queue.changed", "cursor": 1, "conversation_id": "c1",
                                 "queues": {"orders": 1}}  # fmt: skip
    assert for_(BEN, change) is None
    requested(log, "c2")
    assert for_(ANA, log.changes[-1])["queues"] == {"orders": 2}  # type: ignore[index]
    assert awaiting(log.state, ANA.queues) == {"billing": 0, "orders": 2}


def test_declines_and_expiries_close_the_offer_with_the_reason() -> None:
    log = Log()
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    expired = log.add("c1", "handoff.declined", offer_id="offer-c1-1", agent_id="agent-ana",
                      reason="expired")  # fmt: skip
    assert for_(ANA, expired) == {"type": "offer.expired", "cursor": 3, "conversation_id": "c1",
                                  "offer_id": "offer-c1-1", "agent_id": "agent-ana"}  # fmt: skip
    offered(log, "c1", "agent-ben", 2)
    declined = log.add("c1", "handoff.declined", offer_id="offer-c1-2", agent_id="agent-ben")
    assert for_(BEN, declined)["type"] == "offer.declined"  # type: ignore[index]
    assert for_(ANA, declined) is None
    assert for_(SAM, declined)["type"] == "offer.declined"  # type: ignore[index]


def test_accepting_closes_the_offer_makes_the_conversation_theirs_and_leaves_the_queue() -> None:
    log = Log()
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    frame = for_(ANA, accepted(log, "c1", "agent-ana"))
    assert frame is not None
    assert frame["type"] == "offer.accepted" and frame["offer_id"] == "offer-c1-1"
    assert frame["held"] is True and frame["status"] == "with_human"
    assert frame["queues"] == {"orders": 0}
    assert held(log.state, ANA) == ["c1"] and open_offers(log.state, ANA) == []


def test_an_offer_is_withdrawn_when_the_conversation_ends_before_an_answer() -> None:
    log = Log()
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    change = log.add("c1", "conversation.abandoned", reason="customer_left")
    frame = for_(ANA, change)
    assert frame is not None and frame["type"] == "offer.withdrawn"
    assert frame["queues"] == {"orders": 0}
    assert "held" not in frame


# -- approvals -------------------------------------------------------------------------


def asks_approval(log: Log, cid: str, queue: str = "billing") -> WorkChange | None:
    return log.add(cid, "approval.requested", approval_id=f"apr-{cid}-1", tool="refund_order",
                   arguments={"order_number": "1042"}, queue=queue,
                   reason="lost parcel")  # fmt: skip


def test_an_approval_request_reaches_the_agents_of_its_queue_and_overseers_only() -> None:
    log = Log()
    change = asks_approval(log, "c1")
    frame = for_(ANA, change)
    assert frame == {
        "type": "approval.requested", "cursor": 1, "conversation_id": "c1",
        "approval_id": "apr-c1-1", "queue": "billing", "tool": "refund_order",
        "requested_at": (T0 + timedelta(seconds=1)).isoformat(), "customer_id": None,
    }  # fmt: skip
    assert for_(BEN, change) == frame and for_(SAM, change) == frame
    assert for_(BEA, change) is None
    assert "arguments" not in frame and "reason" not in frame  # the customer's: read as sent
    assert [a.approval_id for a in waiting_approvals(log.state, BEN)] == ["apr-c1-1"]
    assert waiting_approvals(log.state, BEA) == []


def test_a_decision_by_anyone_takes_the_approval_off_every_desk_that_showed_it() -> None:
    log = Log()
    asks_approval(log, "c1")
    asks_approval(log, "c2")
    granted = log.add("c1", "approval.granted", approval_id="apr-c1-1", agent_id="agent-ben",
                      queue="billing")  # fmt: skip
    frame = for_(ANA, granted)
    assert frame == {"type": "approval.decided", "cursor": 3, "conversation_id": "c1",
                     "approval_id": "apr-c1-1", "queue": "billing", "decision": "granted",
                     "agent_id": "agent-ben"}  # fmt: skip
    assert for_(SAM, granted) == frame and for_(BEA, granted) is None
    denied = log.add("c2", "approval.denied", approval_id="apr-c2-1", agent_id="sup-sam",
                     queue="billing", reason="shipped already")  # fmt: skip
    assert for_(BEN, denied)["decision"] == "denied"  # type: ignore[index]
    assert waiting_approvals(log.state, SAM) == []
    # A decision the conversation refused never reaches the log; folded anyway, it is no news.
    again = log.add("c2", "approval.denied", approval_id="apr-c2-1", agent_id="sup-sam",
                    queue="billing", reason="twice")  # fmt: skip
    assert again is None


def test_an_approval_on_a_held_conversation_is_one_frame_for_its_holder() -> None:
    log = Log()
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    accepted(log, "c1", "agent-ana")
    change = asks_approval(log, "c1")
    frame = for_(ANA, change)
    assert frame is not None and frame["type"] == "approval.requested"
    assert frame["held"] is True and frame["event"] == "approval.requested"
    holder_only = for_(Viewer("agent-ana", frozenset({"orders"})), change)
    assert holder_only is not None and holder_only["type"] == "conversation.changed"


# -- conversations they hold -----------------------------------------------------------


def test_every_event_on_a_held_conversation_reaches_its_holder_only() -> None:
    log = Log()
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    accepted(log, "c1", "agent-ana")
    message = log.add("c1", "message.received", text="Where is my laptop? " * 10)
    frame = for_(ANA, message)
    assert frame is not None and frame["type"] == "conversation.changed"
    assert frame["held"] is True and frame["event"] == "message.received" and frame["seq"] == 4
    assert frame["preview"].startswith("Where is my laptop?") and len(frame["preview"]) == 120
    assert "status" not in frame
    assert for_(BEN, message) is None and for_(SAM, message) is None


def test_a_transfer_takes_the_conversation_off_the_desk_and_into_the_new_queue() -> None:
    log = Log()
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    accepted(log, "c1", "agent-ana")
    moved = requested(log, "c1", queue="billing")
    frame = for_(ANA, moved)
    assert frame is not None and frame["type"] == "conversation.changed"
    assert frame["held"] is False and frame["status"] == "awaiting_human"
    assert frame["queues"] == {"billing": 1}
    assert for_(BEN, moved) == {"type": "queue.changed", "cursor": 4, "conversation_id": "c1",
                                "queues": {"billing": 1}}  # fmt: skip
    assert held(log.state, ANA) == []


def test_resolving_and_returning_release_the_conversation() -> None:
    log = Log()
    for cid, type_, payload in (("c1", "conversation.resolved", {"outcome": "answered"}),
                                ("c2", "handoff.returned", {"agent_id": "agent-ana"})):  # fmt: skip
        requested(log, cid)
        offered(log, cid, "agent-ana")
        accepted(log, cid, "agent-ana")
        frame = for_(ANA, log.add(cid, type_, **payload))
        assert frame is not None and frame["held"] is False
        assert frame["status"] == {"c1": "resolved", "c2": "bot_active"}[cid]
    assert held(log.state, ANA) == []


def test_events_that_touch_no_worklist_make_no_change_and_need_no_decoding() -> None:
    log = Log()
    assert log.add("c1", "message.received", text="hi") is None
    assert log.add("c1", "intent.detected", intent="order_status", confidence=0.9) is None
    assert not needs_decoding(log.state, "message.received", "c1")
    assert needs_decoding(log.state, "handoff.requested", "c1")
    requested(log, "c1")
    offered(log, "c1", "agent-ana")
    accepted(log, "c1", "agent-ana")
    assert needs_decoding(log.state, "message.received", "c1")


def test_presence_changes_reach_the_agent_whose_stream_it_is() -> None:
    log = Log()
    change = log.add(agent_stream("agent-ana"), "agent.presence_changed", agent_id="agent-ana",
                     presence="available")  # fmt: skip
    assert for_(ANA, change) == {"type": "presence.changed", "cursor": 1, "presence": "available"}
    assert for_(BEN, change) is None
    again = log.add(agent_stream("agent-ana"), "agent.presence_changed", agent_id="agent-ana",
                    presence="available")  # fmt: skip
    assert again is None


# -- replaying from a cursor -----------------------------------------------------------


def earlier_states(log: Log, k: int) -> dict[str, RoutingState]:
    """Each stream that had a routing event after position ``k``, folded up to ``k``."""
    moved = {e.conversation_id for e in log.events[k:] if e.type != "message.received"}
    return {
        cid: fold(RoutingState(), [e for e in log.events[:k] if e.conversation_id == cid])
        for cid in moved
    }


def replayed_frames(log: Log, k: int, viewer: Viewer) -> list[dict[str, Any]]:
    state = rewind(log.state, earlier_states(log, k))
    frames = []
    for event in log.events[k:]:
        after = fold(state, [event])
        change = changes(state, after, event)
        state = after
        frame = frame_for(change, viewer) if change is not None else None
        if frame is not None:
            frames.append(frame)
    return frames


def same_routing(a: RoutingState, b: RoutingState) -> bool:
    return (dict(a.waiting), dict(a.assignees), dict(a.seen), dict(a.approvals)) == (
        dict(b.waiting), dict(b.assignees), dict(b.seen), dict(b.approvals)
    ) and all(
        (a.agent(x).presence, a.agent(x).conversations) == (b.agent(x).presence,
                                                            b.agent(x).conversations)
        for x in set(a.agents) | set(b.agents)
    )  # fmt: skip


def journey(
    cid: str, agent: str, ending: str, queue: str, approval: str = "none"
) -> list[tuple[Any, ...]]:
    """One conversation's routing, as a list of steps to interleave with others."""
    expires = (T0 + timedelta(minutes=5)).isoformat()
    steps: list[tuple[Any, ...]] = [
        (cid, "handoff.requested", {"queue": queue, "reason_code": "customer_request"}),
        (cid, "handoff.offered", {"offer_id": f"o-{cid}", "agent_id": agent, "queue": queue,
                                  "expires_at": expires}),
        (cid, "handoff.accepted", {"offer_id": f"o-{cid}", "agent_id": agent}),
        (cid, "message.received", {"text": "thanks"}),
    ]  # fmt: skip
    if ending == "resolve":
        steps.append((cid, "conversation.resolved", {"outcome": "answered"}))
    elif ending == "transfer":
        steps.append((cid, "handoff.requested", {"queue": "billing", "reason_code": "transfer"}))
    elif ending == "expire":
        steps[2] = (cid, "handoff.declined", {"offer_id": f"o-{cid}", "agent_id": agent,
                                              "reason": "expired"})  # fmt: skip
    if approval != "none":
        steps.insert(
            0,
            (
                cid,
                "approval.requested",
                {"approval_id": f"apr-{cid}", "tool": "refund_order", "queue": "billing"},
            ),
        )
    if approval in ("granted", "denied"):
        steps.insert(3, (cid, f"approval.{approval}", {"approval_id": f"apr-{cid}",
                                                       "agent_id": "agent-ben",
                                                       "queue": "billing"}))  # fmt: skip
    return steps


@settings(max_examples=60, deadline=None)
@given(
    plans=st.lists(
        st.tuples(st.sampled_from(["agent-ana", "agent-ben"]),
                  st.sampled_from(["resolve", "transfer", "expire", "open"]),
                  st.sampled_from(["orders", "repairs"]),
                  st.sampled_from(["none", "granted", "denied", "waiting"])),
        min_size=1, max_size=4,
    ),
    picks=st.lists(st.integers(0, 3), max_size=40),
)  # fmt: skip
def test_replaying_from_any_cursor_gives_exactly_the_frames_sent_live(plans, picks) -> None:
    log = Log()
    pending = [journey(f"c{i}", *plan) for i, plan in enumerate(plans)]
    ana = agent_stream("agent-ana")
    presence = [{"agent_id": "agent-ana", "presence": p} for p in ("available", "away")]
    pending.append([(ana, "agent.presence_changed", p) for p in presence])
    picks = list(picks)
    while any(pending):
        open_ = [steps for steps in pending if steps]
        steps = open_[(picks.pop() if picks else 0) % len(open_)]
        cid, type_, payload = steps.pop(0)
        log.add(cid, type_, **payload)
    for k in range(len(log.events) + 1):
        assert same_routing(rewind(log.state, earlier_states(log, k)), log.states[k]), k
        for viewer in (ANA, BEN, SAM, BEA):
            assert replayed_frames(log, k, viewer) == log.frames(viewer, k), (k, viewer)
    cursors = [f["cursor"] for f in log.frames(ANA)]
    assert cursors == sorted(set(cursors))
