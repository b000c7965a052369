"""The store's queue and its kiosk: customers check in at the door and wait to be taken.

A kiosk token checks a customer in by phone number or check-in code and puts
them in the store's queue; associates of the store (and supervisors) see the
queue, live on a WebSocket, and take the next customer, which opens their
visit. The routes share the in-person API's tag and helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from threadline.api.access import open_socket
from threadline.api.auth import Caller, accept_socket
from threadline.api.deps import ServiceDep
from threadline.api.inperson import Code, Id, IdempotencyKey, _grant
from threadline.api.problems import Problem
from threadline.api.streams import _refuse, _still_valid
from threadline.channels.inperson.lookup import customer_record, display_name, find_customer
from threadline.channels.inperson.queue import Waiting, store_stream
from threadline.channels.inperson.queue import waiting as in_line
from threadline.channels.inperson.visits import OpenVisit
from threadline.core.errors import NotFound
from threadline.core.events import new_id, utcnow
from threadline.security import Forbidden, Unauthenticated
from threadline.systems import CustomerRecord

router = APIRouter(tags=["in person"])


class KioskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Annotated[str | None, Field(min_length=3, max_length=40)] = None
    code: Code | None = None


def _queue_frame(entries: list[Waiting], store_id: str, now: datetime) -> dict[str, Any]:
    return {"type": "queue", "store_id": store_id, "at": now.isoformat(),
            "waiting": [w.to_dict(now) for w in entries]}  # fmt: skip


@router.get("/stores/{store_id}/queue")
async def store_queue(store_id: Id, service: ServiceDep, caller: Caller) -> dict[str, Any]:
    """Who waits in the store, longest first, with how long they have waited."""
    service.business.require_location(store_id)
    waiting = await service.inperson.queue.waiting(store_id)
    return _queue_frame(waiting, store_id, utcnow())


@router.websocket("/stores/{store_id}/queue/stream")
async def store_queue_stream(websocket: WebSocket, service: ServiceDep, store_id: str) -> None:
    """The store's queue now, then again each time someone joins or is taken."""
    verifier = service.verifier
    try:
        caller = verifier.verify(await accept_socket(websocket))
        open_socket(websocket, caller)
        if service.business.location(store_id) is None:
            raise Forbidden(f"there is no store {store_id}")
    except (Unauthenticated, Forbidden) as exc:
        await _refuse(websocket, exc)
        return
    queue, hub = service.inperson.queue, service.hub

    async def send() -> None:
        async with hub.watch(store_stream(store_id), 0) as watcher:
            events = queue.decode(watcher.backlog)
            await websocket.send_text(orjson.dumps(
                _queue_frame(in_line(events), store_id, utcnow())).decode())  # fmt: skip
            watcher.backlog = []
            async for record in hub.follow(watcher):
                _still_valid(verifier, caller)
                events.append(queue.decode([record])[0])
                frame = _queue_frame(in_line(events), store_id, utcnow())
                await websocket.send_text(orjson.dumps(frame).decode())

    sender = asyncio.create_task(send())
    try:
        while not sender.done():
            receiving = asyncio.ensure_future(websocket.receive())
            await asyncio.wait({sender, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
            elif receiving.result()["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Unauthenticated):
            await sender


@router.post("/stores/{store_id}/queue/{entry_id}/take", status_code=201)
async def take(store_id: Id, entry_id: Id, service: ServiceDep, caller: Caller,
               idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Take a waiting customer: they leave the queue and their visit opens."""
    queue = service.inperson.queue
    entry = next((w for w in await queue.waiting(store_id) if w.entry_id == entry_id), None)
    if entry is None:
        raise Problem(409, "not-waiting", "Not waiting", f"{entry_id} is not waiting in {store_id}")
    if entry.conversation_id is None:
        raise Problem(409, "no-conversation", "No conversation to continue",
                      f"{entry.display_name} has no conversation yet; look them up")  # fmt: skip
    opening = OpenVisit(entry.conversation_id, idempotency_key or f"take:{entry_id}")
    recorded = await service.inperson.visits.record(caller, opening)
    await queue.call(store_id, entry_id, caller.subject, entry.conversation_id)
    return {**recorded.to_dict(), "customer_id": entry.customer_id}


@router.post("/kiosk/checkin", status_code=201)
async def kiosk_checkin(body: KioskIn, service: ServiceDep, caller: Caller,
                        idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """A customer checks in at the store's kiosk by phone number or code and joins the queue."""
    if (body.phone is None) == (body.code is None):
        raise Problem(422, "validation", "The request does not fit its schema",
                      "give a phone number or a code, not both")  # fmt: skip
    store_id = caller.store_id
    assert store_id is not None
    codes = service.inperson.codes
    conversation_id: str | None
    customer: CustomerRecord | None
    if body.code is not None:
        grant = await _grant(codes, body.code, caller)
        await codes.use(grant, used_by=caller.subject)
        customer = await customer_record(service.recognition, grant.customer_id)
        customer_id, conversation_id, method = grant.customer_id, grant.conversation_id, "code"
    else:
        who = (f"who:{caller.subject}",)
        codes.attempts.check(*who)
        customer = await find_customer(service.recognition, "phone", body.phone or "")
        if customer is None:
            codes.attempts.fail(*who)
            raise NotFound("we could not find that number; an associate will help you")
        customer_id, method = customer.id, "phone"
        open_ = [e for e in service.index.of_customer(customer.id) if e.state.is_open]
        conversation_id = open_[0].conversation_id if open_ else None
    name = display_name(customer) if customer is not None else "Guest"
    entry_id = "q-" + (idempotency_key or new_id())
    queue = service.inperson.queue
    waiting = await queue.waiting(store_id)
    if not any(w.entry_id == entry_id for w in waiting):
        entry = Waiting(entry_id, customer_id, conversation_id, name, method, utcnow())
        await queue.join(entry, store_id, caller.subject)
        waiting = await queue.waiting(store_id)
    position = next((i for i, w in enumerate(waiting, 1) if w.entry_id == entry_id), 0)
    return {"entry_id": entry_id, "store_id": store_id, "position": position}
