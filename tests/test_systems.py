"""The tool runner against real systems: an HTTP server started here, and in-process tools.

The test shop's pack (``tests/packs/shop``) declares the tools; its HTTP tools
call a small Starlette app on uvicorn on a free loopback port, its python tools
are ``tests/packs/shop/systems/shop_tools.py``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import LiveServer
from threadline.business import Business, load
from threadline.systems import CustomerRecord, CustomerRecords, ToolCall, ToolRunner
from threadline.tools import NOT_FOUND, ToolFailure

SHOP = Path(__file__).resolve().parent / "packs" / "shop"
NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
SECRET = "s3cret-token-do-not-log"


@dataclass
class Shop:
    """What the shop's server was asked, for the tests to look at."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, request: Request, body: Any = None) -> None:
        self.requests.append({"method": request.method, "raw_path": request.scope["raw_path"],
                              "query": dict(request.query_params), "body": body,
                              "headers": dict(request.headers)})  # fmt: skip

    def app(self) -> Starlette:
        async def order(request: Request) -> Response:
            self.seen(request)
            number = request.path_params["number"]
            if number == "0000":
                return JSONResponse({"title": "Not Found"}, status_code=404)
            return JSONResponse({"order": number})

        async def book(request: Request) -> Response:
            body = await request.json()
            self.seen(request, body)
            if body["slot"] == "taken":
                problem = {"type": "https://shop.example/problems/slot-taken", "title": "Taken",
                           "code": "slot_taken", "detail": "that slot is taken",
                           "details": {"suggestions": ["10:30"]}}  # fmt: skip
                return JSONResponse(problem, status_code=409,
                                    media_type="application/problem+json")  # fmt: skip
            if body["slot"] == "closed":
                problem = {"type": "https://shop.example/problems/shop-closed",
                           "detail": "closed on Sundays"}  # fmt: skip
                return JSONResponse(problem, status_code=422,
                                    media_type="application/problem+json")  # fmt: skip
            if body["slot"] == "teapot":
                return PlainTextResponse("no", status_code=418)
            return JSONResponse({"booked": body["slot"]})

        async def flaky(request: Request) -> Response:
            self.seen(request)
            tries = self.attempts.setdefault(request.query_params["run"], [])
            tries.append(time.perf_counter())
            if len(tries) <= int(request.path_params["failures"]):
                return JSONResponse({}, status_code=int(request.path_params["status"]))
            return JSONResponse({"attempts": len(tries)})

        async def slow(request: Request) -> Response:
            await asyncio.wait_for(self.release.wait(), 10)
            return JSONResponse({})

        async def answer(request: Request) -> Response:
            shape = request.path_params["shape"]
            if shape == "list":
                return JSONResponse([1, 2])
            if shape == "text":
                return PlainTextResponse("fine, thanks")
            return JSONResponse({"status": "shipped"})

        return Starlette(routes=[
            Route("/orders/{number:path}", order), Route("/bookings", book, methods=["POST"]),
            Route("/flaky/{status:int}/{failures:int}", flaky), Route("/slow", slow),
            Route("/answer/{shape}", answer),
        ])  # fmt: skip


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting there is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def shop(refused_port: int) -> AsyncIterator[tuple[Shop, Business]]:
    served = Shop()
    async with LiveServer(served.app()) as server:
        environ = {"SHOP_URL": server.http, "REFUSED_URL": f"http://127.0.0.1:{refused_port}"}
        yield served, load(SHOP, environ)
        served.release.set()


