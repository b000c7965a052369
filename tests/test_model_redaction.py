"""A model provider never receives payment data or national ids, whatever was typed or said."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from threadline.core.model import ChatMessage, ModelRequest, ToolCall
from threadline.models import OpenAICompatible, RedactingProvider
from threadline.privacy import find
from threadline.testing.live import LiveServer
from threadline.testing.model_server import ScriptedModel, say

DIGIT_RUN = re.compile(r"\d[\d\s-]{11,}\d")


@pytest.fixture
async def server() -> AsyncIterator[tuple[ScriptedModel, str]]:
    scripted = ScriptedModel()
    async with LiveServer(scripted.app) as live:
        yield scripted, f"{live.http}/v1"


def sent(model: ScriptedModel) -> str:
    """Everything the provider received, as text."""
    return json.dumps(model.requests)


def kinds_in(text: str) -> set[str]:
    return {f.kind for f in find(text)}


async def ask(server: tuple[ScriptedModel, str], *messages: ChatMessage, **options: Any) -> Any:
    model, url = server
    model.then(say("ok"))
    reports: list[dict[str, int]] = []
    inner = OpenAICompatible(url, "scripted-1", retries=0)
    async with RedactingProvider(inner, on_redacted=lambda r, taken: reports.append(taken),
                                 **options) as provider:  # fmt: skip
        await provider.complete(ModelRequest(messages=messages))
    return reports


async def test_cards_security_codes_and_national_ids_never_leave(server) -> None:
    reports = await ask(server, ChatMessage("user", (
        "my card is 4111 1111 1111 1111, the cvv is 737, and my SSN is 123-45-6789"
    )))  # fmt: skip
    received = sent(server[0])
    assert "[card ending 1111]" in received
    assert "4111 1111 1111 1111" not in received and "737" not in received
    assert "123-45-6789" not in received
    assert not kinds_in(received) & {"card", "cvv", "national_id"}
    assert reports == [{"card": 1, "cvv": 1, "national_id": 1}]


async def test_a_card_split_over_two_messages_never_leaves(server) -> None:
    await ask(server, ChatMessage("user", "my card number is 5555 5555"),
              ChatMessage("assistant", "Please go on."),
              ChatMessage("user", "5555 4444"))  # fmt: skip
    received = sent(server[0])
    assert "5555 5555" not in received and "5555 4444" not in received
    assert not DIGIT_RUN.search(received)


async def test_a_card_read_out_as_words_never_leaves(server) -> None:
    spoken = "four one one one one one one one one one one one one one one one"
    await ask(server, ChatMessage("user", f"the number is {spoken}"))
    assert spoken not in sent(server[0])


async def test_tool_calls_and_tool_results_are_redacted_too(server) -> None:
    asked = ToolCall("c1", "take_payment", {}, '{"card": "4111111111111111", "cvv": "123"}')
    await ask(server, ChatMessage("assistant", tool_calls=(asked,)),
              ChatMessage("tool", '{"on_file": "card 5555555555554444, ssn 078-05-1120"}',
                          tool_call_id="c1"))  # fmt: skip
    received = sent(server[0])
    for secret in ("4111111111111111", "5555555555554444", "078-05-1120"):
        assert secret not in received


async def test_contact_details_leave_only_when_the_task_keeps_them(server) -> None:
    text = "call me on +1 415 555 0142 or write to ada@example.com"
    await ask(server, ChatMessage("user", text))
    assert "555 0142" not in sent(server[0]) and "ada@example.com" not in sent(server[0])
    server[0].requests.clear()
    await ask(server, ChatMessage("user", text), keep={"phone"})
    assert "+1 415 555 0142" in sent(server[0]) and "ada@example.com" not in sent(server[0])


async def test_a_streamed_request_is_redacted_as_well(server) -> None:
    model, url = server
    model.then(say("ok"))
    async with RedactingProvider(OpenAICompatible(url, "scripted-1", retries=0)) as provider:
        request = ModelRequest(messages=(ChatMessage("user", "card 4111-1111-1111-1111"),))
        events = [e async for e in provider.stream(request)]
    assert events and "4111-1111-1111-1111" not in sent(model)


def test_a_task_may_not_keep_what_is_never_sent() -> None:
    inner = OpenAICompatible("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ValueError, match="may keep only"):
        RedactingProvider(inner, keep={"card"})


def test_each_text_is_redacted_once_and_reported_on_every_request() -> None:
    reports: list[dict[str, int]] = []
    provider = RedactingProvider(
        OpenAICompatible("http://model.test/v1", "m"),
        on_redacted=lambda r, taken: reports.append(dict(taken)),
    )
    scanned: list[str] = []
    redact = provider.redactor.redact

    def counting(text: str, **options: Any) -> Any:
        scanned.append(text)
        return redact(text, **options)

    provider.redactor.redact = counting  # type: ignore[method-assign]
    rules = "You answer for the shop.\nNever ask for a card."
    history = [ChatMessage("system", f"{rules}\nThe time is 10:00."),
               ChatMessage("user", "my card is 4111 1111 1111 1111")]  # fmt: skip
    first = provider.redacted(ModelRequest(messages=tuple(history)))
    assert len(scanned) == 4  # the instructions line by line, and the customer's message
    history[0] = ChatMessage("system", f"{rules}\nThe time is 10:01.")
    history += [ChatMessage("assistant", "Please don't share cards."),
                ChatMessage("user", "and 4111 1111 1111")]  # fmt: skip
    second = provider.redacted(ModelRequest(messages=tuple(history)))
    assert scanned[4:] == ["The time is 10:01.", "Please don't share cards.",
                           "and 4111 1111 1111"]  # fmt: skip
    assert first.messages[1] == second.messages[1]
    fresh = RedactingProvider(OpenAICompatible("http://model.test/v1", "m"))
    assert second == fresh.redacted(ModelRequest(messages=tuple(history)))
    assert second.messages[0].content == history[0].content
    assert "4111 1111 1111" not in json.dumps([m.content for m in second.messages])
    assert reports == [{"card": 1}, {"card": 2}]  # each request reports all it carries
    known = ChatMessage("system", f"{rules}\nKnown in this conversation: card=4111111111111111")
    assert (
        "4111111111111111"
        not in provider.redacted(ModelRequest(messages=(known,))).messages[0].content
    )
