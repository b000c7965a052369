"""The README's complete small pack is a pack: it loads and checks as written."""

from __future__ import annotations

import re
from pathlib import Path

from threadline.business import load

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_pack_checks_clean(tmp_path) -> None:
    found = re.search(r"```yaml\n# business\.yaml\n(.*?)```", README.read_text(), re.S)
    assert found is not None, "the README's example pack is missing"
    (tmp_path / "business.yaml").write_text(found.group(1))
    business = load(tmp_path, environ={})
    assert business.name == "Lumen Opticians"
    assert {i.does for i in business.pack.intents.values()} >= {"lookup", "booking", "hours"}
