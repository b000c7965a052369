"""The OpenAI-compatible model provider, against a local server that speaks the API."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.abc
import pytest
from pydantic import SecretStr

from threadline.core.errors import ModelRefused, ModelUnavailable
from threadline.core.model import (
    ChatMessage,
    Completion,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from threadline.models import CircuitBreaker, OpenAICompatible
from threadline.testing.live import LiveServer
from threadline.testing.model_server import Call, ScriptedModel, call, failing, say

KEY = SecretStr("sk-test-0123456789abcdef")
ORDER = ToolSpec("order_status", "Where an order is", {
    "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"],
})  # fmt: skip
HOURS = ToolSpec("store_hours", "When a store is open", {"type": "object"})
ASK = ModelRequest(
    messages=(ChatMessage("system", "You help customers."),
              ChatMessage("user", "where is my order 1042?")),
    tools=(ORDER, HOURS),
    request_id="turn-1",
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    scripted = ScriptedModel()
    async with LiveServer(scripted.app) as server:
        scripted.url = f"{server.http}/v1"  # type: ignore[attr-defined]
        scripted.made = []  # type: ignore[attr-defined]
        yield scripted
        for made in scripted.made:  # type: ignore[attr-defined]
            await made.close()


def provider(model: ScriptedModel, **options: Any) -> OpenAICompatible:
    options = {"retries": 2, "backoff": 0.01, **options}
    made = OpenAICompatible(model.url, "scripted-1", KEY, **options)  # type: ignore[attr-defined]
    model.made.append(made)  # type: ignore[attr-defined]
    return made


async def streamed(p: OpenAICompatible, request: ModelRequest = ASK) -> list[Any]:
    return [event async for event in p.stream(request)]


# -- answers -------------------------------------------------------------------------------


async def test_a_completion_sends_the_chat_and_the_tools_and_answers_with_text(model) -> None:
    model.then(say("Order 1042 is on its way."))
    answer = await provider(model).complete(ASK)
    assert (answer.text, answer.tool_calls, answer.finish_reason) == (
        "Order 1042 is on its way.", (), "stop",
    )  # fmt: skip
    assert answer.model == "scripted-1" and answer.attempts == 1 and answer.usage.prompt_tokens
    (sent,) = model.requests
    assert sent["model"] == "scripted-1" and sent["stream"] is False
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "order_status", "description": "Where an order is",
        "parameters": dict(ORDER.parameters)}}  # fmt: skip
    assert sent["tool_choice"] == "auto"
    assert model.headers[0]["authorization"] == f"Bearer {KEY.get_secret_value()}"


async def test_tool_calls_in_parallel_are_parsed_with_their_arguments(model) -> None:
    model.then(call(Call("order_status", '{"order_id": "1042"}', "c1"),
                    Call("store_hours", "{}", "c2")))  # fmt: skip
    answer = await provider(model).complete(ASK)
    assert answer.finish_reason == "tool_calls"
    assert answer.tool_calls == (
        ToolCall("c1", "order_status", {"order_id": "1042"}, '{"order_id": "1042"}'),
        ToolCall("c2", "store_hours", {}, "{}"),
    )


async def test_a_tool_call_with_malformed_arguments_keeps_its_problem(model) -> None:
    model.then(call(Call("order_status", '{"order_id": "10'), Call("store_hours", "[1, 2]")))
    first, second = (await provider(model).complete(ASK)).tool_calls
    assert first.problem == "its arguments are not valid JSON" and first.raw == '{"order_id": "10'
    assert second.problem == "its arguments are not a JSON object" and second.arguments == {}


async def test_a_call_for_a_tool_not_offered_is_flagged(model) -> None:
    model.then(call(Call("refund", '{"order_id": "1042"}')))
    (refund,) = (await provider(model).complete(ASK)).tool_calls
    assert refund.problem == "the model called 'refund', a tool it was not offered"


async def test_the_conversation_so_far_goes_back_with_tool_results(model) -> None:
    model.then(say("It ships tomorrow."))
    asked = ToolCall("c1", "order_status", {"order_id": "1042"}, '{"order_id": "1042"}')
    result = ChatMessage("tool", '{"status": "packed"}', tool_call_id="c1")
    chat = (*ASK.messages, ChatMessage("assistant", tool_calls=(asked,)), result)
    request = ModelRequest(messages=chat, tools=ASK.tools)
    await provider(model).complete(request)
    assistant, result = model.requests[0]["messages"][2:]
    assert assistant == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "order_status", "arguments": '{"order_id": "1042"}'}}]}  # fmt: skip
    assert result == {"role": "tool", "content": '{"status": "packed"}', "tool_call_id": "c1"}


# -- streaming ------------------------------------------------------------------------------


async def test_a_stream_gives_the_text_as_it_comes_then_the_completion(model) -> None:
    said = "Order 1042 left our warehouse this morning and arrives Friday."
    model.then(say(said, pieces=4))
    events = await streamed(provider(model))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert len(deltas) == 4 and isinstance(done, Completion)
    assert (
        "".join(deltas)
        == done.text
        == "Order 1042 left our warehouse this morning and arrives Friday."
    )
    assert model.requests[0]["stream"] is True


async def test_streamed_tool_calls_are_put_together_from_their_fragments(model) -> None:
    model.then(call(Call("order_status", '{"order_id": "1042"}', "c1"),
                    Call("store_hours", '{"store": "sf"}', "c2")))  # fmt: skip
    done = (await streamed(provider(model)))[-1]
    assert isinstance(done, Completion) and done.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments, c.problem) for c in done.tool_calls] == [
        ("c1", "order_status", {"order_id": "1042"}, None),
        ("c2", "store_hours", {"store": "sf"}, None),
    ]


async def test_a_stream_cut_mid_answer_is_unavailable_not_a_short_answer(model) -> None:
    model.then(say("one two three four five six", pieces=3, cut_after=1))
    p = provider(model, breaker=CircuitBreaker(failures=1))
    seen: list[Any] = []
    with pytest.raises(ModelUnavailable, match="stopped mid-answer"):
        async for event in p.stream(ASK):
            seen.append(event)
    assert [type(e) for e in seen] == [TextDelta]  # what came is given; no completion
    assert p.breaker.state == "open" and len(model.requests) == 1  # not retried once spoken


# -- failures -------------------------------------------------------------------------------


async def test_a_429_is_retried_after_its_retry_after(model) -> None:
    model.then(failing(429, headers={"retry-after": "0.05"}), say("ok"))
    answer = await provider(model).complete(ASK)
    assert answer.text == "ok" and answer.attempts == 2 and len(model.requests) == 2


async def test_server_errors_past_the_retries_are_unavailable(model) -> None:
    model.then(failing(503), failing(500), failing(502))
    with pytest.raises(ModelUnavailable) as failed:
        await provider(model, retries=2).complete(ASK)
    assert (failed.value.attempts, failed.value.status) == (3, 502)
    assert failed.value.retryable and len(model.requests) == 3


async def test_a_timeout_is_retried_then_unavailable(model) -> None:
    model.then(say("late", delay=1.0), say("late again", delay=1.0))
    with pytest.raises(ModelUnavailable, match="timed out after 2 attempts"):
        await provider(model, retries=1, timeout=0.2).complete(ASK)


async def test_a_bad_request_is_refused_at_once(model) -> None:
    model.then(failing(400), say("never asked"))
    with pytest.raises(ModelRefused) as refused:
        await provider(model).complete(ASK)
    assert refused.value.status == 400 and not refused.value.retryable
    assert len(model.requests) == 1


async def test_the_breaker_opens_refuses_at_once_and_closes_after_a_good_trial(model) -> None:
    clock = Clock()
    p = provider(model, retries=0, breaker=CircuitBreaker(failures=2, cooldown=30, clock=clock))
    model.then(failing(503), failing(503))
    for _ in range(2):
        with pytest.raises(ModelUnavailable):
            await p.complete(ASK)
    with pytest.raises(ModelUnavailable, match="circuit open"):
        await p.complete(ASK)
    assert len(model.requests) == 2  # the open circuit sent nothing
    clock.now = 31  # half-open: one trial goes through
    model.then(say("back"))
    assert (await p.complete(ASK)).text == "back"
    assert p.breaker.state == "closed"


async def test_an_unreachable_provider_is_unavailable() -> None:
    p = OpenAICompatible("http://127.0.0.1:9/v1", "m", retries=1, backoff=0.01, timeout=1)
    async with p:
        with pytest.raises(ModelUnavailable, match="could not be reached"):
            await p.complete(ASK)


async def test_an_answer_that_is_not_a_completion_is_unavailable() -> None:
    async with (
        LiveServer(Answering({"hello": "world"})) as server,
        OpenAICompatible(f"{server.http}/v1", "m") as p,
    ):
        with pytest.raises(ModelUnavailable, match="not a chat completion"):
            await p.complete(ASK)


# -- keys -----------------------------------------------------------------------------------


async def test_the_key_is_sent_but_never_logged_or_shown(model, capsys) -> None:
    model.then(failing(503), say("ok"))
    p = provider(model)
    await p.complete(ASK)
    secret = KEY.get_secret_value()
    out = capsys.readouterr()
    assert "model request retried" in out.out + out.err
    assert secret not in out.out + out.err and secret not in repr(p)


async def test_azure_takes_its_key_as_api_key() -> None:
    answering = Answering({"choices": [{"message": {"content": "hi"}}]})
    async with LiveServer(answering) as server:
        port = server.http.rsplit(":", 1)[1]
        target = ("/openai/deployments/gpt/chat/completions", "api-version=2024-10-21")
        url = f"http://example-resource.openai.azure.com:{port}{target[0]}?{target[1]}"
        here = aiohttp.TCPConnector(resolver=Here())
        async with OpenAICompatible(url, "gpt", KEY, connector=here) as p:
            assert (await p.complete(ASK)).text == "hi"
    ((headers, path, query, body),) = answering.seen
    assert headers["api-key"] == KEY.get_secret_value()
    assert "authorization" not in headers
    assert (path, query) == target
    assert json.loads(body)["model"] == "gpt"


class Here(aiohttp.abc.AbstractResolver):
    """Every name is this machine."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2,
                 "proto": 0, "flags": 0}]  # fmt: skip

    async def close(self) -> None:
        pass


