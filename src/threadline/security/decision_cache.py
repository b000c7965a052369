"""The policy engine's decision cache: exact, across requests that differ only in ids.

A decision is a pure function of the request and the policies, so it can be kept.
Two levels: the exact request (its bytes as Cedar gets them: the same conversation's
next turn), then the request with every string the policies never name (ids: of
conversations, customers, agents, legs, stores…) replaced by its order of first
appearance. The policies compare such strings only for equality, with each other or
with the strings they do name, so two requests that differ only in ids, consistently,
get the same decision: one customer's second chat turn is answered like another's.
Policies that match patterns or call extension functions turn the renaming off; the
strings of the schema (attribute and type names) are never renamed.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from threadline.security.decision import Decision, Request, render

_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: What a renamed string starts with in a cache key; no policy string does.
_RENAMED: Final = "\x00#"
#: Operators that read strings otherwise than for equality (patterns, extension types).
_NOT_EQUALITY: Final = frozenset({"like", "ip", "decimal", "datetime", "duration",
                                  "isInRange", "isIpv4", "isIpv6", "isLoopback",
                                  "isMulticast", "offset", "toDate", "toTime"})  # fmt: skip
_JSON: Final = orjson.OPT_SORT_KEYS


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the cache keeps of a decision: the decision when it allows, the reason's
    template when it refuses (one verdict answers requests that differ in their ids)."""

    granted: Decision | None
    policies: tuple[str, ...]
    version: str
    template: str = ""

    def refused(self, request: Request) -> Decision:
        return Decision(False, self.policies, self.version, render(self.template, request))


@dataclass(frozen=True, slots=True)
class Lookup:
    """A request's cache keys, its context as Cedar gets it, and what the cache holds."""

    context: bytes
    exact: bytes
    renamed: bytes
    verdict: Verdict | None


class DecisionCache:
    """Verdicts by request, at most ``size`` on each level, the least recently used out."""

    def __init__(self, policies: Mapping[str, Any], schema: str, size: int) -> None:
        self._names = _Names.of(policies, schema)
        self._exact: OrderedDict[bytes, Verdict] = OrderedDict()
        self._renamed: OrderedDict[bytes, Verdict] = OrderedDict()
        self._size = size

    def lookup(self, request: Request) -> Lookup:
        """What the cache holds for ``request`` (``verdict`` None: nothing)."""
        context = orjson.dumps(request.context, option=_JSON)
        exact = hashlib.blake2b(
            b"\0".join((request.principal.json, request.action.encode(),
                        request.resource.json, context)), digest_size=20,
        ).digest()  # fmt: skip
        found = self._exact.get(exact)
        if found is not None:
            self._exact.move_to_end(exact)
            return Lookup(context, exact, b"", found)
        renamed = self._names.key(request)
        found = self._renamed.get(renamed)
        if found is not None:
            _keep(self._exact, exact, found, self._size)
        return Lookup(context, exact, renamed, found)

    def keep(self, lookup: Lookup, verdict: Verdict) -> None:
        _keep(self._exact, lookup.exact, verdict, self._size)
        _keep(self._renamed, lookup.renamed, verdict, self._size)

    def forget(self) -> None:
        self._exact.clear()
        self._renamed.clear()

    def __len__(self) -> int:
        return len(self._renamed)


@dataclass(frozen=True, slots=True)
class _Names:
    """The cache key of a request: its whole content, the strings the policies never
    name renamed by order of first appearance."""

    literals: frozenset[str]
    renaming: bool

    @classmethod
    def of(cls, static: Mapping[str, Any], schema: str) -> _Names:
        literals: set[str] = set(_WORD.findall(schema))  # the schema's names are not renamed
        keys: set[str] = set()
        _strings(static, literals, keys)
        # Patterns and extension functions read strings otherwise than for equality.
        renaming = not keys & _NOT_EQUALITY and not any(s.startswith(_RENAMED) for s in literals)
        return cls(frozenset(literals), renaming)

    def key(self, request: Request) -> bytes:
        names: dict[str, str] = {}
        literals = self.literals

        def name(value: str) -> str:
            if value in literals or not self.renaming:
                return value
            found = names.get(value)
            if found is None:
                found = names[value] = f"{_RENAMED}{len(names)}"
            return found

        def walk(value: Any) -> Any:
            kind = type(value)
            if kind is str:
                return name(value)
            if kind is dict:
                return {k: walk(value[k]) for k in sorted(value)}
            if kind is list or kind is tuple:
                return [walk(v) for v in value]
            if kind is bool or kind is int or value is None:
                return value
            return walk(dict(value)) if isinstance(value, Mapping) else walk(list(value))

        who, what = request.principal, request.resource
        body = (who.type, name(who.id), walk(who.attrs), request.action,
                what.type, name(what.id), walk(what.attrs), walk(request.context))  # fmt: skip
        return hashlib.blake2b(orjson.dumps(body, option=_JSON), digest_size=20).digest()


def _strings(value: Any, found: set[str], keys: set[str]) -> None:
    """Every string in ``value`` (the policies as JSON) into ``found``, keys into ``keys``."""
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            keys.add(k)
            found.add(k)
            _strings(v, found, keys)
    elif isinstance(value, list):
        for v in value:
            _strings(v, found, keys)


def _keep(cache: OrderedDict[bytes, Verdict], key: bytes, verdict: Verdict, size: int) -> None:
    cache[key] = verdict
    cache.move_to_end(key)
    if len(cache) > size:
        cache.popitem(last=False)
