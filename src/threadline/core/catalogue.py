"""The catalogue of event types: one payload schema per type and version.

Each payload is a frozen pydantic model that forbids unknown fields. Fields
that hold personal data are declared with :data:`Pii`, which marks them
``x-pii`` in the exported JSON Schema; the governance layer encrypts exactly
those fields per customer. Old versions are kept so stored events can be
upcast on read by a chain of small pure functions.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from threadline.core.errors import UnknownEventType, ValidationError

#: Marks a payload field as personal data (encrypted per customer, redacted for models).
Pii: Final = Field(json_schema_extra={"x-pii": True})
#: How a personal-data text reads once its customer's key is destroyed (erasure).
ERASED: Final = "[erased]"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Payload(BaseModel):
    """Base of every payload schema: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    version: int
    schema: builtins.type[Payload]
    pii: frozenset[str]
    description: str


def _pii_fields(schema: type[Payload]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in schema.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("x-pii")
    )


class Catalogue:
    """Registry of event types, versions and upcasters."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], EventSpec] = {}
        self._current: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(
        self, type_: str, version: int, description: str = ""
    ) -> Callable[[type[Payload]], type[Payload]]:
        """Class decorator: register ``schema`` as the payload of ``type_`` at ``version``."""

        def decorate(schema: type[Payload]) -> type[Payload]:
            key = (type_, version)
            if key in self._specs:
                raise ValueError(f"{type_} v{version} is registered twice")
            doc = description or (schema.__doc__ or "").strip()
            self._specs[key] = EventSpec(type_, version, schema, _pii_fields(schema), doc)
            self._current[type_] = max(version, self._current.get(type_, 0))
            return schema

        return decorate

    def upcaster(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register the step that turns ``from_version`` into the next one."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_, from_version)] = fn
            return fn

        return decorate

    def current_version(self, type_: str) -> int:
        try:
            return self._current[type_]
        except KeyError:
            raise UnknownEventType(
                f"unknown event type {type_!r}",
                [{"field": "type", "reason": f"{type_!r} is not in the catalogue"}],
            ) from None

    def spec(self, type_: str, version: int) -> EventSpec:
        try:
            return self._specs[(type_, version)]
        except KeyError:
            self.current_version(type_)
            raise UnknownEventType(
                f"unknown version {version} of {type_!r}",
                [{"field": "version", "reason": f"{type_} has no version {version}"}],
            ) from None

    def validate(self, type_: str, version: int, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as validated, JSON-ready data; raises ValidationError naming each field."""
        spec = self.spec(type_, version)
        schema = spec.schema
        try:
            # model_validate and model_dump without their keyword plumbing: every event
            # written passes here.
            model = schema.__pydantic_validator__.validate_python(payload)
        except PydanticValidationError as exc:
            errors = [
                {
                    "field": "payload." + ".".join(str(p) for p in err["loc"]),
                    "reason": err["msg"],
                }
                for err in exc.errors()
            ]
            summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
            raise ValidationError(
                f"invalid {type_} v{version} payload: {summary}", errors
            ) from None
        data: dict[str, Any] = schema.__pydantic_serializer__.to_python(model, mode="json")
        return data

    def upcast(
        self, type_: str, version: int, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """Run the upcaster chain from ``version`` to the current version."""
        current = self.current_version(type_)
        if version > current or (type_, version) not in self._specs:
            self.spec(type_, version)
        while version < current:
            step = self._upcasters.get((type_, version))
            if step is None:
                raise UnknownEventType(
                    f"no upcaster from {type_} v{version}",
                    [{"field": "version", "reason": f"cannot upcast {type_} v{version}"}],
                )
            payload = step(payload)
            version += 1
        return payload, version

    def pii_fields(self, type_: str, version: int) -> frozenset[str]:
        return self.spec(type_, version).pii

    def __iter__(self) -> Iterator[EventSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: (s.type, s.version)))

    def json_schema(self, spec: EventSpec) -> dict[str, Any]:
        """The payload's JSON Schema, with the catalogue's identity and PII marks."""
        schema: dict[str, Any] = spec.schema.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:threadline:event:{spec.type}:v{spec.version}"
        schema["title"] = f"{spec.type} v{spec.version}"
        if spec.description:
            schema["description"] = spec.description
        schema["x-event-type"] = spec.type
        schema["x-event-version"] = spec.version
        schema["x-pii-fields"] = sorted(spec.pii)
        return schema


CATALOGUE: Final = Catalogue()

# Re-exported for payload modules.
__all__ = [
    "CATALOGUE",
    "ERASED",
    "Annotated",
    "Catalogue",
    "EventSpec",
    "Payload",
    "Pii",
    "Upcaster",
]
