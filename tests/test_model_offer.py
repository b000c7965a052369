"""What a model is offered of the business pack's tools, and which calls wait for a person."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import NORTHWIND
from threadline.business import load
from threadline.core.errors import ConfigurationError
from threadline.core.model import ToolCall
from threadline.models.offer import needs_approval, offered


def test_every_tool_of_the_pack_is_offered_with_its_schema() -> None:
    business = load(NORTHWIND)
    tools = offered(business)
    assert [t.name for t in tools] == list(business.pack.tools)
    first = business.pack.tools[tools[0].name]
    assert (tools[0].description, dict(tools[0].parameters)) == (
        first.description, dict(first.parameters),
    )  # fmt: skip


def test_an_allow_list_offers_only_what_it_names() -> None:
    business = load(NORTHWIND)
    name = next(iter(business.pack.tools))
    assert [t.name for t in offered(business, [name])] == [name]
    assert offered(business, []) == ()


def test_a_tool_the_pack_does_not_declare_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown: \\['wire_money'\\]"):
        offered(load(NORTHWIND), ["wire_money"])


def test_a_call_to_a_sensitive_tool_waits_for_a_person(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack, ignore=shutil.ignore_patterns("__pycache__"))
    tools = yaml.safe_load((pack / "tools.yaml").read_text())
    sensitive, plain = list(tools)[:2]
    tools[sensitive]["sensitive"] = True
    (pack / "tools.yaml").write_text(yaml.safe_dump(tools))
    business = load(pack)
    assert needs_approval(business, ToolCall("c1", sensitive, {}, "{}"))
    assert not needs_approval(business, ToolCall("c2", plain, {}, "{}"))
    assert not needs_approval(business, ToolCall("c3", "not_a_tool", {}, "{}"))
