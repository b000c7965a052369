"""The desk's live work stream: an agent's offers, conversations and queues over WebSocket.

``/agents/me/stream`` is the signed-in agent's; ``/agents/{agent_id}/stream``
lets a supervisor watch any agent (an agent only themselves). The token comes
as on every socket (:func:`~threadline.api.auth.accept_socket`): in the
subprotocol ``threadline.bearer.<token>`` or an ``Authorization`` header, never
in the URL; it is checked before anything is sent and again before every frame
and when it expires.

Every frame is a JSON object with a ``type`` and a ``cursor``: the log
position of the event it reports, increasing strictly. A desk that connects
without ``after`` first gets a ``snapshot`` (its open offers with the reason
and a packet summary, the approvals waiting for its decision, its
conversations, its queues' counts); one that reconnects with
``after=<last cursor>`` gets exactly the frames it missed. Then come
``handoff.offered``, ``offer.accepted|declined|expired|withdrawn``,
``offer.updated`` (the customer proved who they are while the offer was open:
the offer again, with its packet summary), ``approval.requested`` (a sensitive
call waits in one of the desk's queues: the tool, its arguments and the
agent's reason), ``approval.decided`` (it waits no more: granted or denied,
by whom), ``conversation.changed``, ``queue.changed``, ``presence.changed``,
and a ``heartbeat`` when the log moved on without concerning the desk. A
refused caller gets ``{"type": "error", "code", "problem", "status", "detail"}``
and the socket is closed with 1008; a desk too slow to keep up is closed with
1013 and resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from threadline.api.auth import accept_socket
from threadline.api.deps import ServiceDep
from threadline.api.problems import problem_type
from threadline.api.streams import POLICY_VIOLATION, _still_valid
from threadline.core.events import utcnow
from threadline.engine.conversations import Conversations
from threadline.routing.packet import build_packet
from threadline.routing.router import Router
from threadline.routing.workfeed import Idle, Snapshot, Subscription, WorkFeed
from threadline.routing.worklist import (
    Viewer,
    WorkChange,
    approval_out,
    awaiting,
    frame_for,
    held,
    open_offers,
    packet_brief,
    waiting_approvals,
)
from threadline.security import (
    PROBLEMS,
    ExpiredToken,
    Forbidden,
    Principal,
    TokenVerifier,
    Unauthenticated,
)
from threadline.security.authz import can_open

router = APIRouter(tags=["desk"])

TRY_AGAIN_LATER: Final = 1013
#: Seconds without a frame after which the desk gets a heartbeat (if the log moved on).
HEARTBEAT: Final = 10.0
ME: Final = "me"
STREAM: Final = "/agents/{agent_id}/stream"


class BadCursor(ValueError):
    """``after`` is not a cursor."""


# -- who watches whom ----------------------------------------------------------------


def own_viewer(caller: Principal, routing: Router) -> Viewer:
    """The caller's own worklist: their queues, or every queue for a supervisor, who
    oversees them all."""
    if caller.kind == "supervisor":
        every = frozenset(q.name for q in routing.config.queues)
        return Viewer(caller.subject, every, overseer=True)
    return Viewer(caller.subject, caller.queues)


def viewer_for(caller: Principal, agent_id: str, routing: Router) -> Viewer:
    """Whose worklist ``caller`` may watch at ``/agents/{agent_id}/stream``; Forbidden if the
    policy lets them watch none (``sockets.desk``)."""
    can_open(caller, STREAM, {"agent": agent_id})
    if caller.kind == "supervisor" and agent_id != ME:
        spec = routing.config.agent(agent_id)
        return Viewer(agent_id, spec.queues if spec is not None else frozenset())
    return own_viewer(caller, routing)


def cursor_from(raw: str | None) -> int | None:
    """The ``after`` query parameter: absent, or a log position."""
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise BadCursor(f"after must be a cursor (a non-negative integer), not {raw!r}")
    return int(raw)


def _problem_of(exc: Exception) -> tuple[str, int]:
    for cls, status, slug, _title in PROBLEMS:
        if isinstance(exc, cls):
            return slug, status
    return "validation", 422


async def _refuse(websocket: WebSocket, exc: Exception) -> None:
    code = "forbidden" if isinstance(exc, Forbidden) else "unauthenticated"
    if isinstance(exc, BadCursor):
        code = "validation"
    slug, status = _problem_of(exc)
    frame = {"type": "error", "code": code, "problem": problem_type(slug), "status": status,
             "detail": str(exc)}  # fmt: skip
    await _send(websocket, frame)
    await websocket.close(code=POLICY_VIOLATION, reason=code)


async def _send(websocket: WebSocket, frame: dict[str, Any]) -> None:
    await websocket.send_text(orjson.dumps(frame).decode())


# -- frames ----------------------------------------------------------------------------


async def _offer_details(conversations: Conversations, offer: dict[str, Any]) -> dict[str, Any]:
    """An offer with why it was handed off and what the bot collected."""
    cid = offer["conversation_id"]
    state = await conversations.rehydrate(cid)
    packet = build_packet(state, await conversations.timeline(cid))
    return {**offer, "reason": state.handoff_reason, "packet": packet_brief(packet)}


async def approval_details(
    conversations: Conversations, approval: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """A waiting approval with what the call would do and why the agent asks, read from the
    conversation as it is sent (the routing state keeps no customer data); and whether
    the conversation still has it waiting."""
    state = await conversations.rehydrate(approval["conversation_id"])
    asked = state.approvals.get(approval["approval_id"]) or {}
    details = {**approval, "arguments": dict(asked.get("arguments") or {}),
               "reason": str(asked.get("reason") or "")}  # fmt: skip
    return details, asked.get("status") == "pending"


async def _card(conversations: Conversations, conversation_id: str) -> dict[str, Any]:
    """A held conversation as the desk lists it."""
    state = await conversations.rehydrate(conversation_id)
    live = sorted({str(leg.get("channel")) for leg in state.live_legs.values()})
    return {
        "conversation_id": conversation_id,
        "status": state.status,
        "queue": state.queue,
        "customer_id": state.customer_id,
        "channels": live,
        "updated_at": state.updated_at,
        "last": state.summary[-1] if state.summary else None,
    }


async def snapshot_frame(
    conversations: Conversations, viewer: Viewer, snapshot: Snapshot
) -> dict[str, Any]:
    """What the desk shows before any change: offers, approvals, conversations and queue
    counts."""
    state = snapshot.state
    offers = [await _offer_details(conversations, o) for o in open_offers(state, viewer)]
    approvals = [(await approval_details(conversations, approval_out(a)))[0]
                 for a in waiting_approvals(state, viewer)]  # fmt: skip
    cards = [await _card(conversations, cid) for cid in held(state, viewer)]
    return {
        "type": "snapshot",
        "cursor": snapshot.position,
        "agent": {
            "id": viewer.agent_id,
            "queues": sorted(viewer.queues),
            "presence": state.agent(viewer.agent_id).presence,
        },
        "offers": offers,
        "approvals": approvals,
        "conversations": cards,
        "queues": awaiting(state, viewer.queues),
    }


async def _frame(
    conversations: Conversations, viewer: Viewer, item: Snapshot | WorkChange | Idle
) -> dict[str, Any] | None:
    if isinstance(item, Idle):
        return {"type": "heartbeat", "cursor": item.position}
    if isinstance(item, Snapshot):
        return await snapshot_frame(conversations, viewer, item)
    frame = frame_for(item, viewer)
    if frame is not None and frame["type"] in ("handoff.offered", "offer.updated"):
        frame = {**frame, **await _offer_details(conversations, frame)}
    if frame is not None and frame["type"] == "approval.requested":
        frame = (await approval_details(conversations, frame))[0]
    if frame is not None and frame.get("held") and frame["event"] == "handoff.accepted":
        frame["conversation"] = await _card(conversations, item.conversation_id)
    return frame


async def _send_work(
    websocket: WebSocket,
    conversations: Conversations,
    feed: WorkFeed,
    subscription: Subscription,
    after: int | None,
    verifier: TokenVerifier,
    caller: Principal,
) -> None:
    viewer = subscription.viewer
    async for item in feed.follow(subscription, after, idle=HEARTBEAT):
        try:
            _still_valid(verifier, caller)
        except Unauthenticated as exc:
            await _refuse(websocket, exc)
            return
        frame = await _frame(conversations, viewer, item)
        if frame is not None:
            await _send(websocket, frame)
    await websocket.close(code=TRY_AGAIN_LATER, reason="too slow; reconnect with after")


# -- the route -------------------------------------------------------------------------


@router.websocket(STREAM)
async def agent_work_stream(websocket: WebSocket, service: ServiceDep, agent_id: str) -> None:
    """The work of agent ``agent_id`` (``me``: the caller), live and resumable by cursor."""
    verifier = service.verifier
    try:
        try:
            caller = verifier.verify(await accept_socket(websocket))
            viewer = viewer_for(caller, agent_id, service.router)
            after = cursor_from(websocket.query_params.get("after"))
        except (Unauthenticated, Forbidden, BadCursor) as exc:
            await _refuse(websocket, exc)
            return
        feed = service.work_feed
        await feed.catch_up(force=True)
        with feed.subscribe(viewer) as subscription:
            await _serve(websocket, service.conversations, feed, subscription, after, verifier,
                         caller)  # fmt: skip
    except WebSocketDisconnect:
        return


async def _serve(
    websocket: WebSocket,
    conversations: Conversations,
    feed: WorkFeed,
    subscription: Subscription,
    after: int | None,
    verifier: TokenVerifier,
    caller: Principal,
) -> None:
    sender = asyncio.create_task(
        _send_work(websocket, conversations, feed, subscription, after, verifier, caller)
    )
    receiving: asyncio.Future[Any] | None = None
    try:
        # The client sends nothing; reading is how a closed socket is noticed. The wait
        # ends when the token expires, so a quiet desk is not left signed in past it.
        while not sender.done():
            if receiving is None:
                receiving = asyncio.ensure_future(websocket.receive())
            left = max(0.0, (caller.expires_at - utcnow()).total_seconds())
            await asyncio.wait({sender, receiving}, timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if receiving.done():
                if receiving.result()["type"] == "websocket.disconnect":
                    break
                receiving = None
            elif not sender.done() and utcnow() >= caller.expires_at:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
                expired = ExpiredToken(f"the token expired at {caller.expires_at.isoformat()}")
                await _refuse(websocket, expired)
                break
    finally:
        if receiving is not None:
            receiving.cancel()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await sender