@pytest.fixture
async def runner(shop: tuple[Shop, Business], tmp_path: Path) -> AsyncIterator[ToolRunner]:
    opened = ToolRunner(shop[1], tmp_path, environ={"SHOP_TOKEN": SECRET})
    yield opened
    await opened.close()


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[ToolRunner]:
    """The shop's tools for tests of its in-process ones: no server runs."""
    nowhere = "http://127.0.0.1:9"
    opened = ToolRunner(load(SHOP, {"SHOP_URL": nowhere, "REFUSED_URL": nowhere}), tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def served(shop: tuple[Shop, Business]) -> Shop:
    return shop[0]


def call(tool: str, key: str = "turn-1/act-1", **arguments: Any) -> ToolCall:
    return ToolCall(tool, arguments, key, NOW, "conv-1")


async def failure_of(runner: ToolRunner, tool: str, **arguments: Any) -> ToolFailure:
    with pytest.raises(ToolFailure) as failed:
        await runner.call(call(tool, **arguments))
    return failed.value


# -- HTTP: requests --------------------------------------------------------------------------------


async def test_a_get_fills_the_url_placeholders_and_sends_the_rest_as_the_query(
    runner: ToolRunner, served: Shop
) -> None:
    result = await runner.call(call("order", number="10 42/b", fields="status"))
    assert result == {"order": "10 42/b"}
    (request,) = served.requests
    assert (request["method"], request["raw_path"], request["query"]) == (
        "GET", b"/orders/10%2042%2Fb", {"fields": "status"})  # fmt: skip
    assert request["headers"]["accept"] == "application/json"


async def test_a_post_sends_a_json_body_with_the_calls_idempotency_key(
    runner: ToolRunner, served: Shop
) -> None:
    result = await runner.call(call("book", key="turn-7/act-2", slot="10:00", note=None))
    assert result == {"booked": "10:00"}
    (request,) = served.requests
    assert (request["method"], request["body"]) == ("POST", {"slot": "10:00"})
    assert request["headers"]["idempotency-key"] == "turn-7/act-2"


async def test_bearer_credentials_come_from_the_environment_variable(
    runner: ToolRunner, served: Shop
) -> None:
    await runner.call(call("order", number="1042"))
    assert served.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"


async def test_credentials_whose_variable_is_unset_fail_clearly_before_any_request(
    shop: tuple[Shop, Business], served: Shop, tmp_path: Path
) -> None:
    runner = ToolRunner(shop[1], tmp_path, environ={})
    try:
        failure = await failure_of(runner, "order", number="1042")
    finally:
        await runner.close()
    assert (failure.code, failure.retryable) == ("misconfigured", False)
    assert "SHOP_TOKEN is not set" in str(failure)
    assert served.requests == []


async def test_the_secret_is_in_neither_a_failure_nor_the_logs(
    runner: ToolRunner, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    failures = [
        await failure_of(runner, "order", number="0000"),
        await failure_of(runner, "flaky", status=500, failures=9, run="secret"),
    ]
    captured = capsys.readouterr()
    told = [str(f) for f in failures] + [repr(f.details) for f in failures]
    told += [captured.out, captured.err, caplog.text]
    assert "tool failed" in captured.out + caplog.text  # the failures were logged …
    assert not [text for text in told if SECRET in text]  # … and the secret never


# -- HTTP: answers ---------------------------------------------------------------------------------


async def test_a_404_is_not_found_and_final(runner: ToolRunner) -> None:
    failure = await failure_of(runner, "order", number="0000")
    assert (failure.code, failure.retryable) == (NOT_FOUND, False)


async def test_a_problem_with_a_code_is_that_code_with_its_detail_and_details(
    runner: ToolRunner,
) -> None:
    failure = await failure_of(runner, "book", slot="taken")
    assert (failure.code, str(failure), failure.retryable) == (
        "slot_taken", "that slot is taken", False)  # fmt: skip
    assert failure.details == {"suggestions": ["10:30"]}


async def test_a_problem_without_a_code_is_named_by_its_type(runner: ToolRunner) -> None:
    failure = await failure_of(runner, "book", slot="closed")
    assert (failure.code, str(failure)) == ("shop-closed", "closed on Sundays")


async def test_a_refusal_without_a_problem_is_its_status(runner: ToolRunner) -> None:
    failure = await failure_of(runner, "book", slot="teapot")
    assert (failure.code, failure.retryable) == ("http_418", False)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_server_error_or_429_is_retried_with_backoff_then_fails_retryable(
    runner: ToolRunner, served: Shop, status: int
) -> None:
    started = time.perf_counter()
    failure = await failure_of(runner, "flaky", status=status, failures=9, run="down")
    assert (failure.code, failure.retryable) == (f"http_{status}", True)
    tries = served.attempts["down"]
    assert len(tries) == 3  # the first attempt and `retries: 2`
    first, second = tries[1] - tries[0], tries[2] - tries[1]
    assert first >= 0.05 and second >= 0.1  # 0.1 s, then 0.2 s, with jitter of ±50 %
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("status", [401, 403])
async def test_credentials_the_system_refuses_are_unauthorized_and_not_retried(
    runner: ToolRunner, served: Shop, status: int
) -> None:
    failure = await failure_of(runner, "flaky", status=status, failures=9, run=f"no-{status}")
    assert (failure.code, failure.retryable) == ("unauthorized", False)
    assert len(served.attempts[f"no-{status}"]) == 1


async def test_a_retried_call_that_then_succeeds_answers_its_result(
    runner: ToolRunner, served: Shop
) -> None:
    result = await runner.call(call("flaky", status=503, failures=2, run="blip"))
    assert result == {"attempts": 3}
    keys = {r["headers"]["idempotency-key"] for r in served.requests}
    assert keys == {"turn-1/act-1"}  # every attempt is the same call


async def test_a_system_that_keeps_failing_is_not_called_until_its_breaker_cools(
    runner: ToolRunner, served: Shop
) -> None:
    for run in ("down-1", "down-2"):  # `breaker: {failures: 2}`: two failed calls open it
        await failure_of(runner, "flaky", status=503, failures=9, run=run)
    started = time.perf_counter()
    failure = await failure_of(runner, "flaky", status=503, failures=0, run="refused-at-once")
    assert (failure.code, failure.retryable) == ("unavailable", True)
    assert "refused-at-once" not in served.attempts and time.perf_counter() - started < 0.05
    await asyncio.sleep(0.55)  # the cooldown: one trial call goes through, and closes it
    assert await runner.call(call("flaky", status=503, failures=0, run="trial")) == {"attempts": 1}
    assert await runner.call(call("flaky", status=503, failures=0, run="after")) == {"attempts": 1}


async def test_an_answer_such_as_not_found_never_opens_the_breaker(runner: ToolRunner) -> None:
    for _ in range(5):
        assert (await failure_of(runner, "order", number="0000")).code == NOT_FOUND
    assert await runner.call(call("order", number="1042")) == {"order": "1042"}


async def test_a_system_that_does_not_answer_in_time_times_out(runner: ToolRunner) -> None:
    started = time.perf_counter()
    failure = await failure_of(runner, "slow")
    assert (failure.code, failure.retryable) == ("timeout", True)
    assert time.perf_counter() - started < 1


async def test_a_refused_connection_is_unavailable_and_retried(runner: ToolRunner) -> None:
    failure = await failure_of(runner, "refused")
    assert (failure.code, failure.retryable) == ("unavailable", True)
    assert str(failure) == "refused: ConnectError"


@pytest.mark.parametrize(
    ("shape", "message"),
    [("object", "answered off its schema"), ("list", "answered a JSON list"),
     ("text", "answered without JSON")],
)  # fmt: skip
async def test_an_answer_that_is_not_the_tools_result_is_a_bad_result(
    runner: ToolRunner, shape: str, message: str
) -> None:
    failure = await failure_of(runner, "off_schema", shape=shape)
    assert (failure.code, failure.retryable) == ("bad_result", False)
    assert message in str(failure)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"number": ""}, {"number": 1042}, {"number": "1042", "fields": ["a"]}],
)
async def test_arguments_off_the_tools_schema_are_refused_before_any_request(
    runner: ToolRunner, served: Shop, arguments: dict[str, Any]
) -> None:
    failure = await failure_of(runner, "order", **arguments)
    assert (failure.code, failure.retryable) == ("bad_arguments", False)
    assert served.requests == []


