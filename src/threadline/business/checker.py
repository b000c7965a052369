"""Checking a pack: the model's own rules, then every cross-reference, template and file.

:func:`load` reads, expands, validates and checks a pack and returns the
:class:`Business`, or raises :class:`PackError` listing every problem found
(not only the first), each with its file and line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import orjson
import pydantic

from threadline.business.behaviour import (
    AnswerIntent,
    BookingIntent,
    HoursIntent,
    LocationSlot,
    LookupIntent,
    ReferenceSlot,
    ReplyForms,
    VisitIntent,
)
from threadline.business.business import Business
from threadline.business.defaults import DEFAULT_REPLIES, FLOW_REPLIES, GENERAL_REPLIES
from threadline.business.loader import PackError, Problem, Source, expand_environment, read
from threadline.business.model import Pack
from threadline.business.templates import Template, TemplateProblem, environment
from threadline.business.tool_specs import HttpTool, PythonTool

#: Proof methods that do not name a knowledge slot.
PROOF_METHODS: Final = frozenset({"login", "oidc", "otp", "agent"})
#: Tools the customer look-up may take as ``by``.
LOOKUP_BY: Final = ("phone", "email", "member", "id")

Check = Callable[[Pack, Source], Iterator[Problem]]


def _written(data: Any, loc: tuple[Any, ...], missing: bool) -> tuple[str | int, ...]:
    """``loc`` as keys the author wrote: the names pydantic gives union members (``http``,
    ``str``) are left out; a missing key, named last, is kept."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        written = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if written:
            node = node[part]
        elif not (missing and index == len(loc) - 1):
            continue
        path.append(part)
    return tuple(path)


def _pydantic_problems(
    exc: pydantic.ValidationError, source: Source, data: dict[str, Any]
) -> list[Problem]:
    out = []
    for error in exc.errors(include_url=False):
        path = _written(data, tuple(error["loc"]), error["type"] == "missing")
        message = str(error["msg"])
        if error["type"] == "extra_forbidden":
            message = "is not a known key"
        elif error["type"] == "missing":
            message = "is required"
        out.append(source.problem(path, message))
    return out


def _unknown(kind: str, name: object, known: Any) -> str:
    names = ", ".join(sorted(str(k) for k in known)) or "none"
    return f"unknown {kind} {name!r} (known: {names})"


def check_staff(pack: Pack, source: Source) -> Iterator[Problem]:
    queues = {q.id for q in pack.queues}
    locations = {loc.id for loc in pack.locations}
    for i, person in enumerate(pack.staff):
        for j, queue in enumerate(person.queues):
            if queue not in queues:
                yield source.problem(("staff", i, "queues", j), _unknown("queue", queue, queues))
        if person.location is not None and person.location not in locations:
            message = _unknown("location", person.location, locations)
            yield source.problem(("staff", i, "location"), message)


def check_unique(pack: Pack, source: Source) -> Iterator[Problem]:
    for section, items in (("locations", pack.locations), ("queues", pack.queues),
                           ("staff", pack.staff), ("knowledge", pack.knowledge)):  # fmt: skip
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                yield source.problem((section, i, "id"), f"{item.id!r} is used twice")
            seen.add(item.id)


def _slot_of(pack: Pack, source: Source, path: tuple[Any, ...], name: str,
             want: tuple[type, ...]) -> Iterator[Problem]:  # fmt: skip
    slot = pack.slots.get(name)
    if slot is None:
        yield source.problem(path, _unknown("slot", name, pack.slots))
    elif not isinstance(slot, want):
        kinds = " or ".join(t.model_fields["type"].annotation.__args__[0] for t in want)
        yield source.problem(path, f"slot {name!r} is a {slot.type} slot; a {kinds} slot is needed")


def _tool(pack: Pack, source: Source, path: tuple[Any, ...], name: str | None) -> Iterator[Problem]:
    if name is not None and name not in pack.tools:
        yield source.problem(path, _unknown("tool", name, pack.tools))


