"""How a pack declares its tools: the business's own systems, over HTTP or in-process.

An ``http`` tool is a request template: method, URL with ``{parameter}``
placeholders, the credentials as a reference to an environment variable
(never the secret itself), timeout, retries and the idempotency header. A
``python`` tool names an entry point (``package.module:function``) that is
called in-process. Both declare their parameters and result as JSON Schema,
so calls are checked on the way in and out.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: ``package.module:function``.
ENTRY_POINT: Final = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
#: An environment variable's name.
ENV_NAME: Final = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
#: Where a URL template takes a parameter.
PLACEHOLDER: Final = re.compile(r"\{([a-z_][a-z0-9_]*)\}")

EnvName = Annotated[str, Field(pattern=ENV_NAME.pattern, description="an environment variable")]
JsonSchema = dict[str, Any]


class Spec(BaseModel):
    """Every part of a pack is exact: an unknown key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(Spec):
    """Where an HTTP tool's credentials come from: an environment variable, read per call."""

    scheme: Literal["bearer", "basic", "header"] = Field(
        "bearer",
        description="bearer: Authorization: Bearer <secret>; basic: the secret is user:password;"
        " header: the secret goes in `header` as it is",
    )
    secret: EnvName = Field(description="the environment variable that holds the secret")
    header: str = Field("Authorization", pattern=r"^[A-Za-z0-9-]{1,64}$")


class Breaker(Spec):
    """When to stop calling a system that keeps failing, and for how long."""

    failures: int = Field(5, ge=1, le=100, description="failed calls in a row that open it")
    cooldown: float = Field(30.0, gt=0, le=3600, description="seconds before a trial call")


class ToolBase(Spec):
    version: str = Field("1", min_length=1, max_length=32, description="recorded with each call")
    description: str = Field("", max_length=500)
    parameters: JsonSchema = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema of the arguments (an object)",
    )
    result: JsonSchema = Field(
        default_factory=lambda: {"type": "object"}, description="JSON Schema of the result"
    )
    timeout: float = Field(5.0, gt=0, le=120, description="seconds per attempt")
    retries: int = Field(
        0, ge=0, le=5, description="attempts after the first when the error is retryable"
    )
    breaker: Breaker = Field(
        default_factory=Breaker,
        description="the circuit breaker: calls are refused at once while the system is down",
    )
    sensitive: bool = Field(
        False,
        description="moves money or changes an account: a model-backed agent's call waits for"
        " a person's approval",
    )
    label: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="how a customer hears a call of it named ('the refund'); default: its name",
    )
    approved_by: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="the queue whose agents approve a sensitive call (default: the escalation's"
        " default route); supervisors approve any",
    )

    @field_validator("parameters", "result")
    @classmethod
    def _schema(cls, value: JsonSchema) -> JsonSchema:
        import jsonschema_rs

        try:
            jsonschema_rs.meta.validate(value)
            jsonschema_rs.Draft202012Validator(value, offline=True)  # its $refs resolve here
        except jsonschema_rs.ValidationError as exc:
            raise ValueError(f"not a JSON Schema: {exc.message}") from None
        return value


class HttpTool(ToolBase):
    """A call to one of the business's HTTP endpoints."""

    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(
        pattern=r"^https?://\S+$",
        description="URL template: {parameter} placeholders are filled from the arguments,"
        " ${ENV} and ${ENV:-default} from the environment when the pack loads",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Credentials | None = None
    idempotency_header: str | None = Field(
        "Idempotency-Key",
        description="header that carries the call's idempotency key (null: none)",
    )
    not_found: tuple[int, ...] = Field(
        (404,), description="statuses that mean 'no such thing' rather than a failure"
    )

    def placeholders(self) -> tuple[str, ...]:
        return tuple(PLACEHOLDER.findall(self.url))


class PythonTool(ToolBase):
    """A call to a function in-process: ``async def f(arguments, context) -> dict``."""

    kind: Literal["python"]
    entry: str = Field(pattern=ENTRY_POINT.pattern, description="package.module:function")


ToolSpec = Annotated[HttpTool | PythonTool, Field(discriminator="kind")]
