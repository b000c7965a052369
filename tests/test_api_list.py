"""GET /conversations on both stores: filters, paging, who sees what, bad input, restarts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.timelines import (
    PROBLEM,
    Service,
    abandoned,
    handoff,
    held_by,
    leg,
    leg_ended,
    offered,
    resolved,
    sent,
    serve,
    started,
    waiting,
)
from threadline.api.deps import service_of
from threadline.core.events import utcnow

#: Recorded in this order, so newest activity first is the reverse.
SCENE = (
    "c-bot", "c-orders", "c-billing-ana", "c-repairs",
    "c-offered", "c-resolved", "c-waiting", "c-abandoned",
)  # fmt: skip


async def record_scene(service: Service) -> None:
    r = service.record
    await r("c-bot", started("c-bot"))
    await r("c-orders", started("c-orders"), handoff("c-orders", "orders"))
    await r("c-billing-ana", started("c-billing-ana", "cus-omar", "voice"),
            held_by("c-billing-ana", "agent-ana", "billing"),
            sent("c-billing-ana", "Hi Omar,\n Ana here about   your refund.", "voice"))  # fmt: skip
    await r("c-repairs", started("c-repairs", "cus-omar"), handoff("c-repairs", "repairs"))
    await r("c-offered", started("c-offered", "cus-lena"), handoff("c-offered", "repairs"),
            offered("c-offered", "agent-ana", "repairs"))  # fmt: skip
    await r("c-resolved", started("c-resolved"), leg_ended("c-resolved", "chat"),
            leg("c-resolved", "voice"), resolved("c-resolved"))  # fmt: skip
    await r("c-waiting", started("c-waiting", "cus-lena", "in_person"), waiting("c-waiting"))
    await r("c-abandoned", started("c-abandoned", "cus-lena"), abandoned("c-abandoned"))


@pytest.fixture
async def service(any_store) -> AsyncIterator[Service]:
    async with serve(any_store) as running:
        yield running


@pytest.fixture
async def scene(service: Service) -> Service:
    await record_scene(service)
    return service


async def listed(service: Service, headers: dict[str, str], **params: object) -> list[str]:
    """Every id the listing gives, following cursors to the end."""
    ids: list[str] = []
    cursor = params.pop("cursor", None)
    while True:
        page = await service.get("/conversations", headers, **params,
                                 **({"cursor": cursor} if cursor else {}))  # fmt: skip
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


# -- what a listing holds ------------------------------------------------------------


async def test_newest_activity_comes_first(scene: Service) -> None:
    assert await listed(scene, scene.sam) == list(reversed(SCENE))
    await scene.record("c-bot", sent("c-bot", "still there?"))
    assert (await listed(scene, scene.sam))[0] == "c-bot"


async def test_an_item_summarises_the_conversation(scene: Service) -> None:
    body = (await scene.get("/conversations", scene.sam, limit=200)).json()
    items = {item["id"]: item for item in body["items"]}
    held = items["c-billing-ana"]
    assert {k: held[k] for k in ("status", "customer_id", "queue", "assignee")} == {
        "status": "with_human", "customer_id": "cus-omar", "queue": "billing",
        "assignee": "agent-ana",
    }  # fmt: skip
    assert held["live_channels"] == ["voice"] and held["channels"] == ["voice"]
    assert held["legs"] == 1
    assert held["last_seq"] == len(await service_of(scene.app).store.read("c-billing-ana"))
    assert held["last_message"]["text"] == "Hi Omar, Ana here about your refund."
    assert held["last_message"]["actor"] == "human"
    assert held["last_message"]["channel"] == "voice"
    assert datetime.fromisoformat(held["started_at"]) <= datetime.fromisoformat(held["updated_at"])
    moved = items["c-resolved"]
    assert moved["live_channels"] == ["voice"] and moved["channels"] == ["chat", "voice"]
    assert moved["legs"] == 2 and moved["last_message"] is None


async def test_only_conversations_are_listed(service: Service) -> None:
    await service.record("c-bot", started("c-bot"))
    away = await service.client.put("/agents/me/presence", json={"presence": "away"},
                                    headers=service.agent("agent-ana", "orders"))  # fmt: skip
    assert away.status_code == 200
    assert await service_of(service.app).store.read("agent:agent-ana")
    assert await listed(service, service.admin) == ["c-bot"]


# -- filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "awaiting_human"}, {"c-orders", "c-repairs", "c-offered"}),
        ({"status": "with_human,resolved"}, {"c-billing-ana", "c-resolved"}),
        ({"status": ["with_human", "resolved"]}, {"c-billing-ana", "c-resolved"}),
        ({"status": ["waiting_on_customer", "abandoned,bot_active"]},
         {"c-waiting", "c-abandoned", "c-bot"}),
        ({"queue": "repairs"}, {"c-repairs", "c-offered"}),
        ({"queue": "billing"}, {"c-billing-ana"}),
        ({"assignee": "agent-ana"}, {"c-billing-ana"}),
        ({"assignee": "agent-ben"}, set()),
        ({"customer_id": "cus-lena"}, {"c-offered", "c-waiting", "c-abandoned"}),
        ({"channel": "voice"}, {"c-billing-ana", "c-resolved"}),
        ({"channel": "in_person"}, {"c-waiting"}),
        ({"customer_id": "cus-omar", "status": "awaiting_human"}, {"c-repairs"}),
    ],
)  # fmt: skip
async def test_filters_select_exactly_the_matching_conversations(
    scene: Service, params: dict[str, object], expected: set[str]
) -> None:
    ids = await listed(scene, scene.admin, **params)
    assert set(ids) == expected
    assert ids == [cid for cid in reversed(SCENE) if cid in expected]


async def test_updated_after_compares_the_last_activity(service: Service) -> None:
    old = datetime(2024, 1, 1, tzinfo=UTC)
    await service.record("c-old", started("c-old", at=old))
    later = old + timedelta(days=90)
    await service.record("c-moved", started("c-moved", at=old), sent("c-moved", "hi", at=later))
    await service.record("c-new", started("c-new"))
    after = {"updated_after": "2024-03-01T00:00:00Z"}
    assert await listed(service, service.sam, **after) == ["c-new", "c-moved"]
    assert await listed(service, service.sam, updated_after=utcnow().isoformat()) == []


# -- paging --------------------------------------------------------------------------


async def test_pages_lose_and_repeat_nothing(service: Service) -> None:
    ids = [f"c-{n:02d}" for n in range(23)]
    for cid in ids:
        await service.record(cid, started(cid, "cus-omar" if int(cid[2:]) % 3 else "cus-maya"))
    pages = []
    cursor = None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = (await service.get("/conversations", service.sam, **params)).json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [cid for page in pages for cid in page] == list(reversed(ids))
    # Filtered and restricted listings page the same way: full pages until the last.
    maya = service.token("maya", "customer", customer="cus-maya")
    mine = [cid for cid in reversed(ids) if int(cid[2:]) % 3 == 0]
    assert await listed(service, maya, limit=3) == mine
    assert await listed(service, service.sam, customer_id="cus-omar", limit=4) == [
        cid for cid in reversed(ids) if cid not in mine
    ]


async def test_a_conversation_that_moves_while_paging_is_not_repeated(service: Service) -> None:
    ids = [f"c-{n:02d}" for n in range(10)]
    for cid in ids:
        await service.record(cid, started(cid))
    first = (await service.get("/conversations", service.sam, limit=4)).json()
    seen = [item["id"] for item in first["items"]]
    await service.record(seen[1], sent(seen[1], "news"))  # jumps to the top
    rest = await listed(service, service.sam, limit=4, cursor=first["next_cursor"])
    assert not set(rest) & set(seen)
    assert seen + rest == list(reversed(ids))


# -- who sees what -------------------------------------------------------------------


async def readable(service: Service, headers: dict[str, str]) -> set[str]:
    """The conversations of the scene the caller may read one by one."""
    found = set()
    for cid in SCENE:
        response = await service.get(f"/conversations/{cid}", headers)
        assert response.status_code in {200, 403}, response.text
        if response.status_code == 200:
            found.add(cid)
    return found


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("ana", {"c-orders", "c-billing-ana", "c-offered"}),
        ("ben", {"c-repairs", "c-offered"}),
        ("maya", {"c-bot", "c-orders", "c-resolved"}),
        ("maya-bound", {"c-orders"}),
        ("sam", set(SCENE)),
        ("admin", set(SCENE)),
    ],
)
async def test_each_caller_lists_what_they_may_read(
    scene: Service, who: str, expected: set[str]
) -> None:
    headers = {
        "ana": scene.agent("agent-ana", "orders"),
        "ben": scene.agent("agent-ben", "repairs"),
        "maya": scene.token("maya", "customer", customer="cus-maya"),
        "maya-bound": scene.token("maya", "customer", customer="cus-maya",
                                  conversation="c-orders"),
        "sam": scene.sam,
        "admin": scene.admin,
    }[who]  # fmt: skip
    ids = await listed(scene, headers, limit=2)
    assert set(ids) == expected == await readable(scene, headers)
    assert len(ids) == len(expected)


async def test_a_customer_cannot_list_someone_else(scene: Service) -> None:
    maya = scene.token("maya", "customer", customer="cus-maya")
    assert await listed(scene, maya, customer_id="cus-omar") == []


async def test_adapters_are_refused_and_a_token_is_required(scene: Service) -> None:
    chat = await scene.get("/conversations", scene.token("web-chat", "adapter:chat"))
    assert chat.status_code == 403 and chat.headers["content-type"] == PROBLEM
    bare = await scene.client.get("/conversations")
    assert bare.status_code == 401 and bare.headers["content-type"] == PROBLEM


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "open"}, "query.status"),
        ({"status": "resolved,closed"}, "query.status"),
        ({"channel": "fax"}, "query.channel"),
        ({"queue": "nowhere"}, "query.queue"),
        ({"colour": "red"}, "query.colour"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
        ({"updated_after": "2024-03-01T00:00:00"}, "query.updated_after"),
        ({"updated_after": "last week"}, "query.updated_after"),
    ],
)
async def test_unknown_filter_values_are_unprocessable(
    scene: Service, params: dict[str, object], field: str
) -> None:
    response = await scene.get("/conversations", scene.sam, **params)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:threadline:problem:validation"
    assert field in {e["field"] for e in response.json()["errors"]}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "abc", _b64(b"[1]"), _b64(b'["a", "b"]'), _b64(b'[-1, "x"]'), _b64(b"{}"),
     _b64(b'[true, "x"]'), _b64(b"\xff\xfe")],
)  # fmt: skip
async def test_a_bad_cursor_is_a_bad_request(scene: Service, cursor: str) -> None:
    response = await scene.get("/conversations", scene.sam, cursor=cursor)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:threadline:problem:bad-cursor"


# -- the index behind it -------------------------------------------------------------


async def test_the_listing_is_the_same_after_a_restart(any_store) -> None:
    async with serve(any_store) as before:
        await record_scene(before)
        ana = before.agent("agent-ana", "orders")
        first = (await before.get("/conversations", before.sam, limit=200)).json()
        first_ana = await listed(before, ana, limit=2)
    async with serve(any_store) as after:
        assert len(service_of(after.app).index) == len(SCENE)  # built at start, before any request
        again = (await after.get("/conversations", after.sam, limit=200)).json()
        assert again == first
        assert await listed(after, after.agent("agent-ana", "orders"), limit=2) == first_ana
        await after.record("c-bot", sent("c-bot", "after the restart"))
        assert (await listed(after, after.sam))[0] == "c-bot"


async def test_the_index_follows_the_log_live(scene: Service) -> None:
    index = service_of(scene.app).index
    await scene.record("c-bot", sent("c-bot", "live"), settle=False)
    async with asyncio.timeout(10):  # delivered by the bus, without any read catching up
        while (entry := index.get("c-bot")) is None or entry.last_message is None:
            await asyncio.sleep(0.02)
    assert entry.last_message.text == "live"


async def test_the_openapi_document_describes_the_listing(service: Service) -> None:
    document = (await service.client.get("/openapi.json")).json()
    operation = document["paths"]["/conversations"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"status", "queue", "assignee", "customer_id", "channel", "updated_after",
            "limit", "cursor"} <= names  # fmt: skip
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/ConversationPage")
    assert {"400", "403", "422"} <= operation["responses"].keys()
    problem = operation["responses"]["400"]["content"][PROBLEM]["schema"]
    assert {"type", "title", "status"} <= problem["properties"].keys()
