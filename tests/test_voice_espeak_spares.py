"""espeak-ng's spare processes: started before a sentence needs them, never left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from threadline.channels.voice import tts as tts_module
from threadline.channels.voice.tts import EspeakProcess, EspeakTTS
from threadline.testing.voice import judge_speech

pytestmark = pytest.mark.usefixtures("espeak")


def espeak_children() -> dict[int, str]:
    """This process's espeak-ng children, zombies included: pid -> state (``S``, ``Z``…)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name_ends = stat.rindex(")")
        state, ppid = stat[name_ends + 2 :].split()[:2]
        if int(ppid) == os.getpid() and stat[stat.index("(") + 1 : name_ends] == "espeak-ng":
            out[int(entry.name)] = state
    return out


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def spoken(engine: EspeakTTS, text: str) -> bytes:
    return b"".join([chunk.audio async for chunk in engine.synthesize(text)])


class Recorded:
    """The processes started (pid, thread) and those handed a sentence (pid), in order."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.threads: list[threading.Thread] = []
        self.spoken: list[int] = []


@pytest.fixture
def recorded(monkeypatch) -> Recorded:
    out = Recorded()
    popen, speak = tts_module._popen, EspeakProcess.speak

    def started(command: Sequence[str]) -> subprocess.Popen[bytes]:
        process = popen(command)
        out.started.append(process.pid)
        out.threads.append(threading.current_thread())
        return process

    async def spoken_to(self: EspeakProcess, text: str) -> None:
        out.spoken.append(self.pid)
        await speak(self, text)

    monkeypatch.setattr(tts_module, "_popen", started)
    monkeypatch.setattr(EspeakProcess, "speak", spoken_to)
    return out


@pytest.fixture
async def engine():
    engine = EspeakTTS()
    yield engine
    await engine.close()


async def test_a_sentence_goes_to_a_process_started_before_it_was_asked_for(engine, recorded):
    await spoken(engine, "Your order is on its way.")
    await until(lambda: len(recorded.started) == 2)  # its own, and the spare
    started_before = list(recorded.started)
    audio = await spoken(engine, "It should arrive on Friday.")
    assert recorded.spoken[1] in started_before
    assert judge_speech(audio).plausible_for("It should arrive on Friday.")


async def test_processes_start_off_the_event_loop_thread(engine, recorded):
    await spoken(engine, "One. Two.")
    assert len(recorded.threads) >= 2
    assert threading.current_thread() not in recorded.threads


async def test_a_killed_spare_is_replaced_and_the_sentence_still_spoken(engine, recorded):
    await spoken(engine, "Your order is on its way.")
    await until(lambda: len(recorded.started) == 2)
    (spare,) = set(recorded.started) - set(recorded.spoken)
    os.kill(spare, signal.SIGKILL)
    await until(lambda: espeak_children().get(spare) == "Z")  # dead, not yet reaped
    audio = await spoken(engine, "It should arrive on Friday.")
    assert recorded.spoken[1] != spare
    assert judge_speech(audio).plausible_for("It should arrive on Friday.")
    assert spare not in espeak_children()  # reaped, not left a zombie
    await until(lambda: len(set(recorded.started) - set(recorded.spoken)) == 2)
    (new_spare,) = set(recorded.started) - set(recorded.spoken) - {spare}
    assert espeak_children().get(new_spare) not in (None, "Z")  # and a new spare waits


async def test_closing_mid_sentence_leaves_no_child_process_but_the_spare(engine, recorded):
    speech = engine.synthesize("This sentence goes on and on, and on and on, for a long while.")
    await anext(speech)
    speaking = recorded.spoken[0]
    assert espeak_children().get(speaking) not in (None, "Z")  # still speaking
    await speech.aclose()
    assert speaking not in espeak_children()  # killed and reaped at once
    await until(lambda: len(recorded.started) == 2)
    (spare,) = set(recorded.started) - {speaking}
    assert set(recorded.started) & set(espeak_children()) == {spare}


async def test_closing_the_engine_leaves_no_spare(recorded):
    engine = EspeakTTS()
    await spoken(engine, "Your order is on its way.")
    await until(lambda: len(recorded.started) == 2)
    assert set(recorded.started) & set(espeak_children())  # the spare waits
    await engine.close()
    assert set(recorded.started) & set(espeak_children()) == set()


async def test_sentences_cancelled_while_processes_start_leave_nothing(monkeypatch, recorded):
    popen = tts_module._popen

    def slow(command: Sequence[str]) -> subprocess.Popen[bytes]:
        time.sleep(0.3)  # in the worker thread
        return popen(command)

    monkeypatch.setattr(tts_module, "_popen", slow)
    engine = EspeakTTS()
    await spoken(engine, "Hello.")  # then, once its audio came, a spare started starting
    # One sentence waits for that spare, another in another voice starts its own process.
    waiting = asyncio.ensure_future(anext(engine.synthesize("Hello.")))
    starting = asyncio.ensure_future(anext(engine.synthesize("Hello.", voice="en-gb")))
    await asyncio.sleep(0.1)
    waiting.cancel()
    starting.cancel()
    await asyncio.gather(waiting, starting, return_exceptions=True)
    await engine.close()
    await until(lambda: len(recorded.started) == 3)
    await asyncio.sleep(0.05)  # each is discarded once it has started
    assert set(recorded.started) & set(espeak_children()) == set()
    assert len(recorded.spoken) == 1


def test_on_uvloop_too_a_spare_speaks_and_closing_leaves_none(recorded):
    """``threadline serve`` runs uvloop, whose pipes and children are its own."""
    uvloop = pytest.importorskip("uvloop")

    async def two_sentences() -> tuple[list[int], bytes]:
        engine = EspeakTTS()
        try:
            await spoken(engine, "Your order is on its way.")
            await until(lambda: len(recorded.started) == 2)
            started_before = list(recorded.started)
            return started_before, await spoken(engine, "It should arrive on Friday.")
        finally:
            await engine.close()

    started_before, audio = uvloop.run(two_sentences())
    assert recorded.spoken[1] in started_before
    assert judge_speech(audio).plausible_for("It should arrive on Friday.")
    assert threading.current_thread() not in recorded.threads
    assert set(recorded.started) & set(espeak_children()) == set()


def test_a_spare_ends_with_the_process_that_owns_it():
    script = textwrap.dedent("""
        import asyncio, os, pathlib, sys
        from threadline.channels.voice.tts import EspeakTTS

        async def main():
            engine = EspeakTTS()
            async for _ in engine.synthesize("Hello."):
                pass
            await asyncio.sleep(0.5)  # the spare has started
            threads = pathlib.Path(f"/proc/{os.getpid()}/task")
            print(" ".join(t.joinpath("children").read_text() for t in threads.iterdir()))
            sys.stdout.flush()
            os._exit(0)  # not closed: as if killed, or crashed

        asyncio.run(main())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    (spare,) = run.stdout.split()

    def running() -> bool:
        try:
            stat = Path(f"/proc/{spare}/stat").read_text()
        except OSError:
            return False  # gone
        return "(espeak-ng)" in stat and stat[stat.rindex(")") + 2] not in "ZX"

    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running()


async def test_ending_a_process_cancelled_midway_still_closes_its_pipes() -> None:
    process = await EspeakProcess.start(EspeakTTS()._command("en-us"))
    popen = process._popen
    ending = asyncio.create_task(process.end())
    await asyncio.sleep(0)  # it has killed the process and waits for it in a thread
    ending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ending
    assert popen.stdin.closed and popen.stdout.closed and popen.stderr.closed
    async with asyncio.timeout(5):
        while popen.poll() is None:
            await asyncio.sleep(0.01)
