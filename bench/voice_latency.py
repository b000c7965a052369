"""Voice turn latency: from the caller's last voiced frame to the first frame of the reply.

``python -m bench.voice_latency [--calls 1,5,10] [--turns 6] [--runs 3] [--profile 5]
[--write docs/benchmarks.md]`` serves Threadline on the embedded default
(``threadline serve`` in a child process on the Northwind pack: SQLite and
the tools' data in a temporary folder, Whisper tiny.en, espeak-ng) and, in the
same run, Pipecat with the same engines and bot on the same pack
(``bench/pipecat_peer.py``), and drives both with the same
real-audio test caller (``threadline.testing.caller.PhoneCaller``):
N concurrent calls, each placed by signed webhook and talking through a
short support call in espeak-ng speech on a real-time line (store hours, an
order with its postcode, a repair booking), waiting for each reply to finish
playing and pausing about a second before the next turn, as a person would.
Calls start at random moments over the first two seconds and use three
voices, so their turns do not all end at once. One untimed call warms each
server first. ``--profile N`` then serves Threadline with timed engines
(``bench/voice_probe.py``) and Pipecat with a stage observer (``--trace``)
for N calls each and splits their turns into stages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import random
import re
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import serve_env
from bench.chat_load import percentile, service
from bench.voice_breakdown import PIPECAT_STAGES, THREADLINE_STAGES, Breakdown, Stages, stages_of
from threadline.channels.voice.stt import WhisperConfig
from threadline.channels.voice.vad import EndpointerConfig
from threadline.testing.caller import PhoneCaller
from threadline.testing.voice_corpus import VOICES

AUTH_TOKEN = "bench-voice-auth-token-7d3e91"
ACCOUNT_SID = "AC" + "fedcba9876543210" * 2
#: One support call; ``--turns`` takes its first N turns (cycling).
SCRIPT = (
    "When are you open on Sunday in Oakland?",
    "Where is my order 1042?",
    "My postcode is 94103.",
    "I want to book a repair at Market Street tomorrow.",
    "At eleven please.",
    "Thank you, goodbye.",
)
REPLY_TIMEOUT_S = 20.0
#: Threadline ends an utterance after this much trailing silence; the peer's VAD does the same.
THREADLINE_END_SILENCE_S = EndpointerConfig().end_silence_ms / 1000
SECTION = "## Voice turn latency"
THREADLINE = "Threadline"
PIPECAT = "Pipecat"


@dataclass
class Round:
    """One concurrency level on one server: every turn's latency, and what went wrong."""

    calls: int
    latencies: list[float] = field(default_factory=list)
    unanswered: int = 0
    extra_replies: int = 0
    #: (call id, last voiced frame sent, first reply frame) per answered turn
    turns: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 0.95) * 1000


def server_env(folder: str, tag: str) -> dict[str, str]:
    """Each server's configuration: the Northwind pack, a store and data folder of its own."""
    return {
        **serve_env(folder, tag),
        "THREADLINE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "THREADLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "THREADLINE_STT": "whisper",
        "THREADLINE_TTS": "espeak",
        # `threadline serve` sets this itself (a fork for espeak-ng under uvloop during a
        # threaded OpenBLAS call hangs; see threadline/cli.py); the peer needs it too.
        "OPENBLAS_NUM_THREADS": "1",
    }


async def one_call(
    address: str, number: str, turns: int, voice: str, delay: float, rng: random.Random, out: Round
) -> None:
    await asyncio.sleep(delay)
    call = PhoneCaller(f"http://{address}", AUTH_TOKEN, ACCOUNT_SID)
    await call.dial(number)
    await asyncio.sleep(0.5)
    try:
        for turn in range(turns):
            before = len(call.replies)
            try:
                latency = await call.reply_latency(
                    SCRIPT[turn % len(SCRIPT)], voice, timeout=REPLY_TIMEOUT_S
                )
            except TimeoutError:
                out.unanswered += 1
                continue
            voiced_at = call.last_voiced_sent_at or 0.0
            out.latencies.append(latency)
            out.turns.append((call.sid, voiced_at, voiced_at + latency))
            await call.until_quiet()
            out.extra_replies += max(0, len(call.replies) - before - 1)
            await asyncio.sleep(rng.uniform(0.7, 1.3))  # the caller takes in the answer
    finally:
        await call.hang_up()