def check_intents(pack: Pack, source: Source) -> Iterator[Problem]:
    queues = {q.id for q in pack.queues}
    services = {s.id for loc in pack.locations for s in loc.services}
    for name, intent in pack.intents.items():
        at = ("intents", name)
        if intent.route is not None and intent.route.queue not in queues:
            yield source.problem((*at, "route", "queue"), _unknown("queue", intent.route.queue,
                                                                     queues))  # fmt: skip
        if isinstance(intent, LookupIntent):
            spec = intent.lookup
            yield from _slot_of(pack, source, (*at, "lookup", "slot"), spec.slot, (ReferenceSlot,))
            yield from _tool(pack, source, (*at, "lookup", "tool"), spec.tool)
            if spec.protects is not None and spec.protects not in pack.verification.data:
                yield source.problem((*at, "lookup", "protects"),
                                     _unknown("data class", spec.protects,
                                              pack.verification.data))  # fmt: skip
        elif isinstance(intent, BookingIntent):
            spec_b = intent.booking
            for field, want in (("location_slot", LocationSlot),):
                yield from _slot_of(pack, source, (*at, "booking", field),
                                    getattr(spec_b, field), (want,))  # fmt: skip
            for field in ("availability", "book", "appointments"):
                yield from _tool(pack, source, (*at, "booking", field), getattr(spec_b, field))
            if spec_b.service not in services:
                yield source.problem((*at, "booking", "service"),
                                     _unknown("location service", spec_b.service, services))
        elif isinstance(intent, HoursIntent | VisitIntent):
            yield from _slot_of(pack, source, (*at, "location_slot"), intent.location_slot,
                                (LocationSlot,))  # fmt: skip
            if isinstance(intent, VisitIntent) and intent.from_lookup is not None:
                other = pack.intents.get(intent.from_lookup)
                if not isinstance(other, LookupIntent):
                    yield source.problem((*at, "from_lookup"),
                                         f"{intent.from_lookup!r} is not a lookup intent")
        for flow_reply in FLOW_REPLIES.get(intent.does, ()):
            if flow_reply not in intent.replies and flow_reply not in pack.replies:
                yield source.problem((*at, "replies"), f"needs a {flow_reply!r} reply")
        if isinstance(intent, AnswerIntent) and "text" not in intent.replies:
            yield source.problem((*at, "replies"), "needs a 'text' reply")


def check_slots(pack: Pack, source: Source) -> Iterator[Problem]:
    for name, slot in pack.slots.items():
        if slot.implies is not None and slot.implies not in pack.intents:
            yield source.problem(("slots", name, "implies"),
                                 _unknown("intent", slot.implies, pack.intents))  # fmt: skip


def check_verification(pack: Pack, source: Source) -> Iterator[Problem]:
    for slot in pack.verification.knowledge:
        if slot not in pack.slots:
            yield source.problem(("verification", "knowledge", slot),
                                 _unknown("slot", slot, pack.slots))  # fmt: skip
    methods = PROOF_METHODS | set(pack.verification.knowledge)
    for data, proofs in pack.verification.data.items():
        for i, proof in enumerate(proofs):
            if proof not in methods:
                yield source.problem(("verification", "data", data, i),
                                     _unknown("proof", proof, methods))  # fmt: skip


def check_references(pack: Pack, source: Source) -> Iterator[Problem]:
    queues = {q.id for q in pack.queues}
    if pack.escalation.default_route.queue not in queues:
        yield source.problem(("escalation", "default_route", "queue"),
                             _unknown("queue", pack.escalation.default_route.queue, queues))
    yield from _tool(pack, source, ("customers", "lookup"), pack.customers.lookup)
    for i, tool in enumerate(pack.customers.records):
        yield from _tool(pack, source, ("customers", "records", i), tool)
    for key, intent in pack.voice.keypad.items():
        if intent not in pack.intents:
            yield source.problem(("voice", "keypad", key), _unknown("intent", intent, pack.intents))


