"""Which payload fields hold personal data, and the tombstone each reads as once erased.

A field is sealed when the catalogue marks it ``Pii``, or when it holds a value marked so
below its top level: an optional ``Annotated[Name, Pii] | None``, or a model with such a
field (a merge's identifiers). Its tombstone is the first of ``"[erased]"``, ``{}``,
``[]`` and ``None`` its schema accepts, so an erased event still fits its schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, get_args

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo

from threadline.core.catalogue import CATALOGUE, ERASED, Catalogue, Payload

#: Tombstones tried in order; the first a field's schema accepts is its tombstone.
_CANDIDATES: Final[tuple[Any, ...]] = (ERASED, {}, [], None)


def _holds_pii(annotation: Any) -> bool:
    """Whether ``annotation`` holds a value marked ``Pii`` below its top level: an optional
    ``Annotated[Name, Pii] | None``, or a model with such a field."""
    if isinstance(annotation, FieldInfo):
        return _pii_marked(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Payload):
        return any(_pii_marked(info) or _holds_pii(info.annotation)
                   for info in annotation.model_fields.values())  # fmt: skip
    return any(_holds_pii(arg) for arg in get_args(annotation))


def _pii_marked(info: Any) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("x-pii"))


def _tombstone(schema: type[Payload], name: str) -> Any:
    info = schema.model_fields[name]
    shape: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(shape)
    for candidate in _CANDIDATES:
        try:
            adapter.validate_python(candidate)
        except PydanticValidationError:
            continue
        return candidate
    return ERASED  # no schema in the catalogue needs this: tests check every one fits


@dataclass(frozen=True, slots=True)
class Sealed:
    """The sealed fields of one type and version, and the tombstone of each."""

    fields: tuple[str, ...]
    tombstones: dict[str, Any]


def sealed_fields(catalogue: Catalogue = CATALOGUE) -> dict[tuple[str, int], Sealed]:
    """Per (type, version) with personal data: the fields sealed and their tombstones."""
    found: dict[tuple[str, int], Sealed] = {}
    for spec in catalogue:
        names = tuple(
            name
            for name, info in spec.schema.model_fields.items()
            if name in spec.pii or _holds_pii(info.annotation)
        )
        if names:
            stones = {name: _tombstone(spec.schema, name) for name in names}
            found[(spec.type, spec.version)] = Sealed(names, stones)
    return found
