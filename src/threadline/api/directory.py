"""The directory: customers, queues and human agents, read-only.

Customers come from the business's own systems (the pack's customer look-up,
search and record tools) with their contact identifiers masked, and their
conversations from the :class:`ConversationIndex`; queues and agents from the
router's configuration and its routing state.

Who may read what (the policy's ``endpoints.*``, and :func:`can_read_queue`):

* **customers**: agents, supervisors and admins may look up any customer; a
  customer may read only their own profile. Reading records nothing.
* **queues**: supervisors and admins every queue, agents the queues of their
  token (:func:`can_read_queue`).
* **agents**: supervisors and admins every agent, an agent only themselves.

As for conversations, a caller who may not read a resource is refused with 403
whether it exists or not; 404 is for those who could read it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.api.problems import Problem
from threadline.channels.inperson.lookup import customer_record
from threadline.core.events import new_id, utcnow
from threadline.identity.recognition import By
from threadline.routing.queues import AgentSpec, busy_counts, capacity_of, queue_order
from threadline.routing.router import Router
from threadline.security import allows, can_read_queue
from threadline.security.authz import readable_among
from threadline.service import Service
from threadline.systems import CustomerRecord, ToolCall
from threadline.tools import ToolFailure

router = APIRouter(tags=["directory"])

Id = Annotated[str, Field(min_length=1, max_length=200)]
READ_PROBLEMS: Final = problem_responses(401, 403, 404)


# -- models --------------------------------------------------------------------------


class CustomerOut(BaseModel):
    id: str
    name: str
    phone: str = Field(description="Masked: only the last four digits show.")
    email: str = Field(description="Masked: the first letter and the domain show.")
    member_id: str | None


class CustomerProfile(CustomerOut):
    records: dict[str, Any] = Field(
        description="What the business's systems list for the customer (its orders,"
        " appointments…), by the name of the pack's tool that lists it."
    )
    conversations: list[str] = Field(
        description="Ids of the customer's conversations the caller may read, newest first."
    )


class MemberOut(BaseModel):
    id: str
    name: str
    presence: str


class QueueOut(BaseModel):
    id: str
    skills: list[str]
    agents: list[MemberOut]
    waiting: int = Field(description="Conversations awaiting a human in this queue.")
    offered: int = Field(description="Of those, how many have an offer open.")
    oldest_waiting_since: datetime | None
    oldest_waiting_seconds: float | None


class AgentOut(BaseModel):
    id: str
    name: str
    queues: list[str]
    skills: list[str]
    presence: str
    capacity: int
    load: int = Field(description="Conversations the agent holds now.")
    open_offers: int
    conversations: list[str]


# -- helpers -------------------------------------------------------------------------


def _not_found(what: str, id_: str) -> Problem:
    return Problem(404, "not-found", f"No such {what}", f"there is no {what} {id_}")


def mask_phone(phone: str) -> str:
    """``+13125550147`` as ``+*******0147``."""
    digits = re.sub(r"\D", "", phone)
    return "+" + "*" * max(0, len(digits) - 4) + digits[-4:]


def mask_email(email: str) -> str:
    """``ada.l@example.com`` as ``a***@example.com``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _customer_out(customer: CustomerRecord) -> CustomerOut:
    return CustomerOut(
        id=customer.id,
        name=customer.name,
        phone=mask_phone(customer.phone) if customer.phone else "",
        email=mask_email(customer.email) if customer.email else "",
        member_id=customer.member_id,
    )


async def _search(service: Service, q: str, limit: int) -> list[CustomerRecord]:
    """Customers ``q`` names: the pack's search tool when it has one, else the customer an
    identifier (phone, email, member id) or a customer id belongs to."""
    wanted = q.strip()
    search = service.business.pack.customers.search
    if search is not None:
        call = ToolCall(search, {"q": wanted, "limit": limit}, f"customer-search:{new_id()}",
                        utcnow())  # fmt: skip
        found = await service.systems.tools.call(call)
        listed = found.get("customers", [])
        return [CustomerRecord.of(c) for c in listed if isinstance(c, dict) and "id" in c]
    ways: tuple[By, ...] = ("phone", "email", "member")
    for by in ways:
        customer_id = await service.recognition.customer(by, wanted)
        if customer_id is not None:
            return [await customer_record(service.recognition, customer_id)]
    record = await service.systems.customers.get(wanted)
    return [record] if record is not None else []


# -- customers -----------------------------------------------------------------------