def check_tools(pack: Pack, source: Source) -> Iterator[Problem]:
    for name, tool in pack.tools.items():
        at = ("tools", name)
        if isinstance(tool, HttpTool):
            properties = tool.parameters.get("properties", {})
            for placeholder in tool.placeholders():
                if placeholder not in properties:
                    yield source.problem((*at, "url"), f"{{{placeholder}}} is not a parameter")
        elif isinstance(tool, PythonTool):
            problem = entry_point_problem(pack, source.root, tool.entry)
            if problem:
                yield source.problem((*at, "entry"), problem)


def entry_point_problem(pack: Pack, root: Path, entry: str) -> str | None:
    """Why ``entry`` cannot be called, or None when it can."""
    module_name, _, function = entry.partition(":")
    with importable(pack, root):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import-time failure of the business's code
            return f"cannot import {module_name}: {type(exc).__name__}: {exc}"
    if not callable(getattr(module, function, None)):
        return f"{module_name} has no function {function}"
    return None


class importable:
    """The pack's ``python_path`` folders on ``sys.path`` (left there: tools import later)."""

    def __init__(self, pack: Pack, root: Path) -> None:
        self.folders = [str((root / p).resolve()) for p in pack.python_path]

    def __enter__(self) -> None:
        for folder in self.folders:
            if folder not in sys.path:
                sys.path.insert(0, folder)

    def __exit__(self, *exc: object) -> None:
        return None


def check_files(pack: Pack, source: Source) -> Iterator[Problem]:
    root = source.root.resolve()
    files = [(("brand", "logo"), pack.brand.logo if pack.brand else None)]
    files += [(("python_path", i), p) for i, p in enumerate(pack.python_path)]
    for path, name in files:
        if name is None:
            continue
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            yield source.problem(path, "must be inside the pack")
        elif not target.exists():
            yield source.problem(path, f"no such file or folder {name!r}")


def check_templates(pack: Pack, source: Source) -> Iterator[Problem]:
    env = environment()
    replies: list[tuple[tuple[Any, ...], Any]] = [
        (("replies", n), r) for n, r in pack.replies.items()
    ]
    replies += [(("intents", i, "replies", n), r) for i, spec in pack.intents.items()
                for n, r in spec.replies.items()]  # fmt: skip
    replies += [(("knowledge", i, "answer"), k.answer) for i, k in enumerate(pack.knowledge)]
    for path, reply in replies:
        forms = [("chat", reply.chat), ("voice", reply.voice)] if isinstance(
            reply, ReplyForms) else [("", reply)]  # fmt: skip
        for form, text in forms:
            if text is None:
                continue
            try:
                Template(env, text)
            except TemplateProblem as exc:
                where = (*path, form) if form else path
                file, line = source.where(where)
                yield Problem(file, line + exc.line - 1 if line else 0,
                              ".".join(str(p) for p in where), f"template: {exc}")  # fmt: skip
    for name in GENERAL_REPLIES:
        if name not in pack.replies:
            yield source.problem(("replies",), f"needs a {name!r} reply")


CHECKS: Final[tuple[Check, ...]] = (
    check_unique, check_staff, check_slots, check_intents, check_verification,
    check_references, check_tools, check_files, check_templates,
)  # fmt: skip


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The pack's data with the product's default replies under its own."""
    replies = data.get("replies")
    if replies is None or isinstance(replies, dict):
        data["replies"] = {**DEFAULT_REPLIES, **(replies or {})}
    return data


def load(path: Path, environ: Mapping[str, str] | None = None) -> Business:
    """The business in the pack at ``path``; PackError with every problem otherwise."""
    data, source = read(path)
    problems = expand_environment(data, source, environ)
    try:
        pack = Pack.model_validate(with_defaults(data))
    except pydantic.ValidationError as exc:
        # A value left unfilled (an unset ${VAR}) is not reported again as malformed.
        unfilled = {p.where for p in problems}
        model = [p for p in _pydantic_problems(exc, source, data) if p.where not in unfilled]
        raise PackError(problems + model) from None
    for check in CHECKS:
        problems.extend(check(pack, source))
    if problems:
        raise PackError(problems)
    return Business(pack, source.root, tuple(source.files))


def json_schema() -> bytes:
    """The pack format as JSON Schema, for editors."""
    schema = Pack.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Threadline business pack"
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
