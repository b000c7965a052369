"""Loading and checking a business pack: every problem with its file and line, all at once.

Packs are written into the test's folder: the minimal pack (``tests/packs/minimal``:
one queue, one intent) with whatever each test adds or breaks.
"""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jinja2.exceptions import SecurityError, UndefinedError
from jsonschema import Draft202012Validator

from tests.conftest import NORTHWIND
from threadline.business import Business, PackError, Problem, json_schema, load
from threadline.business.checker import with_defaults
from threadline.business.loader import read
from threadline.business.templates import Template, TemplateProblem, environment
from threadline.core.errors import ConfigurationError

MINIMAL = Path(__file__).resolve().parent / "packs" / "minimal"
BASE = (MINIMAL / "business.yaml").read_text(encoding="utf-8")
#: The minimal pack's main file with its intents in ``intents.yaml``.
INCLUDING = (
    BASE[: BASE.index("intents:")]
    + "intents: !include intents.yaml\n"
    + (BASE[BASE.index("escalation:") :])
)


def write(root: Path, files: dict[str, str]) -> Path:
    """``files`` (name -> YAML or text, dedented) in ``root``; the pack's folder."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def pack(root: Path, more: str = "", **files: str) -> Path:
    """The minimal pack with ``more`` appended to business.yaml, and other ``files``."""
    return write(root, {"business.yaml": BASE + textwrap.dedent(more), **files})


def problems(path: Path, environ: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(PackError) as failed:
        load(path, environ or {})
    return failed.value.problems


def only(path: Path, environ: dict[str, str] | None = None) -> Problem:
    (problem,) = problems(path, environ)
    return problem


def line_of(path: Path, marker: str) -> int:
    """The line (from 1) of ``path`` where ``marker`` first appears."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} is not in {path}")


# -- packs that load -----------------------------------------------------------------------------


def test_the_northwind_pack_loads_with_every_file_it_includes() -> None:
    business = load(NORTHWIND)
    assert (business.id, business.name) == ("northwind", "Northwind Devices")
    names = {str(f.relative_to(NORTHWIND.resolve())) for f in business.files}
    assert names == {"business.yaml", "intents.yaml", "tools.yaml", "replies.yaml",
                     "replies/order_found.j2"}  # fmt: skip
    assert len(business.digest) == 12 and business.digest == load(NORTHWIND).digest


def test_loading_a_pack_again_compiles_none_of_its_templates_again() -> None:
    from threadline.business.templates import _code

    first = load(NORTHWIND)
    compiled = _code.cache_info().misses
    again = load(NORTHWIND)
    assert _code.cache_info().misses == compiled
    assert again.digest == first.digest
    names = sorted(first.pack.replies)
    assert [again.reply(n).chat.source for n in names] == [first.reply(n).chat.source
                                                            for n in names]  # fmt: skip


def test_a_minimal_pack_loads_with_the_products_default_replies() -> None:
    business = load(MINIMAL)
    assert (business.id, [q.id for q in business.queues], list(business.pack.intents)) == (
        "minimal", ["front_desk"], ["human"])  # fmt: skip
    assert (business.locations, business.staff, business.pack.tools) == ((), (), {})
    text = business.reply("handoff").render(False, {"reason_code": "customer_request",
                                                    "queue_name": "front desk"})  # fmt: skip
    assert text.startswith("Of course. I'm passing this conversation to our front desk team")


#: A location in London, with ``LOCALE`` replaced by a locale line (or nothing).
STRAND = """\
locations:
  - id: strand
    name: Lumen Strand
    address: 1 Strand, London WC2N 5HR
    timezone: Europe/London
    LOCALE
    hours: {mon: "09:00-17:00", tue: null, wed: null, thu: null, fri: null, sat: null,
            sun: null}
"""


def test_a_packs_locale_is_kept_as_a_bcp_47_tag_and_its_replies_say_times_in_it(
    tmp_path: Path,
) -> None:
    business = load(pack(tmp_path, "locale: en_GB\n"))
    until = datetime(2026, 7, 15, 16, 56, tzinfo=ZoneInfo("Europe/London"))
    text = business.reply("checkin_code").render(False, {"location": None, "until": until})
    assert business.locale == "en-GB"
    assert text.endswith("It works once, until 16:56 BST.")


def test_a_location_may_say_times_in_a_locale_of_its_own(tmp_path: Path) -> None:
    business = load(pack(tmp_path, STRAND.replace("LOCALE", "locale: en-GB")))
    assert (business.locale, business.require_location("strand").locale) == ("en-US", "en-GB")


