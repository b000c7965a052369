"""A caller's first audio after a streaming model's first sentence.

``python -m bench.model_first_audio [--calls 20] [--runs 3] [--pause 1.0] [--probe]`` serves
``threadline serve`` with the voice extra (the Northwind pack, SQLite, espeak-ng; a
store of its own each run) and the model-backed agent pointed at
:class:`bench.model_server.BenchModel`, served in this process: it streams its answer's
first sentence ("Your order is on its way and should arrive on Friday.") in four pieces
back to back, pauses ``--pause`` seconds, then streams the rest. Each call is placed by
the signed webhook and its media stream opened by the test caller
(:class:`threadline.testing.caller.PhoneCaller`, Twilio's side over a real WebSocket,
playing the service's audio in real time). The caller's turn is recorded without speech
recognition: an ``utterance.transcribed`` on the call's leg, appended through the
service's API (``POST /conversations/{id}/events``) with a voice adapter's token, as the
speech pipeline would record it. From there the reply path is the product's: the bot
worker streams the model's answer and records each sentence as a ``message.sent`` as
soon as it is whole, the call's speech pipeline follows the log, synthesises with
espeak-ng and sends the ``media`` frames.

Per call, on ``time.monotonic()`` in this one process: from the model server handing
the socket the piece that completes the first sentence to the first outbound ``media``
frame of the reply arriving at the caller's socket. The peer, in the same run on the
same service, calls alternating: the model answers with its whole reply in one piece at
once (no pause), timed from that piece. Both are also timed from the request reaching
the model, and split at the first sentence's ``message.sent`` (its ``recorded_at`` in
the store, against this process's wall clock): the agent and the store before it, the
speech pipeline after it. For reference, each run first times espeak-ng alone in this
process, to its first chunk of the same sentence. ``--probe`` serves the same app through
:mod:`bench.timed_voice` (:mod:`bench.voice_probe`'s timed speech engines, the bot still
in its worker process) and splits the pipeline's part: the sentence reaching the live
hub, synthesis asked for, the synthesiser's first chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

import httpx

from bench.chat_load import percentile, service
from bench.model_server import SPOKEN, BenchModel
from bench.voice_latency import ACCOUNT_SID, AUTH_TOKEN, machine_note, server_env
from threadline.channels.voice.tts import EspeakTTS
from threadline.core.ports import SpeechChunk
from threadline.testing.caller import PhoneCaller
from threadline.testing.live import LiveServer

STREAMED: Final = "streamed"
WHOLE: Final = "whole reply"
#: What the caller says (recorded as the transcript); the call's number makes it unique.
ASKED: Final = "Where is my order 1042, please? This is call {n}."
REPLY_TIMEOUT_S: Final = 20.0
#: What :mod:`bench.voice_probe` notes of a reply, in the order it happens.
PROBED: Final = {"hub_reply": "sentence reaches the live hub", "tts_called": "synthesis asked",
                 "tts_first_chunk": "synthesiser's first chunk"}  # fmt: skip
POLL_S: Final = 0.005


@dataclass
class Turn:
    """One call's reply, on this process's clocks (seconds)."""

    mode: str
    #: the model's piece completing the first sentence -> first media frame
    first_audio: float
    #: the request reaching the model -> first media frame
    from_request: float
    #: the piece -> the first sentence's message.sent recorded (the agent and the store)
    to_recorded: float
    #: the utterance appended -> first media frame (the turn, without speech recognition)
    from_utterance: float
    #: with ``--probe``: the piece -> each stage the timed pipeline noted, in order
    stages: dict[str, float] = field(default_factory=dict)


@dataclass
class Results:
    turns: list[Turn] = field(default_factory=list)

    def of(self, mode: str, what: str) -> list[float]:
        return [getattr(t, what) for t in self.turns if t.mode == mode]


async def token(env: dict[str, str], *kind: str) -> str:
    """A token of ``kind`` (``threadline token create`` arguments), signed with the
    service's secret."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.cli", "token", "create", *kind,
        "--subject", "bench-first-audio", "--ttl", "8h",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError("threadline token create failed")
    return out.decode().strip()


