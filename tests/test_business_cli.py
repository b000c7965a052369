"""``threadline business check|schema`` and ``threadline customers import`` from the shell."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from tests.conftest import NORTHWIND
from tests.serving import environment
from threadline.cli import main

BIKESHOP = NORTHWIND.parent / "bikeshop"


def test_check_says_ok_for_a_sound_pack(capsys) -> None:
    assert main(["business", "check", str(NORTHWIND)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Northwind Devices (northwind): 2 locations, 3 queues") and "ok" in out


def test_check_lists_every_problem_with_file_and_line_and_exits_1(tmp_path, capsys) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack)
    staff = (
        (pack / "business.yaml")
        .read_text()
        .replace("queues: [orders, billing]", "queues: [order, billing]")
    )
    (pack / "business.yaml").write_text(staff)
    intents = (
        (pack / "intents.yaml")
        .read_text()
        .replace("    tool: lookup_order", "    tool: lookup_ordr")
    )
    (pack / "intents.yaml").write_text(intents)
    assert main(["business", "check", str(pack)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("business.yaml:") and "unknown queue 'order'" in line
               for line in err), err  # fmt: skip
    assert any(line.startswith("intents.yaml:") and "unknown tool 'lookup_ordr'" in line
               for line in err), err  # fmt: skip
    assert err[-1] == f"threadline: error: 2 problems in {pack}"


def test_a_missing_pack_is_one_line_and_exit_1(tmp_path, capsys) -> None:
    assert main(["business", "check", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "no such file" in err[0] and err[-1].startswith("threadline: error: 1 problem")


def test_schema_prints_json_schema_that_validates_both_example_packs(capsys) -> None:
    from threadline.business.checker import with_defaults
    from threadline.business.loader import expand_environment, read

    assert main(["business", "schema"]) == 0
    schema = orjson.loads(capsys.readouterr().out)
    Draft202012Validator.check_schema(schema)
    for pack in (NORTHWIND, BIKESHOP):
        data, source = read(pack)
        expand_environment(data, source, {"WORKSHOP_URL": "http://127.0.0.1:8091"})
        errors = list(Draft202012Validator(schema).iter_errors(orjson.loads(
            orjson.dumps(with_defaults(data), default=str))))  # fmt: skip
        assert errors == [], [e.message for e in errors[:3]]


def test_serve_refuses_a_bad_pack_in_one_line(tmp_path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack)
    (pack / "business.yaml").write_text("format: 1\nid: x\n")
    done = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "serve", "--business", str(pack), "--port", "0"],
        capture_output=True, text=True, timeout=60,
        env=environment(THREADLINE_STORE=f"sqlite:///{tmp_path / 'x.db'}"),
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("threadline: error: business.yaml:"), lines
    assert "threadline business check" in lines[0]


def _import(path: Path, store: Path, capsys) -> tuple[int, str, str]:
    import os

    os.environ["THREADLINE_STORE"] = f"sqlite:///{store}"
    try:
        code = main(["customers", "import", str(path)])
    finally:
        del os.environ["THREADLINE_STORE"]
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_customers_import_loads_a_csv_export_once(tmp_path, capsys) -> None:
    export = tmp_path / "customers.csv"
    export.write_text("id,phone,email,member_id\n"
                      "cus-a,+1 312 555 0147,a@example.com,ZX-200001\n"
                      "cus-b,(206) 555-0111,,\n")  # fmt: skip
    store = tmp_path / "c.db"
    code, out, _ = _import(export, store, capsys)
    assert code == 0 and "imported 2 customers" in out and "4 identifiers linked" in out
    code, out, _ = _import(export, store, capsys)
    assert code == 0 and "0 identifiers linked" in out and "4 unchanged" in out


def test_customers_import_refuses_a_bad_row_and_writes_nothing(tmp_path, capsys) -> None:
    export = tmp_path / "customers.jsonl"
    export.write_text('{"id": "cus-a", "phone": "+13125550147"}\n'
                      '{"id": "cus-b", "phone": "not a phone"}\n')  # fmt: skip
    store = tmp_path / "c.db"
    code, out, err = _import(export, store, capsys)
    assert code == 1 and out == ""
    assert (
        err.startswith("threadline: error: customers.jsonl:2: bad phone") and err.count("\n") == 1
    )
    import asyncio

    from threadline.store import open_store

    async def events() -> int:
        opened = await open_store(f"sqlite:///{store}")
        try:
            return len(await opened.read_all(0, 100))
        finally:
            await opened.close()

    assert asyncio.run(events()) == 0


def test_customers_unlock_lifts_a_lockout_from_the_shell(tmp_path, monkeypatch, capsys) -> None:
    import asyncio

    from threadline.business.model import Lockout
    from threadline.core.events import Actor
    from threadline.identity.lockouts import Lockouts
    from threadline.identity.service import Identity
    from threadline.store import open_directory, open_store

    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("THREADLINE_STORE", url)

    async def failures(wrong: int = 0) -> int:
        store = await open_store(url)
        try:
            identity = Identity(store, await open_directory(store))
            for n in range(wrong):
                await identity.record("cus-maya", "verification.failed",
                                      {"method": "knowledge", "conversation_id": f"c-{n}"},
                                      Actor("bot", "northwind-bot"))  # fmt: skip
            return await Lockouts(store).customer_failures("cus-maya", Lockout())
        finally:
            await store.close()

    assert asyncio.run(failures(5)) == 5
    assert main(["customers", "unlock", "cus-maya", "--reason", "checked her ID in store"]) == 0
    assert capsys.readouterr().out == "lifted the lockout on cus-maya\n"
    assert asyncio.run(failures()) == 0
    assert main(["customers", "unlock", "cus-maya", "--reason", "  "]) == 1
    assert capsys.readouterr().err.count("\n") == 1
