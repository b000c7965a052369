"""Scenarios played through the real product in process: the chat and voice adapters, the
conversations engine and the bot runtime, with the agent chosen by name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from threadline.agents.protocol import Turn
from threadline.core.conversation import ConversationState
from threadline.core.errors import ConfigurationError
from threadline.evaluation.agents import AGENTS, AgentSetup, agent_factory, register_agent
from threadline.evaluation.runner import NOT_PLAYED, evaluate, run_scenario
from threadline.evaluation.sandbox import Sandbox
from threadline.evaluation.suite import Scenario, Suite
from threadline.settings import Settings

NOW = datetime(2025, 3, 4, 18, 0, tzinfo=UTC)  # Tuesday 10:00 in Los Angeles


def _scenario(**fields: object) -> Scenario:
    return Scenario.model_validate({"id": "s", "now": NOW, "outcome": "contained", **fields})


async def test_a_chat_turn_is_recorded_by_the_adapter_and_answered_by_the_runtime(
    northwind, tmp_path
) -> None:
    async with Sandbox(northwind, Settings(), agent_factory("embedded"), NOW, tmp_path) as box:
        conversation_id = await box.open_chat()
        observed = await box.say("track order 1042")
        timeline = await box.conversations.timeline(conversation_id)
    said = next(e for e in timeline if e.type == "message.received")
    assert (said.channel, said.actor.kind, said.lineage.producer) == ("chat", "customer",
                                                                      "chat-adapter")  # fmt: skip
    after = [e.type for e in timeline if e.seq > said.seq]
    assert after == [e.type for e in observed.events]
    assert {"intent.detected", "action.requested", "message.sent"} <= set(after)
    assert observed.reply is not None and "delayed" in observed.reply
    assert observed.latency_ms is not None and observed.latency_ms > 0


async def test_a_call_records_the_caller_as_a_claim_and_utterances_as_transcripts(
    northwind, tmp_path
) -> None:
    async with Sandbox(northwind, Settings(), agent_factory("embedded"), NOW, tmp_path) as box:
        conversation_id = await box.place_call("+14155550123")
        observed = await box.say("where is my order 1042?")
        timeline = await box.conversations.timeline(conversation_id)
    claim = next(e for e in timeline if e.type == "identity.linked")
    assert claim.payload["verified"] is False
    heard = next(e for e in timeline if e.type == "utterance.transcribed")
    assert heard.channel == "voice" and heard.payload["text"] == "where is my order 1042?"
    assert observed.reply is not None and "postcode" in observed.reply


async def test_a_true_expectation_passes_and_a_false_one_fails(northwind, tmp_path) -> None:
    turn = {"say": "track order 1042", "intent": "order_status", "tools": ["lookup_order"],
            "must_not_say": ["delayed"]}  # fmt: skip
    scenario = _scenario(turns=[turn])
    result = await run_scenario(scenario, northwind, Settings(), agent_factory("embedded"),
                                tmp_path)  # fmt: skip
    assert result.failures == ("turn 1: reply: says 'delayed', which it must not",)
    assert result.turns[0].tools_matched == 1 and result.turns[0].leaks == 1


async def test_a_signed_in_customer_hears_the_details_at_once(northwind, tmp_path) -> None:
    scenario = _scenario(customer="cus-maya", turns=[
        {"say": "where is order 1042?", "reply_contains": ["Aster 14"]}])  # fmt: skip
    result = await run_scenario(scenario, northwind, Settings(), agent_factory("embedded"),
                                tmp_path)  # fmt: skip
    assert result.passed, result.failures


async def test_a_scripted_tool_failure_reaches_the_agent(northwind, tmp_path) -> None:
    scenario = _scenario(outcome="escalated", tool_failures={"lookup_order": "timeout"}, turns=[
        {"say": "track order 1042"},
        {"say": "order 1042 again please", "handoff": {"queue": "orders",
                                                       "reason": "tool_failure"}},
    ])  # fmt: skip
    result = await run_scenario(scenario, northwind, Settings(), agent_factory("embedded"),
                                tmp_path)  # fmt: skip
    assert result.passed, result.failures
    assert result.queue == "orders"


async def test_every_scenario_runs_k_times_each_on_a_fresh_product(northwind) -> None:
    booking = _scenario(
        id="book",
        turns=[{"say": "book a repair in Oakland tomorrow at 11:30", "reply_contains": ["booked"]}],
    )
    suite = Suite("tiny", (booking,))  # fmt: skip
    seen = []
    evaluation = await evaluate(suite, northwind, Settings(), "embedded", runs=2, done=seen.append)
    # The second run books the same slot again: nothing of the first run is left.
    assert [(r.scenario.id, r.run, r.passed) for r in evaluation.results] == [
        ("book", 1, True), ("book", 2, True)]  # fmt: skip
    assert seen == list(evaluation.results)


class Silent:
    """An agent that never answers."""

    id = "silent-bot"

    async def take_turn(self, state: ConversationState, text: str, channel: str, now: datetime,
                        **more: object) -> Turn:  # fmt: skip
        return Turn(())

    def may_process(self, state: ConversationState) -> bool:
        return True

    async def hand_over(self, state: ConversationState, channel: str, now: datetime,
                        **more: object) -> Turn:  # fmt: skip
        return Turn(())

    async def settle(self, state: ConversationState, decision: object, now: datetime) -> Turn:
        return Turn(())

    async def welcome_back(self, state: ConversationState, channel: str, now: datetime,
                           **more: object) -> Turn:  # fmt: skip
        return Turn(())


@pytest.fixture
def silent():
    def factory(setup: AgentSetup) -> Silent:
        assert setup.options == {"mood": "quiet"}
        return Silent()

    register_agent("silent", factory)  # type: ignore[arg-type]
    yield "silent"
    del AGENTS["silent"]


async def test_an_unanswered_turn_ends_the_scenario(northwind, tmp_path, silent) -> None:
    scenario = _scenario(turns=[{"say": "hello"}, {"say": "anyone?", "tools": ["lookup_order"]}])
    result = await run_scenario(scenario, northwind, Settings(), agent_factory(silent), tmp_path,
                                options={"mood": "quiet"}, timeout=0.2)  # fmt: skip
    assert result.failures == ("turn 1: no reply within 0.2 s", f"turn 2: {NOT_PLAYED}")
    assert result.turns[1].tools_expected == 1


def test_an_unknown_agent_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown agent 'gpt' \(known: .*embedded"):
        agent_factory("gpt")
