"""espeak-ng's first chunk of a sentence, from a process of a given size, on either loop.

``python -m bench.espeak_spawn [--sizes 0,250,1500] [--times 15]`` times
:class:`~threadline.channels.voice.tts.EspeakTTS` from the call to its first chunk of one
sentence, in a child process per case: under asyncio's default loop and under uvloop
(as ``threadline serve`` runs), after the child has allocated and touched SIZE MiB more
(the service with Whisper loaded holds about 250 MiB). Each synthesis starts an espeak-ng
process; uvloop starts it with ``fork()``, whose cost grows with the parent's memory,
where asyncio's default loop starts it through ``subprocess`` (``vfork()`` on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from threadline.core.ports import SpeechChunk

SENTENCE = "Your order is on its way and should arrive on Friday."


async def first_chunks(times: int) -> list[float]:
    from threadline.channels.voice.tts import EspeakTTS

    tts = EspeakTTS()
    out = []
    for _ in range(times):
        began = time.monotonic()
        speech = cast("AsyncGenerator[SpeechChunk, None]", tts.synthesize(SENTENCE, "mulaw"))
        async with contextlib.aclosing(speech):
            async for _chunk in speech:
                out.append(time.monotonic() - began)
                break
    return out


def child(size_mib: int, loop: str, times: int) -> None:
    ballast = bytearray(size_mib * 1024 * 1024)
    for i in range(0, len(ballast), 4096):  # touched: resident, as a loaded model is
        ballast[i] = 1
    if loop == "uvloop":
        import uvloop

        out = uvloop.run(first_chunks(times))
    else:
        out = asyncio.run(first_chunks(times))
    print(f"{statistics.median(out) * 1000:.1f} {min(out) * 1000:.1f} {max(out) * 1000:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,250,1500", help="MiB the child adds, comma-separated")
    parser.add_argument("--times", type=int, default=15)
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.times)
        return
    print(f"ms from the call to the first chunk of {SENTENCE!r}: median (min–max) of {args.times}")
    print("| added MiB | asyncio | uvloop |")
    print("|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",") if s):
        cells = []
        for loop in ("asyncio", "uvloop"):
            run = subprocess.run(
                [sys.executable, "-m", "bench.espeak_spawn", "--times", str(args.times),
                 "--child", str(size), loop],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            median, low, high = run.stdout.split()
            cells.append(f"{median} ({low}–{high})")
        print(f"| {size:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