async def test_a_tool_the_pack_does_not_declare_is_unknown(runner: ToolRunner) -> None:
    failure = await failure_of(runner, "teleport")
    assert failure.code == "unknown_tool"
    assert (runner.has("order"), runner.has("teleport"), runner.version("order")) == (
        True, False, "3")  # fmt: skip


# -- python tools ---------------------------------------------------------------------------------


Calls = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def calls(local: ToolRunner) -> Calls:
    """The calls of the shop's python tools (imported when the pack was checked), from now."""
    made: Calls = sys.modules["shop_tools"].CALLS
    made.clear()
    return made


async def test_an_async_function_gets_the_arguments_and_the_calls_context(
    local: ToolRunner, tmp_path: Path
) -> None:
    result = await local.call(call("greet", key="turn-3/act-1", name="Ada"))
    assert result == {"greeting": "Hello Ada", "key": "turn-3/act-1", "now": NOW.isoformat(),
                      "data_dir": str(tmp_path), "business": "shop",
                      "conversation": "conv-1"}  # fmt: skip


async def test_a_plain_function_runs_off_the_event_loop(local: ToolRunner) -> None:
    result = await local.call(call("greet_sync"))
    assert result["thread"] != "MainThread"


async def test_a_tools_own_failure_passes_through_and_is_retried_when_retryable(
    local: ToolRunner, calls: Calls
) -> None:
    failure = await failure_of(local, "sold_out")
    assert (failure.code, str(failure), failure.retryable) == ("sold_out", "none left", True)
    assert failure.details == {"restock": "Friday"}
    assert [tool for tool, _ in calls] == ["sold_out", "sold_out"]  # `retries: 1`