@router.get(
    "/customers", response_model=list[CustomerOut], responses=problem_responses(401, 403, 422)
)
async def customers(
    service: ServiceDep,
    caller: Caller,
    q: Annotated[str, Query(max_length=200, description="Part of a name, email, "
                                                          "phone or member id")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CustomerOut]:  # fmt: skip
    """Customers ``q`` names, by name: the business's customer search when the pack has
    one (a part of a name, email, phone or member id), else an exact phone, email, member id
    or customer id."""
    try:
        found = await _search(service, q, limit)
    except ToolFailure as failure:
        raise Problem(502, "business-system", "The business's system failed",
                      f"the customer search failed ({failure.code})") from None  # fmt: skip
    return [_customer_out(c) for c in sorted(found, key=lambda c: (c.name, c.id))[:limit]]


@router.get("/customers/{customer_id}", response_model=CustomerProfile, responses=READ_PROBLEMS)
async def customer_profile(customer_id: Id, service: ServiceDep, caller: Caller) -> CustomerProfile:
    """A customer's profile: masked contacts, what the business's systems list for them
    (orders, appointments…) and their conversations."""
    customer = await service.systems.customers.get(customer_id)
    if customer is None:
        raise _not_found("customer", customer_id)
    index = service.index
    await index.catch_up()
    entries = index.of_customer(customer_id)
    visible = readable_among(caller, (e.state for e in entries))
    conversations = [e.conversation_id for e in entries if e.conversation_id in visible]
    records: dict[str, Any] = {}
    for tool in service.business.pack.customers.records:
        call = ToolCall(tool, {"customer_id": customer_id}, f"customer-records:{new_id()}",
                        utcnow())  # fmt: skip
        try:
            records[tool] = await service.systems.tools.call(call)
        except ToolFailure as failure:
            records[tool] = {"error": failure.code}
    return CustomerProfile(**_customer_out(customer).model_dump(), records=records,
                           conversations=conversations)  # fmt: skip


# -- queues --------------------------------------------------------------------------


def _queue_out(routing: Router, name: str) -> QueueOut:
    spec = routing.config.queue(name)
    assert spec is not None
    state = routing.state
    waiting = queue_order(state, name)
    oldest = waiting[0].requested_at if waiting else None
    members = [
        MemberOut(id=a.id, name=a.name, presence=state.agent(a.id).presence)
        for a in sorted(routing.config.members(name), key=lambda a: a.id)
    ]
    return QueueOut(
        id=name,
        skills=sorted(spec.skills),
        agents=members,
        waiting=len(waiting),
        offered=sum(1 for w in waiting if w.offer is not None),
        oldest_waiting_since=oldest,
        oldest_waiting_seconds=(
            max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else None
        ),
    )


@router.get("/queues", response_model=list[QueueOut], responses=problem_responses(401, 403))
async def queues(service: ServiceDep, caller: Caller) -> list[QueueOut]:
    """The queues the caller may see: all for supervisors and admins, an agent's own."""
    routing = service.router
    names = sorted(q.name for q in routing.config.queues)
    return [_queue_out(routing, n) for n in names if allows(can_read_queue, caller, n)]


@router.get("/queues/{queue_id}", response_model=QueueOut, responses=READ_PROBLEMS)
async def queue(queue_id: Id, service: ServiceDep, caller: Caller) -> QueueOut:
    """One queue: its skills, its agents, and who is waiting how long."""
    can_read_queue(caller, queue_id)
    routing = service.router
    if routing.config.queue(queue_id) is None:
        raise _not_found("queue", queue_id)
    return _queue_out(routing, queue_id)


# -- agents --------------------------------------------------------------------------


def _agent_out(routing: Router, spec: AgentSpec) -> AgentOut:
    state = routing.state
    agent = state.agent(spec.id)
    busy = busy_counts(state).get(spec.id, 0)
    return AgentOut(
        id=spec.id,
        name=spec.name,
        queues=sorted(spec.queues),
        skills=sorted(spec.skills),
        presence=agent.presence,
        capacity=capacity_of(state, spec),
        load=agent.load,
        open_offers=busy - agent.load,
        conversations=sorted(agent.conversations),
    )


@router.get("/agents", response_model=list[AgentOut], responses=problem_responses(401, 403))
async def agents(service: ServiceDep, caller: Caller) -> list[AgentOut]:
    """Every human agent with presence, capacity and load (supervisors and admins)."""
    routing = service.router
    return [_agent_out(routing, a) for a in sorted(routing.config.agents, key=lambda a: a.id)]


@router.get("/agents/{agent_id}", response_model=AgentOut, responses=READ_PROBLEMS)
async def agent(agent_id: Id, service: ServiceDep, caller: Caller) -> AgentOut:
    """One human agent; an agent may read only themselves."""
    routing = service.router
    spec = routing.config.agent(agent_id)
    if spec is None:
        raise _not_found("agent", agent_id)
    return _agent_out(routing, spec)