def test_a_location_without_a_locale_says_times_in_the_packs(tmp_path: Path) -> None:
    business = load(pack(tmp_path, "locale: fr-CA\n" + STRAND.replace("LOCALE", "")))
    assert business.require_location("strand").locale == "fr-CA"


def test_a_reply_may_name_the_locale_it_says_times_in(tmp_path: Path) -> None:
    business = load(pack(tmp_path, """\
        locale: en-GB
        knowledge:
          - {id: clock, questions: [which clock], answer: "{{ locale }}", source: house rules}
    """))  # fmt: skip
    assert business.knowledge_answer("clock").render(False, {}) == "en-GB"


def test_a_changed_file_changes_the_digest(tmp_path: Path) -> None:
    root = pack(tmp_path)
    before = load(root).digest
    pack(tmp_path, "locale: fr-FR\n")
    assert load(root).digest != before


def test_a_folder_without_business_yaml_is_no_pack(tmp_path: Path) -> None:
    problem = only(tmp_path)
    assert "no such file" in problem.message and "business.yaml" in problem.file


def test_a_pack_error_is_a_configuration_error_naming_the_first_problem_and_the_count(
    tmp_path: Path,
) -> None:
    root = pack(tmp_path, "colour: blue\nflavour: mint\n")
    with pytest.raises(ConfigurationError) as failed:
        load(root)
    assert str(failed.value) == (
        f"business.yaml:{line_of(root / 'business.yaml', 'colour')}: colour: is not a known key"
        " (and 1 more)")  # fmt: skip


# -- problems with file and line -----------------------------------------------------------------


def test_a_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    root = pack(
        tmp_path,
        "knowledge: !include knowledge.yaml\n",
        **{"knowledge.yaml": "- id: returns\n  questions: [what is it]\n  answer: a: b\n"},
    )
    problem = only(root)
    assert (problem.file, problem.line) == ("knowledge.yaml", 3)
    assert "not valid YAML" in problem.message


def test_an_unknown_key_is_reported_where_it_is_written(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "business.yaml": INCLUDING,
        "intents.yaml": """\
            human:
              does: handoff
              examples: [talk to a person]
              reasons: customer_request
        """,
    })  # fmt: skip
    problem = only(root)
    assert (problem.file, problem.line, problem.where, problem.message) == (
        "intents.yaml",
        4,
        "intents.human.reasons",
        "is not a known key",
    )


def test_a_value_of_the_wrong_type_is_reported_with_its_line(tmp_path: Path) -> None:
    root = pack(tmp_path, "locale: 42\n")
    problem = only(root)
    assert (problem.file, problem.line, problem.where) == (
        "business.yaml",
        line_of(root / "business.yaml", "locale: 42"),
        "locale",
    )
    assert "string" in problem.message


def test_an_unknown_locale_is_refused_with_its_line_and_examples(tmp_path: Path) -> None:
    root = pack(tmp_path, "locale: en-XX\n")
    problem = only(root)
    assert (problem.file, problem.line, problem.where, problem.message) == (
        "business.yaml",
        line_of(root / "business.yaml", "locale: en-XX"),
        "locale",
        "unknown locale 'en-XX' (use a language and country: en-US, en-GB, fr-CA)",
    )


def test_a_locations_unknown_locale_is_refused(tmp_path: Path) -> None:
    root = pack(tmp_path, STRAND.replace("LOCALE", "locale: british"))
    problem = only(root)
    assert (problem.where, problem.line) == (
        "locations[0].locale", line_of(root / "business.yaml", "locale: british"))  # fmt: skip
    assert problem.message.startswith("unknown locale 'british'")


def test_a_missing_section_is_required(tmp_path: Path) -> None:
    root = write(tmp_path, {"business.yaml": BASE.split("escalation:")[0]})
    problem = only(root)
    assert (problem.where, problem.message) == ("escalation", "is required")


def test_a_union_member_is_not_named_in_where_a_problem_is(tmp_path: Path) -> None:
    root = pack(tmp_path, "tools:\n  shop: {kind: http, url: ftp://shop.example}\n")
    problem = only(root)
    assert problem.where == "tools.shop.url"
    assert problem.line == line_of(root / "business.yaml", "shop:")