class Answering:
    """An ASGI app that answers every request with ``answer`` as JSON, noting what came."""

    def __init__(self, answer: Any) -> None:
        self.answer = json.dumps(answer).encode()
        self.seen: list[tuple[dict[str, str], str, str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append((headers, scope["path"], scope["query_string"].decode(), body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": self.answer})


def test_a_model_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAICompatible("ftp://model/v1", "m")


# -- proxies --------------------------------------------------------------------------------


async def test_the_proxy_comes_from_the_environment_read_once(monkeypatch) -> None:
    """Through the proxy the environment names, with its credentials; the environment read
    on the first request only (per request, it cost two hops through a thread each)."""
    import aiohttp.helpers

    reads: list[int] = []
    environment = aiohttp.helpers.getproxies

    def counted() -> dict[str, str]:
        reads.append(1)
        return environment()

    monkeypatch.setattr(aiohttp.helpers, "getproxies", counted)
    proxy = Answering({"choices": [{"message": {"content": "via the proxy"}}]})
    async with LiveServer(proxy) as server:
        where = server.http.removeprefix("http://")
        monkeypatch.setenv("HTTP_PROXY", f"http://relay:s3cret@{where}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with OpenAICompatible("http://model.invalid/v1", "m", KEY, retries=0) as p:
            for _ in range(3):
                assert (await p.complete(ASK)).text == "via the proxy"
    assert len(proxy.seen) == 3 and len(reads) == 1
    headers = proxy.seen[0][0]
    assert headers["host"] == "model.invalid"
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"relay:s3cret").decode()
    assert headers["authorization"] == f"Bearer {KEY.get_secret_value()}"


async def test_a_host_the_environment_exempts_is_reached_directly(monkeypatch) -> None:
    answering = Answering({"choices": [{"message": {"content": "direct"}}]})
    async with LiveServer(answering) as server:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with OpenAICompatible(f"{server.http}/v1", "m", retries=0) as p:
            assert (await p.complete(ASK)).text == "direct"
    assert "proxy-authorization" not in answering.seen[0][0]


async def test_the_key_is_never_shown_to_the_proxy_of_an_https_provider(monkeypatch) -> None:
    """A tunnel's CONNECT carries the proxy's own credentials only, never the model's key."""
    connects: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connects.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://relay:s3cret@127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with server, OpenAICompatible("https://model.invalid/v1", "m", KEY, retries=0) as p:
        with pytest.raises(ModelUnavailable):
            await p.complete(ASK)
    (connect,) = connects
    assert connect.startswith(b"CONNECT model.invalid:443 ")
    fields = dict(line.split(b": ", 1) for line in connect.split(b"\r\n")[1:] if line)
    sent = {name.lower(): value for name, value in fields.items()}
    assert sent[b"proxy-authorization"] == b"Basic " + base64.b64encode(b"relay:s3cret")
    assert KEY.get_secret_value().encode() not in connect
