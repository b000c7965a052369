"""What the policy engine decides on: requests of entities, and decisions.

A request is a principal, an action and a resource (each an :class:`Entity`: a Cedar
type, an id, and the attributes the rules read) and a context; a :class:`Decision`
answers it, with the policies that determined it and, for a refusal, its reason
(:func:`render` fills a policy's ``@reason`` in from the request).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import orjson

NAMESPACE: Final = "Threadline"
_JSON: Final = orjson.OPT_SORT_KEYS
_PLACEHOLDER: Final = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)*)(?:\|([^|}]*))?(?:\|([^}]*))?\}")


@dataclass(frozen=True)
class Entity:
    """A principal or resource as Cedar sees it: ``Threadline::<type>::"<id>"`` and the
    attributes the policies read (strings, booleans, lists for sets, dicts for records).
    Treat ``attrs`` as frozen: the entity's JSON is computed once."""

    type: str
    id: str
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uid(self) -> dict[str, str]:
        return {"type": f"{NAMESPACE}::{self.type}", "id": self.id}

    @cached_property
    def json(self) -> bytes:
        """The entity as Cedar's JSON (sorted keys: the same entity, the same bytes)."""
        return orjson.dumps({"uid": self.uid, "attrs": self.attrs, "parents": []}, option=_JSON)


@dataclass(frozen=True, slots=True)
class Request:
    """One question: may ``principal`` do ``action`` to ``resource`` in ``context``?"""

    principal: Entity
    action: str
    resource: Entity
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """Cedar's answer to a :class:`Request`."""

    allowed: bool
    #: The ``@id`` of the policies that determined it, in file order: the permits that
    #: allowed it, or the forbids that refused it, the first of them giving the reason
    #: (none for a refusal no policy applied to).
    policies: tuple[str, ...]
    #: The policy version it was taken under.
    version: str
    #: Why not, for a refusal; empty when allowed.
    reason: str = ""


def _value(value: Any, separator: str, empty: str) -> str:
    if value is None or value == "" or value == []:
        return empty
    if isinstance(value, list | tuple):
        return separator.join(sorted(str(v) for v in value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(template: str, request: Request) -> str:
    """``template`` with each ``{path}`` replaced from the request: ``{action}``,
    ``{resource}`` (its id), ``{resource.queue}``, ``{principal.queues|, |no queues}``
    (a set, joined by ``, ``, or ``no queues`` when empty), ``{context.leg.id}``.
    What the request does not hold reads ``none``."""
    roots: dict[str, Any] = {
        "action": request.action,
        "principal": {"": request.principal.id, **request.principal.attrs},
        "resource": {"": request.resource.id, **request.resource.attrs},
        "context": {"": "", **request.context},
    }

    def replace(match: re.Match[str]) -> str:
        path, separator, empty = match.group(1), match.group(2), match.group(3)
        parts = path.split(".")
        value: Any = roots.get(parts[0])
        if isinstance(value, dict) and len(parts) == 1:
            value = value[""]
        for part in parts[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return _value(value, ", " if separator is None else separator,
                      "none" if empty is None else empty)  # fmt: skip

    return _PLACEHOLDER.sub(replace, template)
