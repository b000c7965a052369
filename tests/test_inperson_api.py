"""The in-person channel's API on both stores: codes, visits, look-ups, queue and kiosk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TOKEN_SECRET, bearer
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.core.events import Actor, Event
from threadline.settings import Settings

MAYA = Actor("customer", "cus-maya")
PROBLEM = "application/problem+json"


@dataclass
class Counter:
    app: FastAPI
    client: httpx.AsyncClient

    def maya(self, cid: str) -> dict[str, str]:
        return bearer(self.app, "cus-maya", "customer", customer="cus-maya", conversation=cid)

    def priya(self) -> dict[str, str]:
        return bearer(self.app, "assoc-priya", "associate", store="sf-market")

    def diego(self) -> dict[str, str]:
        return bearer(self.app, "assoc-diego", "associate", store="oak-broadway")

    def kiosk(self, store: str = "sf-market") -> dict[str, str]:
        return bearer(self.app, f"kiosk-{store}", "kiosk", store=store)

    async def events(self, stream: str) -> list[Event]:
        codec = service_of(self.app).conversations.codec
        return [codec.decode(r) for r in await service_of(self.app).store.read(stream)]

    async def code(self, cid: str) -> dict[str, str]:
        response = await self.client.post("/chat/checkin-code", json={}, headers=self.maya(cid))
        assert response.status_code == 201, response.text
        body: dict[str, str] = response.json()
        return body


async def serve(store) -> AsyncIterator[Counter]:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Counter(app, client)


@pytest.fixture
async def counter(any_store) -> AsyncIterator[Counter]:
    async for c in serve(any_store):
        yield c


async def maya_chats(counter: Counter, cid: str = "conv-maya") -> str:
    events = [
        Event(cid, "conversation.started", {"origin": "chat"}, channel="chat", actor=MAYA,
              customer_id="cus-maya", idempotency_key=f"{cid}-start"),
        Event(cid, "message.received", {"text": "My order 1042 hasn't arrived"}, channel="chat",
              actor=MAYA, customer_id="cus-maya", idempotency_key=f"{cid}-ask"),
    ]  # fmt: skip
    await service_of(counter.app).conversations.record(cid, events)
    async with asyncio.timeout(5):  # the index follows the log a moment later
        while not service_of(counter.app).index.of_customer("cus-maya"):
            await asyncio.sleep(0.02)
    return cid


async def test_a_check_in_by_digits_opens_the_visit_on_the_same_conversation(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    assert code["code"].isdigit() and len(code["code"]) == 6
    assert code["qr"].startswith("data:image/png;base64,")
    response = await counter.client.post("/visits/checkin", json={"code": code["code"]},
                                         headers=counter.priya())  # fmt: skip
    assert response.status_code == 201, response.text
    visit = response.json()
    assert visit["conversation_id"] == cid and visit["leg_id"].startswith("visit-")
    timeline = await counter.events(cid)
    started = [e for e in timeline if e.type == "leg.started" and e.channel == "in_person"]
    assert len(started) == 1
    assert started[0].actor == Actor("human", "assoc-priya")
    assert started[0].payload["location"] == "sf-market"
    assert started[0].lineage is not None and started[0].lineage.producer == "threadline.inperson"
    # The customer was told in chat, without the digits ever reaching the conversation log.
    told = [e for e in timeline if e.type == "message.sent" and e.actor.id == "checkin"]
    assert told and code["code"] not in told[0].payload["text"]
    issued = await counter.events("system:checkin")
    assert code["code"] not in str([e.payload for e in issued])
    packet = await counter.client.get(f"/conversations/{cid}/packet", headers=counter.priya())
    assert packet.status_code == 200, packet.text


async def test_the_qr_token_checks_in_and_is_then_used_up(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    first = await counter.client.post("/visits/checkin", json={"code": code["token"]},
                                      headers=counter.priya())  # fmt: skip
    assert first.status_code == 201, first.text
    again = await counter.client.post("/visits/checkin", json={"code": code["token"]},
                                      headers=counter.priya())  # fmt: skip
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert again.json()["type"] == "urn:threadline:problem:checkin-code-used"
    digits = await counter.client.post("/visits/checkin", json={"code": code["code"]},
                                       headers=counter.priya())  # fmt: skip
    assert digits.status_code == 409  # the digits stand for the same, spent, token


async def test_forged_and_foreign_tokens_are_refused_and_write_nothing(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    head, body, signature = code["token"].split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    api_token = counter.maya(cid)["Authorization"].removeprefix("Bearer ")
    before = len(await counter.events(cid))
    for bad in (forged, api_token):
        response = await counter.client.post("/visits/checkin", json={"code": bad},
                                             headers=counter.priya())  # fmt: skip
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "urn:threadline:problem:checkin-code-refused"
    assert len(await counter.events(cid)) == before


async def test_an_expired_code_is_refused(counter) -> None:
    cid = await maya_chats(counter)
    await counter.code(cid)
    codes = service_of(counter.app).inperson.codes
    codes.ttl = timedelta(seconds=1)
    codes._issuer.max_ttl = codes._verifier.max_ttl = timedelta(seconds=1)
    codes._verifier.leeway = timedelta(0)
    short = await counter.code(cid)
    await asyncio.sleep(1.1)
    for code in (short["token"], short["code"]):
        response = await counter.client.post("/visits/checkin", json={"code": code},
                                             headers=counter.priya())  # fmt: skip
        assert response.status_code == 422, response.text


async def test_guessing_digits_is_limited(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    wrong = f"{(int(code['code']) + 1) % 1_000_000:06d}"
    statuses = []
    for _ in range(6):
        response = await counter.client.post("/visits/checkin", json={"code": wrong},
                                             headers=counter.diego())  # fmt: skip
        statuses.append(response.status_code)
    assert statuses == [422] * 5 + [429]
    # Even the right code is refused to the guesser until the window passes.
    right = await counter.client.post("/visits/checkin", json={"code": code["code"]},
                                      headers=counter.diego())  # fmt: skip
    assert right.status_code == 429 and "Retry-After" in right.headers


async def test_a_code_used_before_a_restart_is_refused_after_it(any_store) -> None:
    async for counter in serve(any_store):
        cid = await maya_chats(counter)
        code = await counter.code(cid)
        first = await counter.client.post("/visits/checkin", json={"code": code["token"]},
                                          headers=counter.priya())  # fmt: skip
        assert first.status_code == 201
    async for counter in serve(any_store):
        for sent in (code["token"], code["code"]):
            again = await counter.client.post("/visits/checkin", json={"code": sent},
                                              headers=counter.priya())  # fmt: skip
            assert again.status_code == 409, again.text


async def test_a_look_up_needs_a_reason_and_records_it(counter) -> None:
    await maya_chats(counter)
    missing = await counter.client.post(
        "/customers/lookup",
        json={"by": "phone", "value": "+1 415 555 0123"},
        headers=counter.priya(),
    )
    assert missing.status_code == 422 and missing.headers["content-type"] == PROBLEM
    assert not [
        e for e in await counter.events("customer:cus-maya") if e.type == "customer.looked_up"
    ]
    found = await counter.client.post(
        "/customers/lookup",
        json={"by": "phone", "value": "(415) 555-0123", "reason": "collecting order 1042"},
        headers=counter.priya(),
    )
    assert found.status_code == 200, found.text
    assert found.json()["customer"]["id"] == "cus-maya"
    assert [c["conversation_id"] for c in found.json()["conversations"]] == ["conv-maya"]
    (looked,) = [
        e for e in await counter.events("customer:cus-maya") if e.type == "customer.looked_up"
    ]
    assert looked.payload["reason"] == "collecting order 1042"
    assert looked.payload["looked_up_by"] == "assoc-priya"


async def test_a_visit_opens_only_after_a_look_up(counter) -> None:
    cid = await maya_chats(counter)
    refused = await counter.client.post(f"/conversations/{cid}/visit", headers=counter.priya())
    assert refused.status_code == 403
    await counter.client.post("/customers/lookup", json={"by": "member", "value": "nw-100234",
                              "reason": "walk-in"}, headers=counter.priya())  # fmt: skip
    opened = await counter.client.post(f"/conversations/{cid}/visit", headers=counter.priya())
    assert opened.status_code == 201, opened.text
    # Diego at the other store still cannot read it.
    other = await counter.client.get(f"/conversations/{cid}/packet", headers=counter.diego())
    assert other.status_code == 403


async def test_a_visit_is_worked_and_resolved_once_per_key(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    priya = counter.priya()
    await counter.client.post("/visits/checkin", json={"code": code["code"]}, headers=priya)
    calls = [
        ("note", {"text": "Laptop handed over"}),
        ("action", {"action": "replaced_device", "detail": "Aster 14"}),
        ("resolve", {"outcome": "replacement_collected"}),
    ]
    for path, body in calls:
        for _ in range(2):  # a replay answers as the first did
            response = await counter.client.post(
                f"/conversations/{cid}/visit/{path}", json=body,
                headers={**priya, "Idempotency-Key": f"k-{path}"},
            )  # fmt: skip
            assert response.status_code == 200, response.text
    timeline = await counter.events(cid)
    types = [e.type for e in timeline if e.actor.id == "assoc-priya"]
    assert types.count("note.added") == 1
    assert types.count("action.completed") == 1
    assert types.count("conversation.resolved") == 1
    assert types[-2:] == ["conversation.resolved", "leg.ended"]
    assert [e.type for e in timeline][-2:] == ["conversation.resolved", "leg.ended"]
    state = await service_of(counter.app).conversations.rehydrate(cid)
    assert state.status == "resolved" and state.outcome == "replacement_collected"


async def test_hand_back_messages_the_customer_on_chat(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    await counter.client.post("/visits/checkin", json={"code": code["code"]},
                              headers=counter.priya())  # fmt: skip
    response = await counter.client.post(
        f"/conversations/{cid}/visit/hand-back",
        json={"text": "We'll message you when the part arrives.", "mode": "wait"},
        headers=counter.priya(),
    )
    assert response.status_code == 200, response.text
    timeline = await counter.events(cid)
    sent = [e for e in timeline if e.type == "message.sent" and e.actor.id == "assoc-priya"]
    assert sent and sent[0].channel == "chat"
    state = await service_of(counter.app).conversations.rehydrate(cid)
    assert state.status == "waiting_on_customer"
    assert not [leg for leg in state.live_legs.values() if leg["channel"] == "in_person"]


async def test_kiosk_check_in_appears_in_the_store_queue_and_can_be_taken(counter) -> None:
    cid = await maya_chats(counter)
    joined = await counter.client.post("/kiosk/checkin", json={"phone": "415-555-0123"},
                                       headers=counter.kiosk())  # fmt: skip
    assert joined.status_code == 201, joined.text
    assert joined.json()["position"] == 1
    await asyncio.sleep(1.1)
    queue = await counter.client.get("/stores/sf-market/queue", headers=counter.priya())
    (entry,) = queue.json()["waiting"]
    assert entry["display_name"] == "Maya C." and entry["conversation_id"] == cid
    assert entry["waiting_seconds"] >= 1
    other = await counter.client.get("/stores/sf-market/queue", headers=counter.diego())
    assert other.status_code == 403
    taken = await counter.client.post(f"/stores/sf-market/queue/{entry['entry_id']}/take",
                                      headers=counter.priya())  # fmt: skip
    assert taken.status_code == 201, taken.text
    assert (await counter.client.get("/stores/sf-market/queue", headers=counter.priya())).json()[
        "waiting"
    ] == []
    unknown = await counter.client.post("/kiosk/checkin", json={"phone": "+1 212 555 0000"},
                                        headers=counter.kiosk())  # fmt: skip
    assert unknown.status_code == 404


async def test_a_code_for_one_store_admits_nobody_at_another(counter) -> None:
    cid = await maya_chats(counter)
    response = await counter.client.post("/chat/checkin-code", json={"store_id": "sf-market"},
                                         headers=counter.maya(cid))  # fmt: skip
    assert response.status_code == 201, response.text
    code = response.json()
    elsewhere = [
        ("/visits/checkin", {"code": code["code"]}, counter.diego()),
        ("/visits/checkin", {"code": code["token"]}, counter.diego()),
        ("/kiosk/checkin", {"code": code["code"]}, counter.kiosk("oak-broadway")),
    ]
    for path, body, headers in elsewhere:
        refused = await counter.client.post(path, json=body, headers=headers)
        assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
        assert "another store" in refused.json()["detail"]
    timeline = await counter.events(cid)
    assert not any(e.type == "leg.started" and e.channel == "in_person" for e in timeline)
    here = await counter.client.post("/visits/checkin", json={"code": code["code"]},
                                     headers=counter.priya())  # fmt: skip
    assert here.status_code == 201, here.text  # not used up by the refusals


async def test_a_kiosk_that_guesses_wrong_is_limited_and_its_store_is_not(counter) -> None:
    cid = await maya_chats(counter)
    code = await counter.code(cid)
    wrong = f"{(int(code['code']) + 1) % 1_000_000:06d}"
    statuses = []
    for _ in range(6):
        response = await counter.client.post("/kiosk/checkin", json={"code": wrong},
                                             headers=counter.kiosk())  # fmt: skip
        statuses.append(response.status_code)
    assert statuses[-1] == 429  # the guessing kiosk waits
    # The store's associate still looks customers up, and another kiosk takes a valid code.
    lookup = await counter.client.post(
        "/customers/lookup", headers=counter.priya(),
        json={"by": "phone", "value": "+14155550123", "reason": "customer at the counter"},
    )  # fmt: skip
    assert lookup.status_code == 200, lookup.text
    other = bearer(counter.app, "kiosk-sf-market-2", "kiosk", store="sf-market")
    valid = await counter.client.post("/kiosk/checkin", json={"code": code["code"]},
                                      headers=other)  # fmt: skip
    assert valid.status_code == 201, valid.text


async def test_a_card_noted_at_the_counter_is_stored_as_its_last_four(
    counter, any_store, pg_schema
) -> None:
    from tests.stored_bytes import stored_bytes
    from tests.test_card_data import full_cards

    cid = await maya_chats(counter)
    code = await counter.code(cid)
    priya = counter.priya()
    await counter.client.post("/visits/checkin", json={"code": code["code"]}, headers=priya)
    noted = await counter.client.post(
        f"/conversations/{cid}/visit/note", headers=priya,
        json={"text": "paid the repair at the till with 4111-1111-1111-1111, cvv 9731"},
    )  # fmt: skip
    assert noted.status_code == 200, noted.text
    (note,) = [e for e in await counter.events(cid) if e.type == "note.added"]
    assert note.payload["text"] == (
        "paid the repair at the till with [card ending 1111], cvv [security code]"
    )
    written = await stored_bytes(any_store, pg_schema)
    assert full_cards(written) == set() and b"cvv 9731" not in written
