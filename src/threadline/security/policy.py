"""The policy engine: every authorization decision is Cedar's, on versioned policy files.

The policies are ``policies/*.cedar``, read in file-name order, and the schema they
are validated against is ``policies/threadline.cedarschema``. :data:`POLICY_VERSION`
names them: ``authz-`` and the first 12 hex digits of the SHA-256 of the files (names
and contents), so a decision, and an audit entry, says which rules it was taken under.

A request is a principal, an action and a resource (each an :class:`Entity`: a type,
an id, and the attributes the rules read) and a context. :meth:`PolicyEngine.decide`
answers with a :class:`Decision`: allowed or not, the ids (``@id``) of the policies
that determined it, the version, and for a refusal its reason. The policies are
written so that each kind of principal has a permit opening what it may ask for at
all, and forbids that each state one rule, annotated with the ``@reason`` a refusal
gives; the reason of the first forbid (in file order) that refused is the one given.
A refusal no forbid explains (no permit applied) gets the action's reason in
:data:`REFUSALS`.

The engine fails closed: a request Cedar cannot evaluate (malformed, not fitting the
schema) or any policy evaluating to an error is a refusal, logged with the action,
the entity types and the policy ids, never the request's attributes.

Decisions are pure functions of the request and the policies, so they are cached
exactly (:mod:`threadline.security.decision_cache`: also across requests that differ
only in ids). The policies are parsed once (``cedarpy.PolicySet``), each request is
put only to the policies whose scope can match it, and several requests are decided
in one call (:meth:`PolicyEngine.decide_all`, an append of several events).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

import cedarpy
import structlog

from threadline.security.decision import NAMESPACE, Decision, Entity, Request, render
from threadline.security.decision_cache import DecisionCache, Lookup, Verdict

__all__ = [
    "ENGINE", "FAILED", "POLICIES", "POLICY_VERSION", "REFUSALS", "SCHEMA_FILE", "Decision",
    "Entity", "PolicyEngine", "Request", "policy_files", "problems", "render", "version_of",
]  # fmt: skip

log = structlog.get_logger("threadline.authz")

ACTION_TYPE: Final = f"{NAMESPACE}::Action"
#: The folder of the policy files and the schema, shipped with the package.
POLICIES: Final = resources.files("threadline.security") / "policies"
SCHEMA_FILE: Final = "threadline.cedarschema"
#: The actions on routes (``call``, ``open``, ``view``); no action group holds them.
ROUTE_ACTIONS: Final = frozenset({"call", "open", "view"})
#: Decisions kept, per engine: the chat path's few distinct requests stay in it.
CACHE_SIZE: Final = 16_384
#: What a refusal says when no forbid explains it, by action (event types: ``append``).
REFUSALS: Final = {
    "read": "may not read conversations",
    "append": "may not append events",
    "work": "may not work conversation {resource.id}",
    "answer_offer": "may not answer offer {context.offer}",
    "open_visit": "may not open a visit on conversation {resource.id}",
    "read_queue": "may not see queue {resource.name}",
    "see_identifiers": "sees customers' identifiers masked",
    "manage_tokens": "only admins manage tokens",
    "call": "may not call {resource}",
    "open": "may not open {resource}",
    "view": "may not view {resource}",
}
#: What a refusal says when the policies could not decide (an error: fail closed).
FAILED: Final = "the authorization policy could not decide"


@dataclass(frozen=True, slots=True)
class _Policy:
    id: str
    key: str
    order: int
    reason: str | None
    #: The one principal type its scope admits (None: any).
    principal: str | None
    #: Whether its scope admits only route actions (True), none (False), or both (None).
    routes: bool | None


def policy_files(folder: Traversable = POLICIES) -> list[tuple[str, str]]:
    """The policy files (``*.cedar``, in name order) and then the schema: (name, text)."""
    cedar = sorted((f for f in folder.iterdir() if f.name.endswith(".cedar")),
                   key=lambda f: f.name)  # fmt: skip
    files = [(f.name, f.read_text(encoding="utf-8")) for f in cedar]
    return [*files, (SCHEMA_FILE, (folder / SCHEMA_FILE).read_text(encoding="utf-8"))]


def version_of(files: Sequence[tuple[str, str]]) -> str:
    """``authz-`` and the first 12 hex digits of the SHA-256 of the files' names and texts."""
    digest = hashlib.sha256()
    for name, text in files:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return f"authz-{digest.hexdigest()[:12]}"


#: The version of the policies this package ships: what every decision is taken under.
POLICY_VERSION: Final = version_of(policy_files())


