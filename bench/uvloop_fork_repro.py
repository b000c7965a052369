"""Reproduces the deadlock that can freeze ``threadline serve`` on a call (not a benchmark).

``python -m bench.uvloop_fork_repro [uvloop|asyncio] [spawns]`` spawns ``true``
again and again from the event loop, as the espeak-ng synthesiser does once
per sentence, while another thread multiplies matrices with numpy, as
faster-whisper's feature extraction does (``mel_filters @ magnitudes``).
Under uvloop (what uvicorn picks when it is installed) libuv forks, OpenBLAS's
fork handler (``blas_thread_shutdown_``) waits for its busy worker threads,
and the loop never runs again; the default asyncio loop starts children
without fork handlers (vfork) and finishes. ``OPENBLAS_NUM_THREADS=1`` also
avoids it. Exit status 0 means every spawn finished; a hang is the bug (here, on 2
cores, about one run in three hangs within 5,000 spawns; wrap it in ``timeout``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import numpy as np

_stop = threading.Event()


def _multiply() -> None:
    a = np.random.rand(80, 201).astype(np.float32)
    b = np.random.rand(201, 3000).astype(np.float32)
    while not _stop.is_set():
        a @ b


async def spawn(count: int) -> None:
    threading.Thread(target=_multiply, daemon=True).start()
    started = time.monotonic()
    for i in range(count):
        child = await asyncio.create_subprocess_exec("true")
        await child.wait()
        if i % 500 == 0:
            print(f"{i} spawns", flush=True)
    _stop.set()
    print(f"{count} spawns in {time.monotonic() - started:.1f} s, no deadlock")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "uvloop"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    if loop == "uvloop":
        import uvloop

        uvloop.run(spawn(count))
    else:
        asyncio.run(spawn(count))