async def measure(address: str, calls: int, turns: int, seed: int) -> Round:
    """``calls`` concurrent calls of ``turns`` turns each against the server at ``address``."""
    rng = random.Random(seed)
    out = Round(calls)
    tasks = [
        one_call(address, f"+1202555{1000 + seed % 7000 + i:04d}", turns, VOICES[i % len(VOICES)],
                 rng.uniform(0.0, 2.0) if calls > 1 else 0.0, random.Random(seed + i), out)
        for i in range(calls)
    ]  # fmt: skip
    await asyncio.gather(*tasks)
    return out


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def ratio(ours: Sequence[float], theirs: Sequence[float]) -> str:
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_note() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())  # fmt: skip
    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
    libraries = ("pipecat-ai", "faster-whisper", "ctranslate2", "onnxruntime", "uvicorn")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([
        f"CPU: {cpu}; cores: {os.cpu_count()}; load average at start: {load}",
        f"OS: {platform.platform()}; Python {platform.python_version()}",
        f"espeak-ng: {espeak.stdout.strip()}",
        "Libraries: " + ", ".join(f"{name} {_version(name)}" for name in libraries),
    ])  # fmt: skip


def render(
    results: dict[tuple[str, int], list[Round]],
    levels: Sequence[int],
    turns: int,
    runs: int,
    machine: str,
    breakdowns: Sequence[Breakdown],
) -> str:
    header = ("| calls | turns per run | Threadline p50 | Threadline p95 | Pipecat p50 "
              "| Pipecat p95 | ratio p50 | ratio p95 |")  # fmt: skip
    lines = [SECTION, "", __doc__.split("\n\n", 1)[1].strip().replace("``", "`"), "",
             f"Milliseconds; each cell is the median of {runs} runs' percentile, with the min–max"
             " of the runs beside it; ratio = Threadline / Pipecat of those medians.", "",
             header, "|---" * 8 + "|"]  # fmt: skip
    for n in levels if runs else ():
        ours, theirs = results[(THREADLINE, n)], results[(PIPECAT, n)]
        row = [str(n), str(n * turns),
               spread([r.p50 for r in ours]), spread([r.p95 for r in ours]),
               spread([r.p50 for r in theirs]), spread([r.p95 for r in theirs]),
               ratio([r.p50 for r in ours], [r.p50 for r in theirs]),
               ratio([r.p95 for r in ours], [r.p95 for r in theirs])]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    problems = [
        f"{name} at {n} calls: {sum(r.unanswered for r in rs)} turns unanswered, "
        f"{sum(r.extra_replies for r in rs)} extra replies (a turn split in two)"
        for (name, n), rs in results.items()
        if sum(r.unanswered + r.extra_replies for r in rs)
    ]
    lines += ["", *(f"- {p}" for p in problems)] if problems else []
    if breakdowns:
        lines += [
            "",
            "Where the time goes (`--profile`: Threadline's service with timed engines, "
            "`bench/voice_probe.py`; Pipecat with an observer, `--trace`):",
        ]
        for breakdown in breakdowns:
            lines += ["", breakdown.table()]
    lines += ["", "Machine (client and servers share it):", "", "```", machine, "```"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path`` (or append it), leaving the rest alone."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}[^\n]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


async def warm(address: str) -> None:
    """One untimed turn, so model loading and first-call costs stay out of the figures."""
    await measure(address, 1, 1, seed=999)


async def profile(
    system: str,
    server: Sequence[str],
    stages: Stages,
    note: str,
    folder: str,
    calls: int,
    turns: int,
) -> Breakdown:
    """One round of ``calls`` calls on a traced server; each turn's time split into ``stages``."""
    async with service(*server, env=server_env(folder, f"{system}-traced")) as address:
        await warm(address)
        round_ = await measure(address, calls, turns, seed=4242)
        async with httpx.AsyncClient() as http:
            timings = (await http.get(f"http://{address}/bench/timings")).json()
    turns_ = [stages_of(timings.get(sid, []), v, f, stages) for sid, v, f in round_.turns]
    print(f"traced {system} {calls} calls: p50 {round_.p50:,.0f} ms, p95 {round_.p95:,.0f} ms")
    return Breakdown(system, calls, stages, turns_, note)


async def main(args: argparse.Namespace) -> None:
    os.environ.pop("THREADLINE_PUBLIC_URL", None)  # signatures are checked on the request URL
    levels = [int(n) for n in args.calls.split(",") if n]
    folder = tempfile.mkdtemp(prefix="tl-voice-latency-")
    machine = machine_note()
    print(machine, flush=True)
    servers = {
        THREADLINE: ("-m", "threadline.cli", "serve"),
        PIPECAT: ("-m", "bench.pipecat_peer", "--stop-secs", str(args.peer_stop_secs)),
    }
    servers = {name: servers[name] for name in args.systems.split(",")}
    results: dict[tuple[str, int], list[Round]] = {}
    for run in range(args.runs):
        order = list(servers) if run % 2 == 0 else list(reversed(servers))
        for name in order:
            async with service(*servers[name], env=server_env(folder, f"{name}-{run}")) as address:
                await warm(address)
                for n in levels:
                    round_ = await measure(address, n, args.turns, seed=run * 100 + n)
                    results.setdefault((name, n), []).append(round_)
                    print(f"run {run + 1} {name:<10} {n:>2} calls: p50 {round_.p50:,.0f} ms, "
                          f"p95 {round_.p95:,.0f} ms, {len(round_.latencies)} turns, "
                          f"{round_.unanswered} unanswered, {round_.extra_replies} extra",
                          flush=True)  # fmt: skip
    breakdowns = []
    if args.profile:
        probe = ("-m", "bench.voice_probe", "--end-silence-ms", str(args.end_silence_ms),
                 "--beam", str(args.beam))  # fmt: skip
        traced = {
            THREADLINE: (
                probe,
                THREADLINE_STAGES,
                f"end_silence_ms {args.end_silence_ms}, beam {args.beam}",
            ),
            PIPECAT: (
                (*servers.get(PIPECAT, ()), "--trace"),
                PIPECAT_STAGES,
                f"stop_secs {args.peer_stop_secs}, beam {WhisperConfig().beam_size}",
            ),
        }
        for name in servers:
            command, stages, note = traced[name]
            breakdowns.append(await profile(name, command, stages, note, folder, args.profile,
                                            args.turns))  # fmt: skip
    if len(servers) < 2:  # a quick look at one server: its rounds above, its stages here
        for breakdown in breakdowns:
            print(breakdown.table())
        return
    section = render(results, levels, args.turns, args.runs, machine, breakdowns)
    print()
    print(section)
    if args.write:
        write_section(args.write, section)
        print(f"wrote the voice section of {args.write}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,5,10", help="concurrent calls, comma-separated")
    parser.add_argument("--turns", type=int, default=6, help="turns per call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also split Threadline's turns into stages at N calls")  # fmt: skip
    parser.add_argument("--peer-stop-secs", type=float, default=THREADLINE_END_SILENCE_S,
                        help="Pipecat's VADParams.stop_secs (default: as Threadline)")  # fmt: skip
    parser.add_argument("--end-silence-ms", type=int, default=EndpointerConfig().end_silence_ms,
                        help="the profiled Threadline's endpointing silence")  # fmt: skip
    parser.add_argument("--beam", type=int, default=WhisperConfig().beam_size,
                        help="the profiled Threadline's Whisper beam size")  # fmt: skip
    parser.add_argument("--systems", default=f"{THREADLINE},{PIPECAT}",
                        help="servers, comma-separated (one for a quick look)")  # fmt: skip
    parser.add_argument("--write", type=Path, help="put the section into this Markdown file")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
