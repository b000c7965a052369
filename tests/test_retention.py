"""Retention (issue 14): personal data is kept only as long as the pack says, per channel
and event type, and a caller's words without recording consent only while the conversation
needs them. The events stay and replay, their personal fields read ``[erased]``; a dry run
erases nothing; nothing is left in the store's bytes; on both stores."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from tests.stored_bytes import stored_bytes
from threadline.business import Business
from threadline.cli import main
from threadline.core.catalogue import ERASED
from threadline.core.events import Actor, Event, utcnow
from threadline.engine.conversations import Conversations
from threadline.governance.retention import UNRECORDED, Retention

MAYA = Actor("customer", "cus-maya")
BOT = Actor("bot", "northwind-bot")


def canary(label: str) -> str:
    return f"canary-{label}-{uuid.uuid4().hex[:10]}"


async def _conversation(
    conversations: Conversations, channel: str, days_ago: float, said: str, *,
    recording: bool | None = None, closed: bool = False,
) -> str:  # fmt: skip
    """A conversation on ``channel`` that happened ``days_ago``, where Maya said ``said``."""
    cid = f"{channel}-{uuid.uuid4().hex[:8]}"
    at = utcnow() - timedelta(days=days_ago)
    leg = f"{channel}-leg"

    def event(type_: str, payload: dict[str, Any], actor: Actor = MAYA) -> Event:
        return Event(cid, type_, payload, channel=channel, leg_id=leg, actor=actor,
                     customer_id="cus-maya", occurred_at=at)  # fmt: skip

    events = [event("conversation.started", {"origin": channel}),
              event("leg.started", {"leg_id": leg, "channel": channel})]  # fmt: skip
    if recording is not None:
        consent = "consent.granted" if recording else "consent.revoked"
        events.append(event(consent, {"purpose": "recording", "basis": "express"}))
    if channel == "voice":
        events.append(
            event(
                "utterance.transcribed",
                {"text": said, "confidence": 0.9, "start_ms": 0, "end_ms": 900},
            )
        )
    else:
        events.append(event("message.received", {"text": said}))
    events.append(event("message.sent", {"text": f"Noted, {channel}."}, BOT))
    if closed:
        events.append(event("conversation.resolved", {"outcome": "resolved"}, BOT))
    await conversations.record(cid, events)
    return cid


async def _texts(conversations: Conversations, cid: str) -> list[str]:
    return [str(e.payload["text"]) for e in await conversations.timeline(cid)
            if "text" in e.payload]  # fmt: skip


async def test_old_personal_data_is_erased_by_the_packs_rules_and_streams_replay(
    any_store: Any, pg_schema: str, northwind: Business
) -> None:
    conversations = Conversations(any_store)
    old_call, new_call = canary("old-call"), canary("new-call")
    old_chat, new_chat = canary("old-chat"), canary("new-chat")
    calls = [await _conversation(conversations, "voice", 45, old_call),
             await _conversation(conversations, "voice", 10, new_call)]  # fmt: skip
    chats = [await _conversation(conversations, "chat", 800, old_chat),
             await _conversation(conversations, "chat", 45, new_chat)]  # fmt: skip
    retention = Retention(any_store, lambda: northwind)

    plan = await retention.plan()
    assert plan.dry_run and {reason: len(found) for reason, found in plan.events.items()} == {
        "voice utterance.transcribed, message.heard > 30 days": 1,
        "any personal data > 730 days": 2,  # the old chat's message and its reply
    }  # fmt: skip
    assert old_call in (await _texts(conversations, calls[0]))[0]  # a dry run erases nothing

    done = await retention.run()
    assert not done.dry_run and done.total == plan.total
    assert await _texts(conversations, calls[0]) == [ERASED, "Noted, voice."]
    assert await _texts(conversations, calls[1]) == [new_call, "Noted, voice."]
    assert await _texts(conversations, chats[0]) == [ERASED, ERASED]
    assert await _texts(conversations, chats[1]) == [new_chat, "Noted, chat."]
    for cid in calls + chats:  # every stream still replays
        state = await Conversations(any_store).rehydrate(cid)
        assert state.seq == len(await any_store.read(cid))
    written = await stored_bytes(any_store, pg_schema)
    assert old_call.encode() not in written and old_chat.encode() not in written
    assert new_call.encode() in written and new_chat.encode() in written
    assert (await retention.run()).total == 0  # nothing is erased twice


async def test_a_callers_words_without_recording_consent_go_when_the_call_closes(
    any_store: Any, northwind: Business
) -> None:
    conversations = Conversations(any_store)
    withdrawn_open = await _conversation(conversations, "voice", 1, canary("a"), recording=False)
    withdrawn_closed = await _conversation(conversations, "voice", 1, canary("b"),
                                           recording=False, closed=True)  # fmt: skip
    consented_closed = await _conversation(conversations, "voice", 1, canary("c"),
                                           recording=True, closed=True)  # fmt: skip
    report = await Retention(any_store, lambda: northwind).run()
    assert [cid for cid, _ in report.events[UNRECORDED]] == [withdrawn_closed]
    assert (await _texts(conversations, withdrawn_closed))[0] == ERASED
    assert (await _texts(conversations, withdrawn_open))[0] != ERASED  # still needed
    assert (await _texts(conversations, consented_closed))[0] != ERASED


def test_the_cli_reports_a_dry_run_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    from tests.conftest import NORTHWIND, TOKEN_SECRET

    monkeypatch.setenv("THREADLINE_STORE", f"sqlite:///{tmp_path / 'r.db'}")
    monkeypatch.setenv("THREADLINE_BUSINESS", str(NORTHWIND))
    monkeypatch.setenv("THREADLINE_TOKEN_SECRET", TOKEN_SECRET)
    assert main(["retention", "run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("retention would erase the personal data of 0 events")


@pytest.mark.parametrize("types", [["no.such.type"], ["intent.detected"]])
def test_a_rule_for_a_type_without_personal_data_is_a_pack_problem(tmp_path, types) -> None:
    import shutil

    from tests.conftest import NORTHWIND
    from threadline.business import load
    from threadline.business.loader import PackError

    pack = tmp_path / "pack"
    shutil.copytree(NORTHWIND, pack)
    text = (pack / "business.yaml").read_text()
    (pack / "business.yaml").write_text(
        text.replace(
            "  - {channel: any, days: 730}", f"  - {{channel: any, types: {types}, days: 9}}"
        )
    )
    with pytest.raises(PackError, match="retention"):
        load(pack)


async def test_retention_erases_encrypted_fields_and_they_read_erased(
    any_store: Any, northwind: Business
) -> None:
    import os

    from threadline.security.master_key import LocalKeyProvider
    from threadline.store import encrypt

    encrypt(any_store, LocalKeyProvider(os.urandom(32)))
    conversations = Conversations(any_store)
    old, new = canary("old"), canary("new")
    gone = await _conversation(conversations, "voice", 40, old)
    kept = await _conversation(conversations, "voice", 2, new)
    assert (await Retention(any_store, lambda: northwind).run()).total == 1
    fresh = Conversations(any_store)  # nothing cached: read back through the sealer
    assert await _texts(fresh, gone) == [ERASED, "Noted, voice."]
    assert await _texts(fresh, kept) == [new, "Noted, voice."]