async def test_any_other_exception_is_a_tool_error_that_keeps_its_arguments_quiet(
    local: ToolRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    failure = await failure_of(local, "crash", card="4111 1111 1111 1111")
    assert (failure.code, failure.retryable) == ("tool_error", False)
    assert str(failure) == "crash raised ValueError"
    assert "4111" not in capsys.readouterr().out


async def test_a_function_that_returns_no_object_is_a_bad_result(local: ToolRunner) -> None:
    failure = await failure_of(local, "not_a_dict")
    assert (failure.code, str(failure)) == ("bad_result", "not_a_dict returned list")


async def test_a_python_tool_that_takes_too_long_times_out(local: ToolRunner) -> None:
    failure = await failure_of(local, "dawdle")
    assert (failure.code, failure.retryable) == ("timeout", True)


async def test_a_python_tools_result_is_checked_against_its_schema(local: ToolRunner) -> None:
    failure = await failure_of(local, "greet", name=7)
    assert failure.code == "bad_arguments"


# -- customer records ------------------------------------------------------------------------------


@pytest.fixture
def customers(local: ToolRunner, calls: Calls) -> CustomerRecords:
    return CustomerRecords(local)


async def test_a_customer_is_found_through_the_packs_look_up_tool(
    customers: CustomerRecords, calls: Calls
) -> None:
    assert customers.configured
    ada = await customers.find("phone", "+447700900123")
    assert ada == CustomerRecord("cus-1", "Ada Lovelace", "+447700900123", "ada@example.com",
                                 None, {"postcode": "N1"})  # fmt: skip
    assert calls == [("find_customer", {"by": "phone", "value": "+447700900123"})]


async def test_an_unknown_customer_is_none(customers: CustomerRecords) -> None:
    assert await customers.find("email", "nobody@example.com") is None
    assert await customers.get(None) is None


async def test_a_failing_system_fails_a_find_and_is_none_for_get(
    customers: CustomerRecords,
) -> None:
    with pytest.raises(ToolFailure) as failed:
        await customers.find("id", "broken")
    assert failed.value.code == "unavailable"
    assert await customers.get("broken") is None


async def test_records_are_kept_for_their_time_to_live(
    customers: CustomerRecords, calls: Calls
) -> None:
    first = await customers.find("phone", "+447700900123")
    again = await customers.find("phone", "+447700900123")
    by_id = await customers.get("cus-1")  # found by phone: known by id as well
    missing = [await customers.find("email", "x@example.com") for _ in range(2)]
    assert first is again is by_id and missing == [None, None]
    assert len(calls) == 2  # one per value asked


async def test_records_past_their_time_to_live_are_asked_for_again(
    local: ToolRunner, calls: Calls
) -> None:
    customers = CustomerRecords(local, ttl=0.0)
    await customers.find("phone", "+447700900123")
    await customers.find("phone", "+447700900123")
    assert len(calls) == 2


async def test_without_a_look_up_tool_there_are_no_records(tmp_path: Path) -> None:
    business = load(Path(__file__).resolve().parent / "packs" / "minimal")
    runner = ToolRunner(business, tmp_path)
    customers = CustomerRecords(runner)
    assert not customers.configured
    assert await customers.find("phone", "+447700900123") is None
    await runner.close()
