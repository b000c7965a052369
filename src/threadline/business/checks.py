"""The checks a pack passes after its model's own rules: cross-references, files, templates.

Each check is a small function of the pack and where its values came from,
yielding every problem it finds; :data:`CHECKS` runs them in order.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, get_args

from threadline.business.behaviour import (
    AnswerIntent,
    BookingIntent,
    DateSlot,
    HoursIntent,
    LocationSlot,
    LookupIntent,
    ReferenceSlot,
    ReplyForms,
    TimeSlot,
    VisitIntent,
)
from threadline.business.defaults import (
    COMMON_VARIABLES,
    FLOW_REPLIES,
    GENERAL_REPLIES,
    REPLY_VARIABLES,
)
from threadline.business.loader import Problem, Source
from threadline.business.model import ChannelName, Pack
from threadline.business.templates import (
    Template,
    TemplateProblem,
    environment,
    free_variables,
    listing,
)
from threadline.business.tool_specs import HttpTool, PythonTool

#: Proof methods that do not name a knowledge slot.
PROOF_METHODS: Final = frozenset({"login", "oidc", "otp", "agent"})
CHANNELS: Final = get_args(ChannelName)

Check = Callable[[Pack, Source], Iterator[Problem]]
_SLOT_KINDS: Final[dict[type, str]] = {
    ReferenceSlot: "reference",
    LocationSlot: "location",
    DateSlot: "date",
    TimeSlot: "time",
}


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
    sections: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("locations", pack.locations), ("queues", pack.queues), ("staff", pack.staff),
        ("knowledge", pack.knowledge),
    )  # fmt: skip
    for section, items in sections:
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
        kinds = " or ".join(_SLOT_KINDS[t] for t in want)
        yield source.problem(path, f"slot {name!r} is a {slot.type} slot; a {kinds} slot is needed")


def _tool(pack: Pack, source: Source, path: tuple[Any, ...], name: str | None) -> Iterator[Problem]:
    if name is not None and name not in pack.tools:
        yield source.problem(path, _unknown("tool", name, pack.tools))


def _parameters(pack: Pack, tool: str | None) -> tuple[set[str], set[str]] | None:
    """The declared and required parameters of ``tool``; None if it declares no properties."""
    spec = pack.tools.get(tool or "")
    if spec is None or "properties" not in spec.parameters:
        return None
    return set(spec.parameters["properties"]), set(spec.parameters.get("required", ()))


def _takes(pack: Pack, source: Source, path: tuple[Any, ...], tool: str | None,
           given: set[str]) -> Iterator[Problem]:  # fmt: skip
    """A flow calls ``tool`` with ``given``: each must be a parameter, every required one given."""
    declared = _parameters(pack, tool)
    if declared is None:
        return
    known, required = declared
    if unknown := sorted(given - known):
        yield source.problem(
            path,
            f"{tool} is called with {', '.join(unknown)}, which it does"
            f" not declare (its parameters: {', '.join(sorted(known))})",
        )
    if missing := sorted(required - given):
        yield source.problem(
            path,
            f"{tool} requires {', '.join(missing)}, which this flow does"
            f" not give (it gives {', '.join(sorted(given))})",
        )


def _result_fields(pack: Pack, tool: str) -> set[str] | None:
    spec = pack.tools.get(tool)
    if spec is None or "properties" not in spec.result:
        return None
    if spec.result.get("additionalProperties", True) is not False:
        return None
    return set(spec.result["properties"])


def _check_lookup(pack: Pack, source: Source, at: tuple[Any, ...],
                  intent: LookupIntent) -> Iterator[Problem]:  # fmt: skip
    spec = intent.lookup
    yield from _slot_of(pack, source, (*at, "lookup", "slot"), spec.slot, (ReferenceSlot,))
    yield from _tool(pack, source, (*at, "lookup", "tool"), spec.tool)
    yield from _takes(pack, source, (*at, "lookup"), spec.tool, {spec.argument or spec.slot})
    if spec.protects is not None and spec.protects not in pack.verification.data:
        yield source.problem(
            (*at, "lookup", "protects"),
            _unknown("data class", spec.protects, pack.verification.data),
        )
    fields = _result_fields(pack, spec.tool)
    if fields is not None:
        for name in (*spec.public, spec.owner, spec.visit_location):
            if name is not None and name not in fields:
                yield source.problem((*at, "lookup"), f"{spec.tool}'s result has no field {name!r}")


def _check_booking(pack: Pack, source: Source, at: tuple[Any, ...],
                   intent: BookingIntent) -> Iterator[Problem]:  # fmt: skip
    spec = intent.booking
    for field, want in (("location_slot", LocationSlot), ("date_slot", DateSlot),
                        ("time_slot", TimeSlot)):  # fmt: skip
        yield from _slot_of(pack, source, (*at, "booking", field), getattr(spec, field), (want,))
    where = {"location", "date", "service"}
    calls = (("availability", where), ("book", where | {"time", "customer_id"}),
             ("appointments", {"customer_id"}))  # fmt: skip
    for field, given in calls:
        tool = getattr(spec, field)
        yield from _tool(pack, source, (*at, "booking", field), tool)
        yield from _takes(pack, source, (*at, "booking", field), tool, given)
    services = {s.id for loc in pack.locations for s in loc.services}
    if spec.service not in services:
        yield source.problem(
            (*at, "booking", "service"), _unknown("location service", spec.service, services)
        )


def check_intents(pack: Pack, source: Source) -> Iterator[Problem]:
    queues = {q.id for q in pack.queues}
    for name, intent in pack.intents.items():
        at = ("intents", name)
        if intent.route is not None and intent.route.queue not in queues:
            yield source.problem(
                (*at, "route", "queue"), _unknown("queue", intent.route.queue, queues)
            )
        if isinstance(intent, LookupIntent):
            yield from _check_lookup(pack, source, at, intent)
        elif isinstance(intent, BookingIntent):
            yield from _check_booking(pack, source, at, intent)
        elif isinstance(intent, HoursIntent | VisitIntent):
            yield from _slot_of(pack, source, (*at, "location_slot"), intent.location_slot,
                                (LocationSlot,))  # fmt: skip
        if isinstance(intent, HoursIntent):
            yield from _slot_of(pack, source, (*at, "date_slot"), intent.date_slot, (DateSlot,))
        if isinstance(intent, VisitIntent) and intent.from_lookup is not None:
            other = pack.intents.get(intent.from_lookup)
            if not isinstance(other, LookupIntent):
                yield source.problem(
                    (*at, "from_lookup"), f"{intent.from_lookup!r} is not a lookup intent"
                )
            elif other.lookup.visit_location is None:
                yield source.problem((*at, "from_lookup"), f"{intent.from_lookup!r} names no"
                                     " visit_location in its lookup")  # fmt: skip
        own = set(FLOW_REPLIES.get(intent.does, ())) | ({"about"} if intent.does == "lookup"
                                                           else set())  # fmt: skip
        for reply in intent.replies:
            if reply not in own:
                yield source.problem(
                    (*at, "replies", reply),
                    f"a {intent.does} intent says no {reply!r} reply"
                    f" (its replies: {', '.join(sorted(own)) or 'none'})",
                )
        for flow_reply in FLOW_REPLIES.get(intent.does, ()):
            if flow_reply not in intent.replies and flow_reply not in pack.replies:
                yield source.problem((*at, "replies"), f"needs a {flow_reply!r} reply")
        if isinstance(intent, AnswerIntent) and "text" not in intent.replies:
            yield source.problem((*at, "replies"), "needs a 'text' reply")


def check_examples(pack: Pack, source: Source) -> Iterator[Problem]:
    """The same phrasing under two intents teaches the agent nothing but doubt."""
    seen: dict[str, str] = {}
    phrasings: list[tuple[tuple[Any, ...], str, str]] = [
        (("intents", n, "examples", i), n, e)
        for n, spec in pack.intents.items()
        for i, e in enumerate(spec.examples)
    ]
    phrasings += [(("knowledge", k, "questions", i), f"knowledge {entry.id}", q)
                  for k, entry in enumerate(pack.knowledge)
                  for i, q in enumerate(entry.questions)]  # fmt: skip
    for path, owner, text in phrasings:
        key = " ".join(text.casefold().split())
        earlier = seen.setdefault(key, owner)
        if earlier != owner:
            yield source.problem(path, f"{text!r} is also an example of {earlier}")


def check_slots(pack: Pack, source: Source) -> Iterator[Problem]:
    bare: dict[int, str] = {}
    for name, slot in pack.slots.items():
        if slot.implies is not None and slot.implies not in pack.intents:
            yield source.problem(("slots", name, "implies"),
                                 _unknown("intent", slot.implies, pack.intents))  # fmt: skip
        if isinstance(slot, ReferenceSlot) and slot.bare_digits is not None:
            other = bare.setdefault(slot.bare_digits, name)
            if other != name:
                yield source.problem(
                    ("slots", name, "bare_digits"),
                    f"{other} also takes {slot.bare_digits} digits alone: a"
                    " bare number could be either (keep it for one)",
                )


def check_verification(pack: Pack, source: Source) -> Iterator[Problem]:
    verification = pack.verification
    for slot in verification.knowledge:
        if slot not in pack.slots:
            yield source.problem(("verification", "knowledge", slot),
                                 _unknown("slot", slot, pack.slots))  # fmt: skip
    methods = PROOF_METHODS | set(verification.knowledge)
    for method in verification.methods:
        if method not in methods:
            yield source.problem(("verification", "methods", method),
                                 _unknown("proof method", method, methods))  # fmt: skip
    for data, need in verification.data.items():
        if isinstance(need, dict) and "default" not in need and set(need) != set(CHANNELS):
            yield source.problem(
                ("verification", "data", data),
                f"says nothing for {listing(sorted(set(CHANNELS) - set(need)), 'and')}:"
                " add default (the level on the other channels)",
            )


def check_retention(pack: Pack, source: Source) -> Iterator[Problem]:
    """A retention rule names event types that hold personal data (nothing else is erased)."""
    from threadline.core.events import EventCodec  # every type registered

    personal = {spec.type for spec in EventCodec().catalogue if spec.pii}
    for index, rule in enumerate(pack.retention):
        for type_ in rule.types:
            if type_ not in personal:
                yield source.problem(("retention", index, "types"),
                                     _unknown("event type with personal data", type_,
                                              sorted(personal)))  # fmt: skip


def check_references(pack: Pack, source: Source) -> Iterator[Problem]:
    queues = {q.id for q in pack.queues}
    if pack.escalation.default_route.queue not in queues:
        yield source.problem(
            ("escalation", "default_route", "queue"),
            _unknown("queue", pack.escalation.default_route.queue, queues),
        )
    yield from _tool(pack, source, ("customers", "lookup"), pack.customers.lookup)
    yield from _takes(pack, source, ("customers", "lookup"), pack.customers.lookup, {"by", "value"})
    yield from _tool(pack, source, ("customers", "search"), pack.customers.search)
    yield from _takes(pack, source, ("customers", "search"), pack.customers.search, {"q", "limit"})
    for i, tool in enumerate(pack.customers.records):
        yield from _tool(pack, source, ("customers", "records", i), tool)
    for key, intent in pack.voice.keypad.items():
        if intent not in pack.intents:
            yield source.problem(("voice", "keypad", key), _unknown("intent", intent, pack.intents))


def check_tools(pack: Pack, source: Source) -> Iterator[Problem]:
    queues = {q.id for q in pack.queues}
    directory = {pack.customers.lookup, pack.customers.search} - {None}
    if pack.model is not None and pack.model.tools is not None:
        for i, allowed in enumerate(pack.model.tools):
            yield from _tool(pack, source, ("model", "tools", i), allowed)
            if allowed in directory:
                yield source.problem(
                    ("model", "tools", i),
                    f"{allowed} searches the customer directory: a model may only reach a"
                    " customer through the conversation's proof",
                )
    model = pack.model
    if model is not None and model.agents:
        if model.start not in model.agents:
            yield source.problem(("model", "start"), _unknown("agent", model.start, model.agents))
        usable = set(model.tools) if model.tools is not None else set(pack.tools) - directory
        for agent, specialist in model.agents.items():
            for i, wanted in enumerate(specialist.tools):
                if wanted not in usable:
                    where = ("model", "agents", agent, "tools", i)
                    yield source.problem(where, _unknown("model tool", wanted, sorted(usable)))
    elif model is not None and model.start is not None:
        yield source.problem(("model", "start"), "start names an agent, and there are no agents")
    for name, tool in pack.tools.items():
        at = ("tools", name)
        if tool.approved_by is not None and tool.approved_by not in queues:
            yield source.problem((*at, "approved_by"), _unknown("queue", tool.approved_by, queues))
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
    files: list[tuple[tuple[Any, ...], str | None]] = [
        (("brand", "logo"), pack.brand.logo if pack.brand else None)
    ]
    files += [(("python_path", i), p) for i, p in enumerate(pack.python_path)]
    for path, name in files:
        if name is None:
            continue
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            yield source.problem(path, "must be inside the pack")
        elif not target.exists():
            yield source.problem(path, f"no such file or folder {name!r}")


def _replies(pack: Pack) -> list[tuple[tuple[Any, ...], str, Any]]:
    """Every reply: where it is, its name, and the reply."""
    out: list[tuple[tuple[Any, ...], str, Any]] = [
        (("replies", n), n, r) for n, r in pack.replies.items()
    ]
    out += [(("intents", i, "replies", n), n, r) for i, spec in pack.intents.items()
            for n, r in spec.replies.items()]  # fmt: skip
    out += [(("knowledge", i, "answer"), "", k.answer) for i, k in enumerate(pack.knowledge)]
    return out


def check_templates(pack: Pack, source: Source) -> Iterator[Problem]:
    env = environment()
    for path, name, reply in _replies(pack):
        if path[0] == "replies" and name not in REPLY_VARIABLES:
            yield source.problem(path, f"no flow says a {name!r} reply")
            continue
        known = COMMON_VARIABLES | REPLY_VARIABLES.get(name, frozenset())
        forms = [("chat", reply.chat), ("voice", reply.voice)] if isinstance(
            reply, ReplyForms) else [("", reply)]  # fmt: skip
        for form, text in forms:
            if text is None:
                continue
            where = (*path, form) if form else path
            file, line = source.where(where)
            try:
                Template(env, text)
            except TemplateProblem as exc:
                yield Problem(file, line + exc.line - 1 if line else 0,
                              ".".join(str(p) for p in where), f"template: {exc}")  # fmt: skip
                continue
            unknown = sorted(free_variables(text) - known)
            if unknown:
                yield Problem(file, line, ".".join(str(p) for p in where),
                              f"template: unknown variable {unknown[0]!r} (this reply sees:"
                              f" {', '.join(sorted(known))})")  # fmt: skip
    for reply_name in GENERAL_REPLIES:
        if reply_name not in pack.replies:
            yield source.problem(("replies",), f"needs a {reply_name!r} reply")


def _plain(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".!")


def check_disclosures(pack: Pack, source: Source) -> Iterator[Problem]:
    """A call opens with the voice greeting, so it must carry the AI and recording disclosure
    (said once, where the business wants it in its greeting)."""
    for locale, greeting in pack.greetings.voice.items():
        disclosure = pack.disclosures.voice.get(locale) or pack.disclosures.voice.get(pack.locale)
        if disclosure is None:
            yield source.problem(("greetings", "voice", locale), "a voice greeting needs a voice"
                                 " disclosure (disclosures.voice) that it says")  # fmt: skip
        elif _plain(disclosure) not in _plain(greeting):
            yield source.problem(("greetings", "voice", locale), "does not say the voice"
                                 f" disclosure: {disclosure!r}")  # fmt: skip


CHECKS: Final[tuple[Check, ...]] = (
    check_unique, check_staff, check_slots, check_intents, check_examples, check_verification,
    check_references, check_tools, check_files, check_templates, check_disclosures,
    check_retention,
)  # fmt: skip