@pytest.mark.parametrize(
    ("more", "marker", "where", "message"),
    [
        ("staff:\n  - {id: a, name: A, role: agent, queues: [nowhere]}\n", "nowhere",
         "staff[0].queues[0]", "unknown queue 'nowhere' (known: front_desk)"),
        ("staff:\n  - {id: b, name: B, role: associate, location: mars}\n", "mars",
         "staff[0].location", "unknown location 'mars' (known: none)"),
        ("slots:\n  day: {type: date, implies: dance}\n", "dance",
         "slots.day.implies", "unknown intent 'dance' (known: human)"),
        ("voice:\n  keypad: {'1': dance}\n", "dance",
         "voice.keypad.1", "unknown intent 'dance' (known: human)"),
        ("customers:\n  lookup: find_customer\n", "find_customer",
         "customers.lookup", "unknown tool 'find_customer' (known: none)"),
        ("verification:\n  knowledge: {postcode: postcode}\n", "postcode",
         "verification.knowledge.postcode", "unknown slot 'postcode' (known: none)"),
    ],
)  # fmt: skip
def test_an_unknown_reference_is_reported_with_its_line(
    tmp_path: Path, more: str, marker: str, where: str, message: str
) -> None:
    root = pack(tmp_path, more)
    problem = only(root)
    assert (problem.file, problem.line, problem.where, problem.message) == (
        "business.yaml", line_of(root / "business.yaml", marker), where, message)  # fmt: skip


def test_an_intents_unknown_queue_slot_and_tool_are_reported_in_its_file(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "business.yaml": INCLUDING,
        "intents.yaml": """\
            human: {does: handoff, examples: [talk to a person]}
            order_status:
              does: lookup
              route: {queue: orders}
              lookup: {slot: order_number, tool: lookup_order}
              examples: [where is my order]
              replies: {found: Found it.}
        """,
    })  # fmt: skip
    found = {(p.file, p.line, p.where, p.message.split(" (")[0]) for p in problems(root)}
    assert found == {
        ("intents.yaml", 4, "intents.order_status.route.queue", "unknown queue 'orders'"),
        ("intents.yaml", 5, "intents.order_status.lookup.slot", "unknown slot 'order_number'"),
        ("intents.yaml", 5, "intents.order_status.lookup.tool", "unknown tool 'lookup_order'"),
    }


def test_a_template_that_does_not_compile_is_reported_at_its_line(tmp_path: Path) -> None:
    root = pack(
        tmp_path,
        """\
        replies:
          not_understood: >-
            Sorry, {{ what }
    """,
    )
    problem = only(root)
    assert (problem.file, problem.line, problem.where) == (
        "business.yaml", line_of(root / "business.yaml", "not_understood"),
        "replies.not_understood")  # fmt: skip
    assert problem.message.startswith("template: ")


def test_a_template_error_in_an_included_file_is_reported_at_its_line_there(
    tmp_path: Path,
) -> None:
    root = pack(tmp_path, "replies:\n  not_understood: !include replies/sorry.j2\n", **{
        "replies/sorry.j2": "Sorry,\n{% if voice %}\nI didn't catch {{ that }\n{% endif %}\n",
    })  # fmt: skip
    problem = only(root)
    assert (problem.file, problem.line, problem.where) == (
        "replies/sorry.j2", 3, "replies.not_understood")  # fmt: skip


def test_a_key_given_twice_is_reported_at_its_second_line(tmp_path: Path) -> None:
    root = pack(tmp_path, "name: Again\n")
    problem = only(root)
    assert (problem.file, problem.line, problem.where, problem.message) == (
        "business.yaml",
        line_of(root / "business.yaml", "Again"),
        "name",
        "is given twice",
    )


def test_an_include_outside_the_pack_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"secrets.yaml": "a: 1\n"})
    root = pack(tmp_path / "pack", "knowledge: !include ../secrets.yaml\n")
    problem = only(root)
    assert (problem.file, problem.line, problem.message) == (
        "business.yaml", line_of(root / "business.yaml", "secrets"),
        "includes a file outside the pack")  # fmt: skip


def test_an_include_cycle_is_reported_where_it_closes(tmp_path: Path) -> None:
    root = pack(
        tmp_path,
        "knowledge: !include a.yaml\n",
        **{"a.yaml": "- !include b.yaml\n", "b.yaml": "- id: x\n  more: !include a.yaml\n"},
    )
    problem = only(root)
    assert (problem.file, problem.line, problem.where) == ("b.yaml", 2, "knowledge[0][0].more")
    assert "a.yaml" in problem.message and "cycle" in problem.message


def test_an_include_of_a_missing_file_is_reported_where_it_is_included(tmp_path: Path) -> None:
    root = pack(tmp_path, "knowledge: !include knowledge.yaml\n")
    problem = only(root)
    assert (problem.file, problem.line, problem.where) == (
        "business.yaml",
        line_of(root / "business.yaml", "knowledge.yaml"),
        "knowledge",
    )
    assert "knowledge.yaml" in problem.message


