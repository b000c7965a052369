"""A model provider for any server that speaks OpenAI's chat-completions API.

OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp's server and LiteLLM all answer
``POST <url>/chat/completions`` with the same JSON, tool calls included, and stream it
as server-sent events. ``url`` is the API's base (``https://api.openai.com/v1``,
``http://127.0.0.1:11434/v1``) or the full endpoint (an Azure deployment's, with its
``api-version``). The key goes in ``Authorization: Bearer`` (``api-key`` for Azure's
``*.openai.azure.com``), and never in a log.

Each request is retried on a timeout, a connection error, 429 or a 5xx, ``retries``
times, after an exponential backoff with jitter (or the server's ``Retry-After``, capped);
a stream is retried only before its first piece arrived. A request that still fails is
:class:`ModelUnavailable`, and counts against the circuit breaker, which then refuses
calls at once until its cooldown ends. Any other 4xx is :class:`ModelRefused`.

Requests go through aiohttp: with requests in flight its client costs a tenth of httpx's
CPU per request or less (0.12 against 0.9–1.5 ms at 10–50 in flight on the benchmark
machine, docs/benchmarks.md), and the bot makes two or three per turn. The proxy comes
from the environment (``HTTPS_PROXY``, ``NO_PROXY``; its credentials from its URL or
``.netrc``), as aiohttp's ``trust_env`` reads it, but once, on the first request: read per
request, it cost two hops through a thread and a read of the environment and ``.netrc``
each time.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import SecretStr
from yarl import URL

from threadline.core.errors import ModelRefused, ModelUnavailable
from threadline.core.model import (
    ChatMessage,
    Completion,
    ModelProvider,
    ModelRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
    checked_calls,
)
from threadline.models.breaker import CircuitBreaker

log = structlog.get_logger("threadline.models")

ENDPOINT: Final = "/chat/completions"
#: Answers worth asking again: rate limited, or the server's own failure.
RETRIED: Final = frozenset({408, 409, 429, 500, 502, 503, 504})
SENT_AS: Final = {"content-type": "application/json"}


class OpenAICompatible(ModelProvider):
    """Chat completions with tool calling and streaming over HTTP (see the module)."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: SecretStr | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        breaker: CircuitBreaker | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        """``connector``: how connections are made (a resolver of one's own, say); the
        provider owns it and closes it."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a model URL is http:// or https://, not {url!r}")
        self.endpoint = url if urlsplit(url).path.endswith(ENDPOINT) else url.rstrip("/") + ENDPOINT
        self.model = model
        self.id = f"openai-compatible:{model}"
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.breaker = breaker or CircuitBreaker()
        # The key goes with each request, not as the session's default: aiohttp copies a
        # session's default headers to the proxy, so the proxy would be shown the key.
        headers = dict(SENT_AS)
        if api_key is not None:
            azure = (urlsplit(url).hostname or "").endswith(".openai.azure.com")
            secret = api_key.get_secret_value()
            headers |= {"api-key": secret} if azure else {"authorization": f"Bearer {secret}"}
        self._headers = headers
        # Each step of a request has ``timeout`` (connecting, then each wait for bytes), as
        # a stream may rightly take longer than that in all.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._connector = connector
        self._session: aiohttp.ClientSession | None = None
        self._proxy: tuple[URL | None] | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.endpoint!r}, {self.model!r})"  # never the key

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        elif self._connector is not None:
            await self._connector.close()

    def _client(self) -> aiohttp.ClientSession:
        """The session, opened on first use (it belongs to the running event loop)."""
        if self._session is None:
            connector = self._connector or aiohttp.TCPConnector(ssl=_trusted())
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def _post(self, body: bytes) -> aiohttp.ClientResponse:
        if self._proxy is None:  # read once: the environment and .netrc are files and a scan
            self._proxy = (await asyncio.to_thread(_proxy_for, self.endpoint),)
        (proxy,) = self._proxy
        return await self._client().post(self.endpoint, data=body, headers=self._headers,
                                         proxy=proxy)  # fmt: skip

    # -- answering ---------------------------------------------------------------------

    async def complete(self, request: ModelRequest) -> Completion:
        async with self._answer(request, stream=False) as (response, attempts):
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ModelUnavailable(f"{self.id} stopped mid-answer: {type(exc).__name__}",
                                       attempts=attempts) from exc  # fmt: skip
        try:
            return _completion(orjson.loads(body), request, attempts)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelUnavailable(f"{self.id} answered with something that is not a chat"
                                   f" completion: {type(exc).__name__}",
                                   attempts=attempts) from exc  # fmt: skip

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        async with self._answer(request, stream=True) as (response, attempts):
            pieces = _Pieces(request)
            try:
                async for line in _lines(response.content):
                    if not line.startswith(b"data:"):
                        continue  # comments, event names, keep-alives
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        pieces.finished = True
                        break
                    text = pieces.add(orjson.loads(data))
                    if text:
                        yield TextDelta(text)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ModelUnavailable(f"{self.id} stopped mid-answer: {type(exc).__name__}",
                                       attempts=attempts) from exc  # fmt: skip
            except ValueError as exc:
                raise ModelUnavailable(f"{self.id} streamed something that is not JSON",
                                       attempts=attempts) from exc  # fmt: skip
            if not pieces.finished:
                raise ModelUnavailable(f"{self.id} stopped mid-answer: the stream ended early",
                                       attempts=attempts)  # fmt: skip
            yield pieces.completion(attempts)

    # -- one request, retried ----------------------------------------------------------

    @asynccontextmanager
    async def _answer(
        self, request: ModelRequest, *, stream: bool
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, int]]:
        """The provider's successful response to ``request`` (its body still to read), and
        how many requests it took."""
        if not self.breaker.allow():
            raise ModelUnavailable(f"{self.id}: circuit open after repeated failures")
        body = orjson.dumps(_body(self.model, request, stream))
        attempt = 0
        while True:
            attempt += 1
            failure: str
            status: int | None = None
            delay: float | None = None
            try:
                response = await self._post(body)
            except TimeoutError:
                failure = "timed out"
            except aiohttp.ClientError as exc:
                failure = f"could not be reached ({type(exc).__name__})"
            else:
                status = response.status
                if status < 300:
                    try:
                        yield response, attempt
                    except ModelUnavailable:
                        self.breaker.failed()
                        raise
                    finally:
                        response.release()  # back to the pool, or closed if not read to the end
                    self.breaker.succeeded()
                    return
                try:
                    text = (await response.read()).decode(errors="replace")[:200]
                except (aiohttp.ClientError, TimeoutError):
                    text = ""
                finally:
                    response.release()
                if status not in RETRIED:
                    self.breaker.succeeded()  # it answered: it is up, the request is wrong
                    raise ModelRefused(f"{self.id} refused the request ({status}): {text}",
                                       status=status)  # fmt: skip
                failure = f"answered {status}"
                delay = _retry_after(response.headers)
            if attempt > self.retries:
                self.breaker.failed()
                raise ModelUnavailable(f"{self.id} {failure} after {attempt} attempts",
                                       attempts=attempt, status=status)  # fmt: skip
            wait = self._wait(attempt, delay)
            log.warning("model request retried", provider=self.id, failure=failure,
                        attempt=attempt, wait_s=round(wait, 3),
                        request_id=request.request_id)  # fmt: skip
            await asyncio.sleep(wait)

    def _wait(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.max_backoff)
        jitter = 0.5 + random.random()
        return float(min(self.max_backoff, self.backoff * 2 ** (attempt - 1) * jitter))


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The stream's lines as they arrive, however long (``\\r\\n`` or ``\\n``)."""
    rest = b""
    async for chunk in content.iter_any():
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")
    if rest:
        yield rest.rstrip(b"\r")