class Line:
    """The service as this benchmark speaks to it: webhooks, media, and the events API."""

    def __init__(self, address: str, adapter: str, model: BenchModel, probe: bool) -> None:
        self.address = address
        self.model = model
        self.probe = probe
        self.http = httpx.AsyncClient(base_url=f"http://{address}",
                                      headers={"Authorization": f"Bearer {adapter}"})  # fmt: skip

    async def events(self, conversation_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/conversations/{conversation_id}/events")
        response.raise_for_status()
        body = response.json()
        return list(body["events"] if isinstance(body, dict) else body)

    async def call(self, n: int, mode: str) -> Turn:
        """One call: dial, say one thing, time the reply, hear it out, hang up."""
        self.model.whole = mode == WHOLE
        caller = PhoneCaller(f"http://{self.address}", AUTH_TOKEN, ACCOUNT_SID)
        await caller.dial(f"+1202555{random.randrange(10_000):04d}")
        try:
            cid = caller.conversation_id
            leg = next(e for e in await self.events(cid) if e["type"] == "leg.started")
            await asyncio.sleep(0.3)  # the media stream's pipeline follows the log by now
            asked = ASKED.format(n=n)
            before = len(caller.replies)
            said_at = time.monotonic()
            await self._say(cid, caller.sid, leg["customer_id"], asked, n)
            for _ in range(int(REPLY_TIMEOUT_S / POLL_S)):  # the caller stamps the frame itself
                if len(caller.replies) > before:
                    break
                await asyncio.sleep(POLL_S)
            else:
                raise TimeoutError(f"no reply on call {n}")
            heard = caller.replies[before].first_frame_at
            streamed = next(s for s in reversed(self.model.streams) if s.asked == asked)
            sent = await self._first_sentence(cid)
            await asyncio.wait_for(streamed.done.wait(), REPLY_TIMEOUT_S)
            await caller.until_quiet()
        finally:
            await caller.hang_up()
        recorded = datetime.fromisoformat(sent["recorded_at"]).timestamp() - streamed.wall
        stages = await self._stages(caller.sid, streamed.first_sentence) if self.probe else {}
        return Turn(mode, heard - streamed.first_sentence, heard - streamed.arrived,
                    recorded, heard - said_at, stages)  # fmt: skip

    async def _stages(self, call_id: str, since: float) -> dict[str, float]:
        """The first of each stage :mod:`bench.voice_probe` noted for the call after ``since``."""
        response = await self.http.get("/bench/stages")  # served by bench.timed_voice
        response.raise_for_status()
        timings = response.json().get(call_id, [])
        out: dict[str, float] = {}
        for stage, at in timings:
            if at >= since and stage in PROBED and stage not in out:
                out[stage] = at - since
        return out

    async def _say(self, cid: str, call_id: str, customer_id: str, text: str, n: int) -> None:
        """The caller's turn, as the speech pipeline records a transcript."""
        event = {
            "type": "utterance.transcribed", "channel": "voice", "leg_id": call_id,
            "actor": {"kind": "customer", "id": customer_id}, "customer_id": customer_id,
            "payload": {"text": text, "confidence": 0.95, "start_ms": 1000, "end_ms": 3000},
            "lineage": {"producer": "twilio-media", "version": "1", "model": "bench"},
        }  # fmt: skip
        key = {"Idempotency-Key": f"bench-{call_id}-{n}"}
        response = await self.http.post(f"/conversations/{cid}/events", json={"events": [event]},
                                         headers=key)  # fmt: skip
        response.raise_for_status()

    async def _first_sentence(self, cid: str) -> dict[str, Any]:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while True:
                sent = [e for e in await self.events(cid)
                        if e["type"] == "message.sent" and e["actor"]["kind"] == "bot"]  # fmt: skip
                if sent:
                    return sent[0]
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.http.aclose()


async def one_run(
    run: int, folder: str, calls: int, pause: float, probe: bool, out: Results
) -> None:
    model = BenchModel(pause=pause)
    async with LiveServer(model) as served:
        env = {**server_env(folder, f"first-audio-{run}"),
               "THREADLINE_MODEL_URL": f"{served.http}/v1", "THREADLINE_MODEL": "bench-model-1",
               "THREADLINE_TOKEN_SECRET": secrets.token_hex(32)}  # fmt: skip
        served_by: tuple[str, ...] = ("-m", "threadline.cli", "serve")
        if probe:  # the same service, its speech engines timed; the bot in its worker still
            served_by, env = ("-m", "bench.timed_voice"), {**env, "THREADLINE_BOT_PROCESS": "1"}
        async with service(*served_by, env=env) as address:
            adapter = await token(env, "--kind", "adapter", "--channel", "voice")
            line = Line(address, adapter, model, probe)
            try:
                await line.call(0, STREAMED)  # warm: the first call's costs stay out
                modes = [STREAMED, WHOLE] if run % 2 == 0 else [WHOLE, STREAMED]
                for n in range(1, 2 * calls + 1):
                    turn = await line.call(n, modes[n % 2])
                    out.turns.append(turn)
                    print(f"run {run + 1} call {n:>2} {turn.mode:<12} first audio "
                          f"{turn.first_audio * 1000:6.1f} ms after the piece, "
                          f"{turn.from_request * 1000:6.0f} ms after the request; sentence "
                          f"recorded after {turn.to_recorded * 1000:5.1f} ms",
                          flush=True)  # fmt: skip
                    await asyncio.sleep(0.2)
            finally:
                await line.close()


def spread(values: Sequence[float], fmt: str = ".0f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def _ms(runs: Sequence[Results], mode: str, what: str, q: float) -> list[float]:
    """Each run's ``q`` quantile of ``what`` for ``mode``, in ms."""
    out = []
    for r in runs:
        values = r.of(mode, what)
        out.append((statistics.median(values) if q == 0.5 else percentile(values, q)) * 1000)
    return out


def table(runs: Sequence[Results]) -> str:
    """Markdown: per mode, each statistic's median over the runs (min–max), in ms."""
    lines = [
        "| model answers | calls | first audio after the text: p50 | p95 | "
        "agent + store: p50 | speech pipeline: p50 | after the request: p50 | "
        "after the utterance: p50 |",
        "|---" * 8 + "|",
    ]  # fmt: skip
    for mode in (STREAMED, WHOLE):
        pipeline = [statistics.median(f - t for f, t in zip(r.of(mode, "first_audio"),
                                                           r.of(mode, "to_recorded"), strict=True))
                    * 1000 for r in runs]  # fmt: skip
        lines.append("| " + " | ".join([
            mode, str(sum(len(r.of(mode, "first_audio")) for r in runs)),
            spread(_ms(runs, mode, "first_audio", 0.5), ".1f"),
            spread(_ms(runs, mode, "first_audio", 0.95), ".1f"),
            spread(_ms(runs, mode, "to_recorded", 0.5), ".1f"), spread(pipeline, ".1f"),
            spread(_ms(runs, mode, "from_request", 0.5)),
            spread(_ms(runs, mode, "from_utterance", 0.5)),
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


async def espeak_first_chunk(text: str, times: int = 10) -> list[float]:
    """Seconds espeak-ng takes to its first chunk of ``text``, alone in this process."""
    tts = EspeakTTS()
    out = []
    try:
        for _ in range(times):
            began = time.monotonic()
            speech = cast("AsyncGenerator[SpeechChunk, None]", tts.synthesize(text, "mulaw"))
            async with contextlib.aclosing(speech):
                async for _chunk in speech:
                    out.append(time.monotonic() - began)
                    break
    finally:
        await tts.close()  # its spare espeak-ng process
    return out


def stages_table(runs: Sequence[Results]) -> str:
    """Markdown: per mode, when each probed stage came after the model's text (median ms)."""
    lines = ["| model answers | " + " | ".join(PROBED.values()) + " | first media frame |",
             "|---" * (len(PROBED) + 2) + "|"]  # fmt: skip
    for mode in (STREAMED, WHOLE):
        turns = [t for r in runs for t in r.turns if t.mode == mode and t.stages]
        cells = [f"{statistics.median(t.stages.get(s, float('nan')) for t in turns) * 1000:.1f}"
                 for s in PROBED]  # fmt: skip
        heard = statistics.median(t.first_audio for t in turns) * 1000 if turns else float("nan")
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {heard:.1f} |")
    return "\n".join(lines)


async def main(calls: int, runs: int, pause: float, probe: bool) -> None:
    os.environ.pop("THREADLINE_PUBLIC_URL", None)  # signatures are checked on the request URL
    folder = tempfile.mkdtemp(prefix="tl-first-audio-")
    print(machine_note(), flush=True)
    print(f"{runs} runs of {calls} calls per mode, alternating; pause {pause:g} s after the"
          " first sentence; median (min–max) of the runs", flush=True)  # fmt: skip
    results, alone = [], []
    first = "".join(SPOKEN[0])
    for run in range(runs):
        alone.append(statistics.median(await espeak_first_chunk(first)) * 1000)
        out = Results()
        await one_run(run, folder, calls, pause, probe, out)
        results.append(out)
    print()
    print(table(results))
    if probe:
        print()
        print("After the model's text, on one clock (median over all calls, ms):")
        print(stages_table(results))
    print()
    print(f"espeak-ng alone, to its first chunk of {first!r}: {spread(alone, '.1f')} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per mode per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds the model pauses after its first sentence")  # fmt: skip
    parser.add_argument("--probe", action="store_true",
                        help="serve bench.voice_probe (timed speech engines) and split the"
                        " speech pipeline's time into stages")  # fmt: skip
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.runs, args.pause, args.probe))
