"""`threadline demo`: the product serves the pack and plays the reference journey through its
public interfaces; the output shows what happened and the timeline read back from the log.

The slow tests run the command as a user would (a child process, real sockets, real speech
through the embedded speech-to-text). One changes the pack: what the bot says must follow it,
so the demo cannot be printing pre-written text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from tests.conftest import NORTHWIND
from tests.serving import environment
from threadline.cli import main

#: A step as the demo prints it: seconds since the start, channel, who, what.
STEP = re.compile(r"^\s*(\d+\.\d)s  (.{9})  (.{14})  (.*)$")
#: A timeline row: seq, seconds since the start, channel, actor, event type, detail.
ROW = re.compile(r"^\s*(\d+)\s+(-?\d+\.\d)s  (\S+)\s+(\S+)\s+(\S+)\s*(.*)$")
MILESTONES = [
    ("chat", "message.received", "My order 1042 hasn't arrived."),
    ("chat", "slot.filled", "order_number = 1042"),
    ("chat", "action.requested", "send_checkin_code"),
    ("voice", "leg.started", "voice"),
    ("voice", "slot.filled", "postcode = 94103"),
    ("voice", "identity.linked", "phone verified (postcode)"),
    ("voice", "handoff.requested", "orders"),
    ("system", "handoff.accepted", "agent-ana"),
    ("in_person", "leg.started", "sf-market"),
    ("in_person", "conversation.resolved", "replacement_collected"),
]


@dataclass
class Played:
    out: str
    err: str
    steps: list[tuple[float, str, str, str]]
    rows: list[tuple[int, str, float, str, str, str]]

    def said(self, channel: str) -> list[str]:
        """What the bot said on ``channel``, as the demo printed it when it happened."""
        return [what for _, ch, who, what in self.steps if ch == channel and who == "bot"]


def play(*args: str, **settings: str) -> Played:
    """``threadline demo`` in a child process, with only ``settings`` as THREADLINE_*."""
    done = subprocess.run([sys.executable, "-m", "threadline.cli", "demo", *args],
                          env=environment(**settings), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    steps, rows = [], []
    for line in done.stdout.splitlines():
        if step := STEP.match(line):
            steps.append((float(step[1]), step[2].strip(), step[3].strip(), step[4]))
        elif row := ROW.match(line):
            rows.append((int(row[1]), row[3], float(row[2]), row[4], row[5], row[6]))
    return Played(done.stdout, done.stderr, steps, rows)


def milestones_in_order(rows: list[tuple[int, str, float, str, str, str]]) -> list[int]:
    """The seq at which each milestone is first reached."""
    return [next(seq for seq, channel, _, _, event, detail in rows
                 if (channel, event) == (c, e) and detail.startswith(d))
            for c, e, d in MILESTONES]  # fmt: skip


@pytest.mark.slow
@pytest.mark.usefixtures("espeak")
def test_the_demo_plays_the_journey_through_the_product_and_replays_it(tmp_path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    played = play(THREADLINE_STORE=store)  # the pack: the checkout's example

    assert len(re.findall(r"^conversation (\S+)", played.out, re.MULTILINE)) == 1
    assert "conversations of cus-maya: 1" in played.out
    legs = [channel for _, channel, _, _, event, _ in played.rows if event == "leg.started"]
    assert legs == ["chat", "voice", "in_person"]
    assert [seq for seq, *_ in played.rows] == list(range(1, len(played.rows) + 1))
    seqs = milestones_in_order(played.rows)
    assert seqs == sorted(seqs)
    assert "status      resolved (replacement_collected)" in played.out
    # What the bot said, as it happened: the order's state from the pack's records.
    reason = next(o for o in yaml.safe_load((NORTHWIND / "systems" / "records.yaml").read_text())
                  ["orders"] if o["number"] == "1042")["reason"]  # fmt: skip
    assert any("Order 1042 is delayed" in said for said in played.said("chat"))
    assert any(f"Order 1042 is delayed: {reason}" in said for said in played.said("voice"))
    assert [at for at, *_ in played.steps] == sorted(at for at, *_ in played.steps)
    # No token, and nothing personal she did not say herself.
    for secret in ("eyJ", "Bearer", "Maya Chen", "maya.chen@example.com", "NW-100234",
                   "4155550123"):  # fmt: skip
        assert secret not in played.out + played.err

    conversation_id = re.search(r"^conversation (\S+)", played.out, re.MULTILINE)[1]
    replay = subprocess.run([sys.executable, "-m", "threadline.cli", "replay", conversation_id],
                            env=environment(THREADLINE_STORE=store), capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    replayed = [m.group(1, 3, 4, 5) for line in replay.stdout.splitlines()
                if (m := ROW.match(line))]  # fmt: skip
    assert replayed == [(str(r[0]), r[1], r[3], r[4]) for r in played.rows]
    assert "status      resolved (replacement_collected)" in replay.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("espeak")
def test_what_the_bot_says_follows_the_pack(tmp_path) -> None:
    pack = tmp_path / "northwind"
    shutil.copytree(NORTHWIND, pack)
    records_path = pack / "systems" / "records.yaml"
    records = yaml.safe_load(records_path.read_text())
    order = next(o for o in records["orders"] if o["number"] == "1042")
    for gone in ("reason", "options"):
        order.pop(gone, None)
    order.update(status="shipped", detail="arriving in 2 days", arriving_in_days=2)
    records_path.write_text(yaml.safe_dump(records, sort_keys=False))

    played = play("--business", str(pack))

    assert any("Order 1042 is on its way" in said for said in played.said("chat"))
    assert any("Order 1042 has shipped and arrives" in said for said in played.said("voice"))
    assert not any("delayed" in said for said in played.said("chat") + played.said("voice"))
    assert "the carrier lost the parcel" not in played.out
    assert "status      resolved (replacement_collected)" in played.out


def test_the_demo_refuses_without_espeak(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("threadline: error: the demo makes a phone call: espeak-ng is missing")
    assert err.count("\n") == 1


def test_the_demo_refuses_without_the_voice_extra(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if it were not installed
    assert main(["demo"]) == 1
    assert capsys.readouterr().err == (
        "threadline: error: the demo makes a phone call: voice is off:"
        " pip install 'threadline[voice]'\n"
    )


def test_the_demo_without_a_pack_says_how_to_name_one(monkeypatch, capsys) -> None:
    monkeypatch.delenv("THREADLINE_BUSINESS", raising=False)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("threadline: error: the demo needs a business pack: pass --business")
    assert err.count("\n") == 1


def test_a_pack_without_a_demo_journey_is_one_line(tmp_path, capsys) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack)
    (pack / "demo.yaml").unlink()
    assert main(["demo", "--business", str(pack)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("threadline: error:") and "demo.yaml" in err and err.count("\n") == 1


def test_the_demo_with_a_missing_pack_is_one_line(tmp_path, capsys) -> None:
    assert main(["demo", "--business", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("threadline: error:") and err.count("\n") == 1