# -- tools -----------------------------------------------------------------------------------------

HTTP_TOOL = """\
    tools:
      order:
        kind: http
        url: ${SHOP_URL}/orders/{number}
        parameters: {type: object, properties: {number: {type: string}}}
"""


def test_an_environment_variable_in_a_tool_url_is_filled_in_when_the_pack_loads(
    tmp_path: Path,
) -> None:
    root = pack(tmp_path, HTTP_TOOL)
    business = load(root, {"SHOP_URL": "https://shop.example/api"})
    assert business.pack.tools["order"].url == "https://shop.example/api/orders/{number}"  # type: ignore[union-attr]


def test_an_environment_variable_default_is_used_when_it_is_not_set(tmp_path: Path) -> None:
    root = pack(tmp_path, HTTP_TOOL.replace("${SHOP_URL}", "${SHOP_URL:-http://127.0.0.1:9}"))
    tool = load(root, {}).pack.tools["order"]
    assert tool.url == "http://127.0.0.1:9/orders/{number}"  # type: ignore[union-attr]


def test_an_environment_variable_that_is_not_set_is_one_problem(tmp_path: Path) -> None:
    root = pack(tmp_path, HTTP_TOOL)
    problem = only(root)
    assert (problem.file, problem.line, problem.where, problem.message) == (
        "business.yaml", line_of(root / "business.yaml", "url:"), "tools.order.url",
        "environment variable SHOP_URL is not set")  # fmt: skip


def test_a_url_placeholder_that_is_not_a_parameter_is_reported(tmp_path: Path) -> None:
    root = pack(tmp_path, HTTP_TOOL.replace("{number}", "{order_id}"))
    problem = only(root, {"SHOP_URL": "https://shop.example"})
    assert (problem.line, problem.where, problem.message) == (
        line_of(root / "business.yaml", "url:"), "tools.order.url",
        "{order_id} is not a parameter")  # fmt: skip


def test_a_tool_schema_that_is_not_json_schema_is_reported(tmp_path: Path) -> None:
    root = pack(tmp_path, HTTP_TOOL.replace("{type: string}", "{type: text}"))
    problem = only(root, {"SHOP_URL": "https://shop.example"})
    assert problem.where == "tools.order.parameters" and "not a JSON Schema" in problem.message


@pytest.fixture
def python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a pack puts on ``sys.path`` is taken off after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def python_tool(module: str, entry: str) -> dict[str, str]:
    more = f"""\
        python_path: [systems]
        tools:
          ping: {{kind: python, entry: "{entry}"}}
    """
    return {"more": more, f"systems/{module}.py": "def ping(arguments, context):\n    return {}\n"}


@pytest.mark.usefixtures("python_path")
def test_a_python_tool_is_imported_from_the_packs_python_path(tmp_path: Path) -> None:
    root = pack(tmp_path, **python_tool("pack_tools_ok", "pack_tools_ok:ping"))
    assert load(root).pack.tools["ping"].kind == "python"


@pytest.mark.usefixtures("python_path")
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("pack_tools_absent:ping", "cannot import pack_tools_absent: ModuleNotFoundError"),
        ("pack_tools_here:pong", "pack_tools_here has no function pong"),
    ],
)
def test_a_python_tool_that_cannot_be_imported_is_reported(
    tmp_path: Path, entry: str, message: str
) -> None:
    root = pack(tmp_path, **python_tool("pack_tools_here", entry))
    problem = only(root)
    assert (problem.line, problem.where) == (
        line_of(root / "business.yaml", "entry:"),
        "tools.ping.entry",
    )
    assert problem.message.startswith(message)


@pytest.mark.usefixtures("python_path")
def test_a_python_tool_that_fails_on_import_is_reported_with_the_error(tmp_path: Path) -> None:
    files = python_tool("pack_tools_broken", "pack_tools_broken:ping")
    files["systems/pack_tools_broken.py"] = "raise RuntimeError('no database')\n"
    problem = only(pack(tmp_path, **files))
    assert problem.message == ("cannot import pack_tools_broken: RuntimeError: no database")


# -- several problems at once ---------------------------------------------------------------------


def test_every_problem_of_the_model_is_reported_at_once(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "business.yaml": INCLUDING.replace("Europe/Paris", "Mars/Olympus") + "colour: blue\n",
        "intents.yaml": "human: {does: handoff, examples: []}\n",
    })  # fmt: skip
    found = {(p.file, p.where) for p in problems(root)}
    assert found == {("business.yaml", "timezone"), ("business.yaml", "colour"),
                     ("intents.yaml", "intents.human.examples")}  # fmt: skip