def _proxy_for(endpoint: str) -> URL | None:
    """The proxy the environment names for ``endpoint``, as aiohttp's ``trust_env`` reads it
    (``*_PROXY``, ``NO_PROXY``, ``.netrc``), its credentials in its URL; None: go direct."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(endpoint))
    except LookupError:  # none, or this host is not proxied
        return None
    return proxy if auth is None else proxy.with_user(auth.login).with_password(auth.password)


def _trusted() -> ssl.SSLContext:
    """Certificates as httpx trusts them (certifi's, where it is installed), else the system's."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


# -- the wire format ---------------------------------------------------------------------


def _body(model: str, request: ModelRequest, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in request.messages],
        "temperature": request.temperature,
        "stream": stream,
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": dict(t.parameters),
        }} for t in request.tools]  # fmt: skip
        body["tool_choice"] = "auto"
    return body


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.raw}}
                             for c in message.tool_calls]  # fmt: skip
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _call(index: int, call_id: str | None, name: str, raw: str) -> ToolCall:
    """A tool call as the model sent it; arguments that are not a JSON object are a problem."""
    call_id = call_id or f"call_{index}"
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return ToolCall(call_id, name, {}, raw, "its arguments are not valid JSON")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, raw, "its arguments are not a JSON object")
    return ToolCall(call_id, name, arguments, raw)


def _completion(body: Mapping[str, Any], request: ModelRequest, attempts: int) -> Completion:
    choice = body["choices"][0]
    message = choice["message"]
    calls = [_call(n, c.get("id"), c["function"]["name"], c["function"].get("arguments") or "")
             for n, c in enumerate(message.get("tool_calls") or [])]  # fmt: skip
    return Completion(
        text=message.get("content") or "",
        tool_calls=checked_calls(calls, request.tools),
        finish_reason=choice.get("finish_reason") or "stop",
        model=str(body.get("model", "")),
        usage=_usage(body.get("usage")),
        attempts=attempts,
    )


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, Mapping):
        return Usage()
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class _Pieces:
    """A streamed answer put together: text, and tool calls from their fragments."""

    def __init__(self, request: ModelRequest) -> None:
        self.request = request
        self.text: list[str] = []
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, argument fragments]
        self.finish_reason = "stop"
        #: Whether the answer ended as answers end (a finish reason, or ``[DONE]``).
        self.finished = False
        self.model = ""
        self.usage = Usage()

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Fold one chunk in; the text it adds."""
        self.model = str(chunk.get("model") or self.model)
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        choices: Sequence[Mapping[str, Any]] = chunk.get("choices") or []
        if not choices:
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
            self.finished = True
        delta = choice.get("delta") or {}
        for fragment in delta.get("tool_calls") or []:
            call = self.calls.setdefault(int(fragment.get("index", len(self.calls))),
                                         [None, "", []])  # fmt: skip
            call[0] = fragment.get("id") or call[0]
            function = fragment.get("function") or {}
            call[1] = call[1] + (function.get("name") or "")
            call[2].append(function.get("arguments") or "")
        text = delta.get("content") or ""
        if text:
            self.text.append(text)
        return str(text)

    def completion(self, attempts: int) -> Completion:
        calls = [_call(n, call_id, name, "".join(parts))
                 for n, (call_id, name, parts) in sorted(self.calls.items())]  # fmt: skip
        return Completion("".join(self.text), checked_calls(calls, self.request.tools),
                          self.finish_reason, self.model, self.usage, attempts)  # fmt: skip
