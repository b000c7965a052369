"""The pack's test provider over real HTTP: what it calls and says follows from the request
alone, read with the pack's classifier and slot reader, whole or streamed, the same every
time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from threadline.agents import EmbeddedAgent
from threadline.agents.model_agent import ModelAgent
from threadline.core.errors import ModelUnavailable
from threadline.core.model import ChatMessage, Completion, ModelRequest, TextDelta, ToolCall
from threadline.evaluation.agents import agent_factory
from threadline.evaluation.sandbox import Sandbox
from threadline.models import OpenAICompatible
from threadline.settings import Settings
from threadline.testing.chat_request import read_request
from threadline.testing.live import LiveServer
from threadline.testing.pack_model import PackModel

NOW = datetime(2025, 3, 4, 18, 0, tzinfo=UTC)  # Tuesday 10:00 in Los Angeles


class Served:
    """The test provider on a live server, a provider asking it, and the pack's agents'
    tools as the model-backed agent offers them."""

    def __init__(self, model: PackModel, url: str, systems) -> None:
        self.model = model
        self.url = url
        self.provider = OpenAICompatible(url, "pack-model", None, retries=0, timeout=5.0)
        several = ModelAgent(EmbeddedAgent(systems), self.provider)
        one = systems.business.pack.model.model_copy(update={"agents": {}, "start": None})
        self.triage = several.profiles["triage"].tools
        self.orders = several.profiles["orders"].tools
        self.every = ModelAgent(EmbeddedAgent(systems), self.provider, one).profiles[None].tools
        self.business = systems.business

    def prompt(self, *, known: str = "", level: str = "none", places: bool = True) -> ChatMessage:
        """A system prompt in the model-backed agent's words."""
        lines = ["You are the business's assistant.",
                 "Today is Tuesday 2025-03-04 (America/Los_Angeles)."]  # fmt: skip
        if places:
            lines += [f"Location {p.id}: {p.name}, {p.address}. Hours: {p.hours.describe()}."
                      for p in self.business.locations]  # fmt: skip
        lines.append(f"This contact has proven who they are at level: {level}.")
        if known:
            lines.append(f"Known in this conversation: {known}")
        return ChatMessage("system", "\n".join(lines))

    async def ask(
        self, *said: str, tools=None, known: str = "", level: str = "none",
        after: tuple[ChatMessage, ...] = (), places: bool = True,
    ) -> Completion:  # fmt: skip
        """What the model answers the customer's messages ``said`` (the last is this turn's)."""
        history = [ChatMessage("user" if n % 2 == 0 else "assistant", text)
                   for n, text in enumerate(said)]  # fmt: skip
        messages = (self.prompt(known=known, level=level, places=places), *history, *after)
        request = ModelRequest(messages, tuple(self.every if tools is None else tools))
        return await self.provider.complete(request)


@pytest.fixture
async def served(northwind, systems) -> AsyncIterator[Served]:
    model = PackModel(northwind)
    async with LiveServer(model.app) as server:
        out = Served(model, f"{server.http}/v1", systems)
        yield out
        await out.provider.close()


def _called(completion: Completion) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, dict(c.arguments)) for c in completion.tool_calls]