def test_every_problem_the_checker_finds_is_reported_at_once(tmp_path: Path) -> None:
    root = pack(
        tmp_path,
        """\
        staff:
          - {id: a, name: A, role: agent, queues: [nowhere]}
        customers: {lookup: find_customer}
        replies:
          waiting: "{% if %}"
    """,
    )
    assert [p.where for p in problems(root)] == [
        "staff[0].queues[0]",
        "customers.lookup",
        "replies.waiting",
    ]


def test_an_unset_environment_variable_is_reported_with_the_models_problems(
    tmp_path: Path,
) -> None:
    root = pack(tmp_path, textwrap.dedent(HTTP_TOOL) + "colour: blue\n")
    assert {p.where for p in problems(root)} == {"tools.order.url", "colour"}


# -- the JSON Schema -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json_schema())
    return loaded


def test_the_pack_format_is_valid_json_schema(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"queues", "intents", "escalation"} <= set(schema["required"])


def test_the_json_schema_accepts_the_northwind_pack(schema: dict[str, Any]) -> None:
    data, _ = read(NORTHWIND)
    errors = list(Draft202012Validator(schema).iter_errors(with_defaults(data)))
    assert errors == []


def test_the_json_schema_refuses_an_unknown_key(schema: dict[str, Any]) -> None:
    data, _ = read(MINIMAL)
    data["queues"][0]["colour"] = "blue"
    errors = list(Draft202012Validator(schema).iter_errors(with_defaults(data)))
    assert [list(e.absolute_path) for e in errors] == [["queues", 0]]


# -- reply templates -----------------------------------------------------------------------------


def render(source: str, **variables: Any) -> str:
    return Template(environment(), source).render({"today": date(2025, 3, 4), **variables})


def test_the_day_filter_says_today_tomorrow_or_the_date() -> None:
    assert render("{{ a|day }}, {{ b|day }}, {{ c|day }}", a=date(2025, 3, 4),
                  b="2025-03-05", c=datetime(2025, 3, 9, 10, 0)) == (
        "today, tomorrow, on Sunday 9 March")  # fmt: skip


def test_the_days_ago_filter_counts_back_from_today() -> None:
    assert render("{{ d|days_ago }} days ago", d="2025-03-01") == "3 days ago"


def test_the_clock_and_times_filters_say_naive_times_on_the_locales_clock() -> None:
    starts = ["09:00", datetime(2025, 3, 4, 9, 30), time(10, 0)]
    assert render("{{ t|clock }} {{ s|clock }}", t=time(9, 5),
                  s="2025-03-05T11:30:00-08:00") == "9:05 AM 11:30 AM"  # fmt: skip
    assert render("{{ s|times }}; {{ s|times('and') }}", s=starts, locale="en-GB") == (
        "09:00, 09:30 or 10:00; 09:00, 09:30 and 10:00")  # fmt: skip


def test_the_listing_filter_joins_with_commas_and_a_last_word() -> None:
    assert (
        render(
            "{{ [] |listing }}|{{ ['a']|listing }}|{{ ['a', 'b']|listing }}|"
            "{{ ['a', 'b', 'c']|listing('and') }}"
        )
        == "|a|a or b|a, b and c"
    )


def test_a_rendered_reply_has_its_whitespace_collapsed() -> None:
    source = "Line one,\n   {% if yes %}\n  line   two.\n{% endif %}\n\n  End.  "
    assert render(source, yes=True) == "Line one, line two. End."


def test_an_undefined_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(UndefinedError):
        render("Hello {{ nobody }}")


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
     "{{ cycler.__init__.__globals__ }}", "{{ items.append(1) }}"],
)  # fmt: skip
def test_the_sandbox_refuses_internals_and_changes(source: str) -> None:
    with pytest.raises(SecurityError):
        render(source, items=[])


def test_a_template_that_does_not_compile_says_at_which_line() -> None:
    with pytest.raises(TemplateProblem) as failed:
        Template(environment(), "one\ntwo {{ x }\n")
    assert failed.value.line == 2


def test_an_intents_own_reply_comes_before_the_packs(northwind: Business) -> None:
    own = northwind.reply("ask", "order_status").render(False, {"label": "order number"})
    general = northwind.reply("ask").render(False, {"label": "ticket"})
    assert (own, general) == ("Sure — what's the order number?", "Sure — what's the ticket?")
