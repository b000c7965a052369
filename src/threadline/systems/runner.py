"""Calling the business's own systems: the tools a pack declares, over HTTP or in-process.

:class:`ToolRunner` checks a call's arguments against the tool's parameter
schema, runs it with the tool's timeout, retries what may succeed later with
backoff, and checks the result against the tool's result schema. Whatever
goes wrong comes out as a :class:`~threadline.tools.ToolFailure` with a stable
code; arguments, results and credentials are never logged.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
import structlog
from jsonschema_rs import Draft202012Validator

from threadline.business import Business
from threadline.business.checks import importable
from threadline.business.tool_specs import HttpTool, PythonTool
from threadline.models.breaker import CircuitBreaker
from threadline.systems.http import request as http_request
from threadline.tools import NOT_FOUND, ToolContext, ToolFailure

log = structlog.get_logger("threadline.systems")

#: First retry's delay; each next one doubles, with jitter.
BACKOFF: Final = 0.1
Function = Callable[[dict[str, Any], ToolContext], Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool: what, with which arguments, once (by its idempotency key)."""

    tool: str
    arguments: Mapping[str, Any]
    idempotency_key: str
    now: datetime
    conversation_id: str | None = None


#: Failures that are the system's fault even when trying again would not help.
FAULTS: Final = frozenset({"tool_error", "bad_result", "timeout"})


class ToolRunner:
    """Runs a business's tools."""

    def __init__(
        self,
        business: Business,
        data_dir: Path,
        *,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.business = business
        self.data_dir = data_dir
        self.environ = os.environ if environ is None else environ
        self._http = http
        self._own_http = http is None
        self._functions: dict[str, Function] = {}
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}
        #: One per tool: a system that keeps failing is not waited on again until it cools.
        self._breakers: dict[str, CircuitBreaker] = {}

    def use(self, business: Business) -> None:
        """Run the tools of ``business`` (a reloaded pack) from the next call on."""
        self.business = business
        self._functions = {}
        self._validators = {}
        self._breakers = {}

    def breaker(self, tool: str) -> CircuitBreaker:
        """The circuit breaker of ``tool`` (a tool the pack declares)."""
        found = self._breakers.get(tool)
        if found is None:
            spec = self.business.pack.tools[tool].breaker
            found = self._breakers[tool] = CircuitBreaker(spec.failures, spec.cooldown)
        return found

    def version(self, tool: str) -> str:
        spec = self.business.pack.tools.get(tool)
        return spec.version if spec is not None else ""

    def has(self, tool: str | None) -> bool:
        return tool is not None and tool in self.business.pack.tools

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    def _validator(self, tool: str, which: str, schema: dict[str, Any]) -> Draft202012Validator:
        key = (tool, which)
        found = self._validators.get(key)
        if found is None:
            # Compiled once per tool; remote $refs are never fetched.
            found = self._validators[key] = Draft202012Validator(schema, offline=True)
        return found

    async def call(self, call: ToolCall) -> dict[str, Any]:
        """The tool's result; raises ToolFailure."""
        spec = self.business.pack.tools.get(call.tool)
        if spec is None:
            raise ToolFailure("unknown_tool", f"the pack has no tool {call.tool!r}")
        arguments = dict(call.arguments)
        problem = self._problem(call.tool, "parameters", spec.parameters, arguments)
        if problem is not None:
            raise ToolFailure("bad_arguments", f"{call.tool}: {problem}")
        breaker = self.breaker(call.tool)
        if not breaker.allow():
            raise ToolFailure("unavailable", f"{call.tool} keeps failing: not called for now",
                              retryable=True)  # fmt: skip
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                result = await self._attempt(spec, call, arguments)
                breaker.succeeded()
                break
            except ToolFailure as failure:
                if not failure.retryable or attempt >= spec.retries:
                    # A fault of the system counts against it; an answer ("no such order") not.
                    if failure.retryable or failure.code in FAULTS:
                        breaker.failed()
                    else:
                        breaker.succeeded()
                    # "No such thing" is an answer, not a fault of the business's system.
                    level = log.debug if failure.code == NOT_FOUND else log.info
                    level("tool failed", tool=call.tool, code=failure.code, attempts=attempt + 1,
                          ms=round((time.perf_counter() - started) * 1000, 1))  # fmt: skip
                    raise
            attempt += 1
            await asyncio.sleep(BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random()))
        problem = self._problem(call.tool, "result", spec.result, result)
        if problem is not None:
            raise ToolFailure("bad_result", f"{call.tool} answered off its schema: {problem}")
        return result

    def _problem(self, tool: str, which: str, schema: dict[str, Any], value: Any) -> str | None:
        """What is wrong with ``value`` under the tool's ``which`` schema, or None."""
        validator = self._validator(tool, which, schema)
        if validator.is_valid(value):
            return None
        return next(iter(validator.iter_errors(value))).message

    async def _attempt(
        self, spec: HttpTool | PythonTool, call: ToolCall, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(spec.timeout):
                if isinstance(spec, HttpTool):
                    return await http_request(self._client(), spec, call, arguments, self.environ)
                return await self._in_process(spec, call, arguments)
        except TimeoutError:
            raise ToolFailure("timeout", f"{call.tool} took over {spec.timeout:g} s",
                              retryable=True) from None  # fmt: skip

    async def _in_process(
        self, spec: PythonTool, call: ToolCall, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        function = self._function(call.tool, spec)
        context = ToolContext(call.now, call.idempotency_key, self.business, self.data_dir,
                              call.conversation_id)  # fmt: skip
        try:
            if inspect.iscoroutinefunction(function):
                outcome = await function(arguments, context)
            else:
                outcome = await asyncio.to_thread(function, arguments, context)
                if inspect.isawaitable(outcome):
                    outcome = await _awaited(outcome)
        except ToolFailure:
            raise
        except Exception as exc:  # the business's code failed: a failure, never a crash
            log.warning("tool raised", tool=call.tool, error=type(exc).__name__)
            raise ToolFailure("tool_error", f"{call.tool} raised {type(exc).__name__}") from None
        if not isinstance(outcome, dict):
            raise ToolFailure("bad_result", f"{call.tool} returned {type(outcome).__name__}")
        return outcome

    def _function(self, tool: str, spec: PythonTool) -> Function:
        found = self._functions.get(tool)
        if found is None:
            module_name, _, name = spec.entry.partition(":")
            with importable(self.business.pack, self.business.root):
                module = __import__(module_name, fromlist=[name])
            found = self._functions[tool] = getattr(module, name)
        return found


async def _awaited(outcome: Awaitable[Any]) -> Any:
    return await outcome
