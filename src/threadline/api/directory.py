"""The directory: customers, queues and human agents, read-only.

Customers come from the business (the service's ``business``) with their contact
identifiers masked, and their conversations from the :class:`ConversationIndex`;
queues and agents from the router's configuration and its routing state.

Who may read what:

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
from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from threadline.api.auth import Caller
from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.api.problems import Problem
from threadline.business.values import Customer
from threadline.core.events import utcnow
from threadline.routing.queues import AgentSpec, busy_counts, capacity_of, queue_order
from threadline.routing.router import Router
from threadline.security import Forbidden, Principal, allows, can_read_conversation, can_read_queue

router = APIRouter(tags=["directory"])

STAFF: Final = frozenset({"agent", "supervisor", "admin"})
OVERSEERS: Final = frozenset({"supervisor", "admin"})
_PHONE_LIKE: Final = re.compile(r"[\d\s()+.-]+")
Id = Annotated[str, Field(min_length=1, max_length=200)]
READ_PROBLEMS: Final = problem_responses(401, 403, 404)


# -- models --------------------------------------------------------------------------


class CustomerOut(BaseModel):
    id: str
    name: str
    phone: str = Field(description="Masked: only the last four digits show.")
    email: str = Field(description="Masked: the first letter and the domain show.")
    member_id: str | None


class OrderOut(BaseModel):
    number: str
    item: str
    status: str
    detail: str


class AppointmentOut(BaseModel):
    id: str
    store_id: str
    service: str
    start: datetime
    end: datetime


class CustomerProfile(CustomerOut):
    orders: list[OrderOut]
    appointments: list[AppointmentOut]
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


def _refuse(caller: Principal, reason: str) -> Forbidden:
    return Forbidden(f"{caller.kind} {caller.subject}: {reason}")


def _staff(caller: Principal) -> None:
    if caller.kind not in STAFF:
        raise _refuse(caller, "the directory is for agents, supervisors and admins")


def _not_found(what: str, id_: str) -> Problem:
    return Problem(404, "not-found", f"No such {what}", f"there is no {what} {id_}")


def mask_phone(phone: str) -> str:
    """``+14155550123`` as ``+*******0123``."""
    digits = re.sub(r"\D", "", phone)
    return "+" + "*" * max(0, len(digits) - 4) + digits[-4:]


def mask_email(email: str) -> str:
    """``maya.chen@example.com`` as ``m***@example.com``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def matches(customer: Customer, q: str) -> bool:
    """Whether ``q`` occurs in the customer's name, email, member id or phone number."""
    wanted = q.strip().casefold()
    if not wanted:
        return True
    texts = (customer.name, customer.email, customer.member_id or "")
    if any(wanted in text.casefold() for text in texts):
        return True
    digits = re.sub(r"\D", "", wanted)
    return (
        len(digits) >= 3
        and _PHONE_LIKE.fullmatch(wanted) is not None
        and digits in re.sub(r"\D", "", customer.phone)
    )


def _customer_out(customer: Customer) -> CustomerOut:
    return CustomerOut(
        id=customer.id,
        name=customer.name,
        phone=mask_phone(customer.phone),
        email=mask_email(customer.email),
        member_id=customer.member_id,
    )


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
    """Customers whose name, email, phone or member id contains ``q``, by name."""
    _staff(caller)
    found = sorted(
        (c for c in service.business.customers if matches(c, q)), key=lambda c: (c.name, c.id)
    )
    return [_customer_out(c) for c in found[:limit]]


@router.get("/customers/{customer_id}", response_model=CustomerProfile, responses=READ_PROBLEMS)
async def customer_profile(customer_id: Id, service: ServiceDep, caller: Caller) -> CustomerProfile:
    """A customer's profile: masked contacts, orders, appointments and conversations."""
    if caller.kind == "customer":
        if caller.customer_id != customer_id:
            raise _refuse(caller, "customers may read only their own profile")
    else:
        _staff(caller)
    business = service.business
    customer = business.customer(customer_id)
    if customer is None:
        raise _not_found("customer", customer_id)
    index = service.index
    await index.catch_up()
    conversations = [
        e.conversation_id
        for e in index.of_customer(customer_id)
        if allows(can_read_conversation, caller, e.state)
    ]
    orders = [
        OrderOut(number=o.number, item=o.item, status=o.status, detail=o.detail)
        for o in business.orders_of(customer_id)
    ]
    appointments = [
        AppointmentOut(id=a.id, store_id=a.store_id, service=a.service, start=a.start, end=a.end)
        for a in business.appointments_for(customer_id)
    ]
    return CustomerProfile(
        **_customer_out(customer).model_dump(),
        orders=orders,
        appointments=appointments,
        conversations=conversations,
    )


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
    _staff(caller)
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
    if caller.kind not in OVERSEERS:
        raise _refuse(caller, "only supervisors and admins list agents")
    routing = service.router
    return [_agent_out(routing, a) for a in sorted(routing.config.agents, key=lambda a: a.id)]


@router.get("/agents/{agent_id}", response_model=AgentOut, responses=READ_PROBLEMS)
async def agent(agent_id: Id, service: ServiceDep, caller: Caller) -> AgentOut:
    """One human agent; an agent may read only themselves."""
    if caller.kind not in OVERSEERS and not (caller.kind == "agent" and caller.subject == agent_id):
        raise _refuse(caller, "agents may read only themselves")
    routing = service.router
    spec = routing.config.agent(agent_id)
    if spec is None:
        raise _not_found("agent", agent_id)
    return _agent_out(routing, spec)