class PolicyEngine:
    """Decides requests with Cedar on one policy set, failing closed, caching exactly.

    A request is put to the policies whose scope can match it: those for its
    principal's type (or any) and for its kind of action (a route's, or not). The
    others cannot apply to it, so the decision is the whole set's, for a fraction of
    the evaluation (``partition=False`` puts every request to the whole set).
    """

    def __init__(
        self,
        policies: str,
        schema: str,
        version: str,
        *,
        cache_size: int = CACHE_SIZE,
        partition: bool = True,
    ) -> None:
        self.version = version
        self._schema = cedarpy.Schema.from_str(schema)
        self._static, self._policies = _annotations(policies)
        self._whole = cedarpy.PolicySet.from_str(policies)
        self._partition = partition
        self._sets: dict[tuple[str, bool], cedarpy.PolicySet] = {}
        self._cache = DecisionCache(self._static, schema, cache_size)
        if partition:  # parsed now, not on a first request
            for kind in {p.principal for p in self._policies.values() if p.principal}:
                for action in ("read", "call"):
                    who = Entity(kind.split("::")[-1], "")
                    self._policy_set(Request(who, action, Entity("", "")))
        self.hits = 0
        self.misses = 0
        #: Counts :meth:`forget` calls: what keeps decisions elsewhere starts again on a change.
        self.epoch = 0

    @classmethod
    def load(cls, folder: Traversable = POLICIES, **options: Any) -> PolicyEngine:
        """The engine on the policy files in ``folder`` (the package's, by default)."""
        files = policy_files(folder)
        policies = "\n".join(text for name, text in files if name != SCHEMA_FILE)
        return cls(policies, files[-1][1], version_of(files), **options)

    # -- deciding ----------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """Whether ``request`` is allowed, and by (or refused by) which policies."""
        return self.decide_all([request])[0]

    def decide_all(self, requests: Sequence[Request]) -> list[Decision]:
        """Each request's decision; the ones not cached are put to Cedar together."""
        decisions: list[Decision | None] = [None] * len(requests)
        pending: list[_Pending] = []
        for n, request in enumerate(requests):
            found = self._cache.lookup(request)
            verdict = found.verdict
            if verdict is None:
                self.misses += 1
                pending.append(_Pending(n, request, found))
            else:
                self.hits += 1
                decisions[n] = verdict.granted or verdict.refused(request)
        for group in _consistent(pending):
            for item, verdict in zip(group, self._evaluate(group), strict=True):
                if verdict is None:
                    decisions[item.n] = Decision(False, (), self.version, FAILED)
                    continue
                self._cache.keep(item.found, verdict)
                decisions[item.n] = verdict.granted or verdict.refused(item.request)
        return [d for d in decisions if d is not None]

    def allows(self, request: Request) -> bool:
        """Whether ``request`` is allowed."""
        return self.decide(request).allowed

    def forget(self) -> None:
        """Empty the decision cache (every request is put to Cedar again)."""
        self._cache.forget()
        self.epoch += 1

    @property
    def cached(self) -> int:
        """How many decisions the cache keeps."""
        return len(self._cache)

    @property
    def hit_rate(self) -> float:
        """The share of decisions answered from the cache."""
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0

    def _policy_set(self, request: Request) -> cedarpy.PolicySet:
        """The policies whose scope can match ``request``."""
        if not self._partition:
            return self._whole
        key = (request.principal.type, request.action in ROUTE_ACTIONS)
        found = self._sets.get(key)
        if found is None:
            kind, route = f"{NAMESPACE}::{key[0]}", key[1]
            chosen = {p.key: self._static[p.key] for p in self._policies.values()
                      if p.principal in (None, kind) and p.routes in (None, route)}  # fmt: skip
            found = cedarpy.PolicySet.from_json_str(json.dumps(
                {"staticPolicies": chosen, "templates": {}, "templateLinks": []}))  # fmt: skip
            self._sets[key] = found
        return found

    def _evaluate(self, group: Sequence[_Pending]) -> list[Verdict | None]:
        """Cedar's decisions on ``group`` (None where it reached none: refused, logged)."""
        entities = dict.fromkeys(e for item in group for e in (item.principal, item.resource))
        asked = [
            {
                "principal": item.request.principal.uid,
                "action": {"type": ACTION_TYPE, "id": item.request.action},
                "resource": item.request.resource.uid,
                "context": item.found.context.decode(),
            }
            for item in group
        ]
        try:
            results = cedarpy.is_authorized_batch(
                asked, self._policy_set(group[0].request),
                "[" + b",".join(entities).decode() + "]", schema=self._schema,
            )  # fmt: skip
        except Exception as exc:  # any failure is a refusal, logged without the request
            for item in group:
                self._log_failure(item.request, type(exc).__name__, ())
            return [None] * len(group)
        return [self._decision(item.request, result)
                for item, result in zip(group, results, strict=True)]  # fmt: skip

    def _decision(self, request: Request, result: cedarpy.AuthzResult) -> Verdict | None:
        diagnostics = result.diagnostics
        named = diagnostics.id_annotations_by_reason
        ids = tuple(sorted((named.get(p, p) for p in diagnostics.reasons), key=self._order))
        if diagnostics.errors or result.decision not in (cedarpy.Decision.Allow,
                                                         cedarpy.Decision.Deny):  # fmt: skip
            self._log_failure(request, "evaluation", ids, len(diagnostics.errors))
            return None
        if result.allowed:
            return Verdict(Decision(True, ids, self.version), ids, self.version)
        return Verdict(None, ids, self.version, self._reason(request, ids))

    def _order(self, policy_id: str) -> int:
        policy = self._policies.get(policy_id)
        return policy.order if policy is not None else len(self._policies)

    def _reason(self, request: Request, ids: Sequence[str]) -> str:
        """The ``@reason`` of the first refusing policy (``ids`` are in file order), else
        the action's: a template, rendered for each request it answers."""
        explained = [p.reason for i in ids if (p := self._policies.get(i)) is not None and p.reason]
        return explained[0] if explained else REFUSALS.get(request.action, REFUSALS["append"])

    def _log_failure(
        self, request: Request, error: str, policies: Sequence[str], errors: int = 1
    ) -> None:
        log.error(
            "authorization failed closed", error=error, errors=errors,
            action=request.action, principal_type=request.principal.type,
            resource_type=request.resource.type, policies=list(policies),
            policy_version=self.version,
        )  # fmt: skip