def _result(name: str, arguments: dict[str, Any], told: dict[str, Any]) -> tuple[ChatMessage, ...]:
    """A call made this turn and what it was told, as the agent sends them back."""
    call = ToolCall("call_0", name, arguments, json.dumps(arguments))
    return (ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", json.dumps(told), tool_call_id="call_0"))  # fmt: skip


# -- tool calls decided from the request -----------------------------------------------------


async def test_an_order_question_with_its_number_calls_the_lookup_tool(served) -> None:
    answer = await served.ask("where is my order 1042?")
    assert _called(answer) == [("lookup_order", {"order_number": "1042"})]
    assert served.model.requests[-1]["messages"][-1]["content"] == "where is my order 1042?"


async def test_a_streamed_answer_is_the_whole_answer_in_pieces(served) -> None:
    request = ModelRequest((served.prompt(), ChatMessage("user", "when are you open on Sunday?")))
    pieces = [p async for p in served.provider.stream(request)]
    whole = await served.provider.complete(request)
    assert isinstance(pieces[-1], Completion) and pieces[-1].text == whole.text
    text = "".join(p.text for p in pieces if isinstance(p, TextDelta))
    assert len(pieces) > 2 and text == whole.text
    streamed = [p async for p in served.provider.stream(
        ModelRequest((served.prompt(), ChatMessage("user", "track order 1043")),
                     tuple(served.every)))]  # fmt: skip
    assert isinstance(streamed[-1], Completion)
    assert _called(streamed[-1]) == [("lookup_order", {"order_number": "1043"})]


async def test_a_bare_answer_goes_on_with_the_topic_and_what_the_prompt_says_is_known(
    served,
) -> None:
    asked = await served.ask("where is my order?", "Sure, what's the order number?", "1042")
    assert _called(asked) == [("lookup_order", {"order_number": "1042"})]
    proof = await served.ask("track order 1042", "Order 1042 is delayed. The postcode?", "94103",
                             known="order_number=1042")  # fmt: skip
    assert _called(proof) == [("lookup_order", {"order_number": "1042"})]


async def test_without_the_number_it_asks_and_a_proven_customer_gets_their_own_orders(
    served,
) -> None:
    visitor = await served.ask("where is my order?")
    assert not visitor.tool_calls and "order number" in visitor.text
    proven = await served.ask("where is my order?", level="oidc")
    assert _called(proven) == [("customer_orders", {"customer_id": ""})]


async def test_a_tool_of_another_agent_is_reached_by_handing_over_to_it(served) -> None:
    order = await served.ask("track order 1042", tools=served.triage)
    assert [(n, a["agent"]) for n, a in _called(order)] == [("transfer_to_agent", "orders")]
    booking = await served.ask("book a repair in Oakland tomorrow at 11:30", tools=served.triage)
    assert _called(booking)[0][1]["agent"] == "repairs"
    moved = _result("transfer_to_agent", {"agent": "orders", "summary": "order 1042"},
                    {"status": "handed to the orders agent"})  # fmt: skip
    there = await served.ask("track order 1042", tools=served.orders, after=moved)
    assert _called(there) == [("lookup_order", {"order_number": "1042"})]


async def test_a_booking_asks_for_what_is_missing_then_calls_the_tools(served) -> None:
    where = await served.ask("book a repair")
    assert not where.tool_calls
    assert all(p.name in where.text for p in served.business.locations)
    day = await served.ask("book a repair", "Which store?", "Market Street")
    assert not day.tool_calls and "day" in day.text
    free = await served.ask("can I book a repair at Market Street tomorrow?")
    assert _called(free) == [("free_slots", {"location": "sf-market", "date": "2025-03-05",
                                             "service": "repair"})]  # fmt: skip
    book = await served.ask("book a repair in Oakland tomorrow at 11:30")
    assert _called(book) == [("book_appointment", {
        "location": "oak-broadway", "date": "2025-03-05", "time": "11:30", "service": "repair",
    })]  # fmt: skip
    refused = _result("book_appointment", {"location": "oak-broadway", "date": "2025-03-05",
                                           "time": "11:00", "service": "repair"},
                      {"error": "slot_taken: that time is already booked"})  # fmt: skip
    then = await served.ask("book a repair in Oakland tomorrow at 11", after=refused)
    assert _called(then) == [("free_slots", {"location": "oak-broadway", "date": "2025-03-05",
                                             "service": "repair"})]  # fmt: skip


async def test_knowledge_a_person_and_a_refund_go_through_the_tools_for_them(served) -> None:
    policy = await served.ask("what is your returns policy?")
    assert _called(policy) == [("knowledge_answer", {"entry": "returns"})]
    charged = await served.ask("I was charged twice for my order")
    assert _called(charged) == [("handoff_to_person", {
        "reason": "sensitive_intent", "queue": "billing",
        "summary": "I was charged twice for my order"})]  # fmt: skip
    complaint = await served.ask("this is unacceptable")
    assert [n for n, _ in _called(complaint)] == ["handoff_to_person"]
    refund = await served.ask("I want a refund for it", known="order_number=1043")
    assert _called(refund) == [("refund_order", {"order_number": "1043", "customer_id": "",
                                                 "reason": "I want a refund for it"})]  # fmt: skip
    unknown_order = await served.ask("I want my money back")
    assert [n for n, _ in _called(unknown_order)] == ["handoff_to_person"]


# -- words from what it was told -------------------------------------------------------------


async def test_a_record_not_proven_is_said_by_its_public_fields_and_the_proof_asked(
    served,
) -> None:
    public = {"order": "1042", "status": "delayed", "verified": False, "ask_for": "postcode"}
    told = _result("lookup_order", {"order_number": "1042"}, public)
    answer = await served.ask("track order 1042", after=told)
    assert not answer.tool_calls
    assert "1042" in answer.text and "delayed" in answer.text and "postcode" in answer.text
    mismatch = _result("lookup_order", {"order_number": "1057"},
                       {"order": "1057", "status": "shipped", "verified": False,
                        "proof": "the postcode given does not match this record"})  # fmt: skip
    assert "does not match" in (await served.ask("94103", after=mismatch)).text


async def test_an_error_an_approval_and_a_knowledge_answer_are_said_as_told(served) -> None:
    missing = _result("lookup_order", {"order_number": "9999"},
                      {"error": "not_found: there is no order 9999"})  # fmt: skip
    assert "couldn't find" in (await served.ask("track order 9999", after=missing)).text
    waiting = _result("refund_order", {"order_number": "1043"}, {
        "status": "waiting for a person's approval", "approval_id": "apr-1",
        "tell_the_customer": "a colleague will approve the refund first"})  # fmt: skip
    said = (await served.ask("refund order 1043", after=waiting)).text
    assert "a colleague will approve the refund first" in said
    policy = _result("knowledge_answer", {"entry": "returns"}, {
        "entry": "returns", "answer": "Within 30 days.", "source": "x"})  # fmt: skip
    said = (await served.ask("what is your returns policy?", after=policy)).text
    assert said == "Within 30 days."


async def test_hours_come_from_the_prompt_and_without_them_it_does_not_know(served) -> None:
    sunday = await served.ask("Sunday hours in Oakland")
    assert not sunday.tool_calls and "Broadway is closed" in sunday.text
    blind = await served.ask("Sunday hours in Oakland", places=False)
    assert "don't know" in blind.text and "closed" not in blind.text


async def test_what_it_does_not_understand_it_does_not_answer(served) -> None:
    poem = await served.ask("write me a poem about the sea")
    assert not poem.tool_calls and poem.text.startswith("Sorry, I don't know")
    assert "an order by its number" in poem.text  # what it can help with, in the tools' words


# -- the server ------------------------------------------------------------------------------


async def test_the_same_request_gets_the_same_answer(served) -> None:
    body = {"model": "pack-model", "messages": [
        {"role": "system", "content": served.prompt().content},
        {"role": "user", "content": "track order 1042"}]}  # fmt: skip
    async with httpx.AsyncClient() as client:
        first = await client.post(f"{served.url}/chat/completions", json=body)
        again = await client.post(f"{served.url}/chat/completions", json=body)
    assert first.status_code == 200 and first.json() == again.json()


async def test_down_it_answers_503_and_a_body_it_cannot_read_400(served) -> None:
    async with httpx.AsyncClient() as client:
        unread = await client.post(f"{served.url}/chat/completions", json={"messages": "no"})
    assert unread.status_code == 400
    served.model.up = False
    with pytest.raises(ModelUnavailable):
        await served.ask("hello")


async def test_it_reads_the_model_agents_own_prompt(northwind, tmp_path) -> None:
    model = PackModel(northwind)
    async with LiveServer(model.app) as server:
        options = {"url": f"{server.http}/v1", "retries": "0"}
        async with Sandbox(northwind, Settings(), agent_factory("model"), NOW, tmp_path,
                           options=options) as box:  # fmt: skip
            await box.open_chat()
            await box.say("track order 1042")
            observed = await box.say("94103")
    read = read_request(model.requests[-1])
    assert read.today == date(2025, 3, 4)
    assert [p.id for p in read.places] == [loc.id for loc in northwind.locations]
    assert read.known == {"order_number": "1042"}  # never the answer that proves who they are
    # The postcode proves who they are to the agent: the model never sees it.
    assert read.said == "[postcode]"
    assert "94103" not in json.dumps([m for m in model.requests[-1]["messages"][1:]])
    assert read.earlier == ("track order 1042",)
    assert observed.reply is not None and "Aster 14" in observed.reply
