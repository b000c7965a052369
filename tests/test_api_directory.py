"""The directory on both stores: customers, queues and agents, and who may read them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from tests.timelines import PROBLEM, Service, handoff, held_by, offered, serve, started
from threadline.api.deps import service_of
from threadline.core.events import utcnow


@pytest.fixture
async def service(any_store) -> AsyncIterator[Service]:
    async with serve(any_store) as running:
        yield running


def maya(service: Service, **claims: object) -> dict[str, str]:
    return service.token("maya", "customer", customer="cus-maya", **claims)


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and response.headers["content-type"] == PROBLEM


def not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and response.headers["content-type"] == PROBLEM


async def until(probe, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """Poll ``probe`` until it returns something truthy (the router folds from the bus)."""
    async with asyncio.timeout(timeout):
        while not (found := await probe()):
            await asyncio.sleep(0.02)
    return found


# -- customers -----------------------------------------------------------------------


async def test_staff_list_customers_with_masked_contacts(service: Service) -> None:
    for headers in (service.agent("agent-ana", "orders"), service.sam, service.admin):
        response = await service.get("/customers", headers)
        assert response.status_code == 200, response.text
        assert [c["id"] for c in response.json()] == ["cus-lena", "cus-maya", "cus-omar"]
    first = response.json()[1]
    assert first == {"id": "cus-maya", "name": "Maya Chen", "phone": "+*******0123",
                     "email": "m***@example.com", "member_id": "NW-100234"}  # fmt: skip
    assert "555" not in response.text and "maya.chen" not in response.text


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("maya", ["cus-maya"]),
        ("PARK", ["cus-lena"]),
        ("example.net", ["cus-omar"]),
        ("+1 415 555", ["cus-maya"]),
        ("(510) 555-0188", ["cus-omar"]),
        ("555", ["cus-lena", "cus-maya", "cus-omar"]),
        ("nw-1008", ["cus-omar"]),
        ("NW-100234", ["cus-maya"]),
        ("nobody", []),
    ],
)
async def test_q_searches_names_emails_phones_and_member_ids(
    service: Service, q: str, expected: list[str]
) -> None:
    response = await service.get("/customers", service.sam, q=q)
    assert [c["id"] for c in response.json()] == expected


async def test_a_profile_shows_the_business_records_and_conversations(service: Service) -> None:
    await service.record("c-maya-1", started("c-maya-1"), handoff("c-maya-1", "orders"))
    await service.record("c-maya-2", started("c-maya-2"), handoff("c-maya-2", "repairs"))
    await service.record("c-omar", started("c-omar", "cus-omar"))
    profile = (await service.get("/customers/cus-maya", service.sam)).json()
    assert profile["name"] == "Maya Chen" and profile["phone"] == "+*******0123"
    orders = profile["records"]["customer_orders"]["orders"]
    assert [(o["order"], o["status"]) for o in orders] == [("1042", "delayed")]
    assert profile["records"]["customer_appointments"] == {"appointments": []}
    assert profile["conversations"] == ["c-maya-2", "c-maya-1"]
    assert "postcode" not in str(profile) and "94103" not in str(profile)
    omar = (await service.get("/customers/cus-omar", service.sam)).json()
    (repair,) = omar["records"]["customer_appointments"]["appointments"]
    assert repair["appointment_id"] == "apt-omar-screen" and repair["location"] == "oak-broadway"
    start = datetime.fromisoformat(repair["start"])
    assert (start.hour, start.minute) == (11, 0) and start.date() > utcnow().date() - timedelta(1)
    assert omar["conversations"] == ["c-omar"]


async def test_an_agent_sees_only_the_conversations_they_may_read(service: Service) -> None:
    await service.record("c-maya-1", started("c-maya-1"), handoff("c-maya-1", "orders"))
    await service.record("c-maya-2", started("c-maya-2"), handoff("c-maya-2", "repairs"))
    ana = service.agent("agent-ana", "orders")
    profile = await service.get("/customers/cus-maya", ana)
    assert profile.status_code == 200 and profile.json()["conversations"] == ["c-maya-1"]


async def test_reading_the_directory_records_nothing(service: Service) -> None:
    await service.record("c-maya-1", started("c-maya-1"))
    before = await service_of(service.app).store.read_all(0, 10_000)
    ana = service.agent("agent-ana", "orders")
    for path in ("/customers", "/customers/cus-maya", "/customers/cus-omar", "/queues",
                 "/queues/orders", "/agents/agent-ana"):  # fmt: skip
        assert (await service.get(path, ana)).status_code == 200
    assert await service_of(service.app).store.read_all(0, 10_000) == before


async def test_a_customer_reads_only_their_own_profile(service: Service) -> None:
    await service.record("c-maya-1", started("c-maya-1"))
    await service.record("c-maya-2", started("c-maya-2"))
    own = await service.get("/customers/cus-maya", maya(service))
    assert own.status_code == 200 and own.json()["conversations"] == ["c-maya-2", "c-maya-1"]
    bound = await service.get("/customers/cus-maya", maya(service, conversation="c-maya-1"))
    assert bound.json()["conversations"] == ["c-maya-1"]
    assert refused(await service.get("/customers/cus-omar", maya(service)))
    assert refused(await service.get("/customers/cus-nobody", maya(service)))
    assert refused(await service.get("/customers", maya(service)))


async def test_adapters_and_strangers_are_kept_out_of_customers(service: Service) -> None:
    chat = service.token("web-chat", "adapter:chat")
    assert refused(await service.get("/customers", chat))
    assert refused(await service.get("/customers/cus-maya", chat))
    bare = await service.client.get("/customers/cus-maya")
    assert bare.status_code == 401 and bare.headers["content-type"] == PROBLEM


async def test_an_unknown_customer_is_not_found(service: Service) -> None:
    assert not_found(await service.get("/customers/cus-nobody", service.sam))
    assert not_found(await service.get("/customers/cus-nobody", service.agent("agent-ben")))
    long = await service.get("/customers", service.sam, q="x" * 201)
    assert long.status_code == 422 and long.headers["content-type"] == PROBLEM


# -- queues --------------------------------------------------------------------------


async def test_queues_show_skills_agents_and_who_waits(service: Service) -> None:
    asked = utcnow() - timedelta(minutes=3)
    await service.record("c-1", started("c-1", at=asked), handoff("c-1", "orders", at=asked))
    await service.record("c-2", started("c-2", "cus-omar"), handoff("c-2", "orders"),
                         offered("c-2", "agent-ana", "orders"))  # fmt: skip

    async def orders_waiting() -> dict[str, object] | None:
        body = (await service.get("/queues/orders", service.sam)).json()
        return body if body["waiting"] == 2 and body["offered"] == 1 else None

    orders = await until(orders_waiting)
    assert orders["skills"] == ["delivery", "orders"]
    assert orders["agents"] == [{"id": "agent-ana", "name": "Ana Ruiz", "presence": "offline"}]
    since = datetime.fromisoformat(str(orders["oldest_waiting_since"]))
    assert abs((since - asked).total_seconds()) < 1
    assert 170 < float(orders["oldest_waiting_seconds"]) < 600  # type: ignore[arg-type]
    every = (await service.get("/queues", service.sam)).json()
    assert [q["id"] for q in every] == ["billing", "orders", "repairs"]
    billing = every[0]
    assert [a["id"] for a in billing["agents"]] == ["agent-ana", "agent-ben"]
    assert billing["waiting"] == 0 and billing["oldest_waiting_since"] is None


async def test_agents_see_only_their_queues(service: Service) -> None:
    ben = service.agent("agent-ben", "repairs")
    assert [q["id"] for q in (await service.get("/queues", ben)).json()] == ["repairs"]
    assert (await service.get("/queues/repairs", ben)).status_code == 200
    assert refused(await service.get("/queues/orders", ben))
    assert refused(await service.get("/queues/nowhere", ben))
    assert not_found(await service.get("/queues/ghost", service.agent("agent-ben", "ghost")))
    assert not_found(await service.get("/queues/nowhere", service.admin))
    for outsider in (maya(service), service.token("web-chat", "adapter:chat")):
        assert refused(await service.get("/queues", outsider))
        assert refused(await service.get("/queues/orders", outsider))


# -- agents --------------------------------------------------------------------------


async def test_supervisors_see_every_agent_with_presence_and_load(service: Service) -> None:
    ana = service.agent("agent-ana", "orders", "billing")
    await service.client.put("/agents/me/presence", json={"presence": "away"}, headers=ana)
    await service.record("c-held", started("c-held"), held_by("c-held", "agent-ana", "orders"))

    async def ana_settled() -> dict[str, object] | None:
        body = (await service.get("/agents/agent-ana", service.sam)).json()
        return body if body["presence"] == "away" and body["load"] == 1 else None

    agent = await until(ana_settled)
    assert agent == {"id": "agent-ana", "name": "Ana Ruiz", "queues": ["billing", "orders"],
                     "skills": ["delivery", "orders", "payments", "refunds"],
                     "presence": "away", "capacity": 2, "load": 1, "open_offers": 0,
                     "conversations": ["c-held"]}  # fmt: skip
    every = (await service.get("/agents", service.admin)).json()
    assert [a["id"] for a in every] == ["agent-ana", "agent-ben", "sup-sam"]
    assert every[1]["load"] == 0 and every[1]["presence"] == "offline"


async def test_an_agent_reads_only_themselves(service: Service) -> None:
    ana = service.agent("agent-ana", "orders")
    own = await service.get("/agents/agent-ana", ana)
    assert own.status_code == 200 and own.json()["name"] == "Ana Ruiz"
    assert refused(await service.get("/agents/agent-ben", ana))
    assert refused(await service.get("/agents/nobody", ana))
    assert refused(await service.get("/agents", ana))
    assert not_found(await service.get("/agents/nobody", service.sam))
    for outsider in (maya(service), service.token("web-chat", "adapter:chat")):
        assert refused(await service.get("/agents", outsider))
        assert refused(await service.get("/agents/agent-ana", outsider))
    me = await service.get("/agents/me", ana)  # still the desk's own route
    assert me.status_code == 200 and me.json()["kind"] == "agent"


async def test_the_openapi_document_describes_the_directory(service: Service) -> None:
    paths = (await service.client.get("/openapi.json")).json()["paths"]
    models = {
        "/customers": "CustomerOut",
        "/customers/{customer_id}": "CustomerProfile",
        "/queues": "QueueOut",
        "/queues/{queue_id}": "QueueOut",
        "/agents": "AgentOut",
        "/agents/{agent_id}": "AgentOut",
    }
    for path, model in models.items():
        responses = paths[path]["get"]["responses"]
        assert model in str(responses["200"]["content"]["application/json"]["schema"]), path
        assert "403" in responses, path