def problems(folder: Traversable = POLICIES) -> list[str]:
    """What is wrong with the policies in ``folder`` against its schema (empty: nothing)."""
    files = policy_files(folder)
    policies = "\n".join(text for name, text in files if name != SCHEMA_FILE)
    result = cedarpy.validate_policies(policies, files[-1][1])
    return [str(e) for e in result.errors]


@dataclass(frozen=True, slots=True)
class _Pending:
    """The ``n``-th request of a batch, which the cache did not answer."""

    n: int
    request: Request
    found: Lookup

    @property
    def principal(self) -> bytes:
        return self.request.principal.json

    @property
    def resource(self) -> bytes:
        return self.request.resource.json


def _annotations(policies: str) -> tuple[dict[str, Any], dict[str, _Policy]]:
    """The policies as Cedar's JSON, and each by its ``@id``: its position in the set, its
    ``@reason``, and what its scope admits."""
    parsed: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(policies))["staticPolicies"]
    found: dict[str, _Policy] = {}
    for key, body in parsed.items():
        notes = body.get("annotations", {})
        policy_id = notes.get("id")
        if not policy_id:
            raise ValueError(f"every policy needs an @id; {key} has none")
        if policy_id in found:
            raise ValueError(f"two policies have the @id {policy_id!r}")
        principal = body["principal"]
        only = principal.get("entity_type") if principal["op"] == "is" else None
        if principal["op"] not in ("All", "is") or "in" in principal:
            only = None  # a scope naming entities: put to every request, to be safe
        found[policy_id] = _Policy(policy_id, key, int(key.removeprefix("policy")),
                                   notes.get("reason"), only, _routes(body["action"]))  # fmt: skip
    return parsed, found


def _routes(scope: Mapping[str, Any]) -> bool | None:
    """Whether an action scope admits only route actions, none of them, or both (None)."""
    if scope["op"] == "All":
        return None
    named = {e["id"] for e in scope.get("entities", [])}
    if "entity" in scope:
        named.add(scope["entity"]["id"])
    if named <= ROUTE_ACTIONS:
        return True
    return None if named & ROUTE_ACTIONS else False


def _consistent(pending: Sequence[_Pending]) -> list[list[_Pending]]:
    """``pending`` in groups Cedar can decide together: within a group an entity id
    stands for one entity (one conversation's state before each of several events
    makes several groups)."""
    groups: list[tuple[list[_Pending], dict[tuple[str, str], bytes]]] = []
    for item in pending:
        request = item.request
        # One policy set per call: for the principal's type, and a route's action or not.
        policy_set = f"{request.principal.type}:{request.action in ROUTE_ACTIONS}".encode()
        wanted = {(request.principal.type, request.principal.id): item.principal,
                  (request.resource.type, request.resource.id): item.resource,
                  ("", ""): policy_set}  # fmt: skip
        for group, uids in groups:
            if all(uids.get(uid, data) == data for uid, data in wanted.items()):
                group.append(item)
                uids.update(wanted)
                break
        else:
            groups.append(([item], dict(wanted)))
    return [group for group, _ in groups]


#: The engine on the package's policies: what the service decides with.
ENGINE: Final = PolicyEngine.load()
