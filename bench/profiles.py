"""Where a benchmarked process spends its time: py-spy samples, summed by function.

:func:`record` samples a running process with ``py-spy record --format raw`` (collapsed
stacks, one line per distinct stack with its sample count; ``--nonblocking``, so the
process is never paused) for a while; :func:`shares` sums them by ``file:function``:
the share of the samples in which the function was on the stack (inclusive) and at its
top (self). py-spy leaves idle threads out, so the shares are of the time the process
was doing something.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: ``function (path/to/file.py:123)`` as py-spy writes a frame.
_FRAME: Final = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    """The py-spy executable beside this Python, or on the path."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("profiling needs py-spy: .venv/bin/python -m pip install py-spy")
    return found


async def record(pid: int, seconds: float, out: Path, rate: int = 250) -> None:
    """Sample ``pid`` for ``seconds`` into ``out`` (collapsed stacks)."""
    process = await asyncio.create_subprocess_exec(
        py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(rate), "--nonblocking", "--format", "raw", "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace').strip()[-500:]}")


@dataclass(frozen=True)
class Share:
    """One function's share of the samples: on the stack, and at its top."""

    where: str
    inclusive: float
    own: float


def _key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{match['function']}"


def shares(path: Path) -> tuple[int, list[Share]]:
    """The samples in ``path``, and every function's share of them, largest first."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_key(f) for f in stack.split(";") if f]
        total += n
        for key in set(frames):
            inclusive[key] += n
        if frames:
            own[frames[-1]] += n
    rows = [Share(k, inclusive[k] / total, own[k] / total) for k in inclusive] if total else []
    return total, sorted(rows, key=lambda s: s.inclusive, reverse=True)


def table(path: Path, top: int = 30, within: str = "") -> str:
    """Markdown: the ``top`` functions by inclusive share (of files containing ``within``)."""
    total, rows = shares(path)
    lines = [f"{total} samples", "", "| function | on stack | own |", "|---|---|---|"]
    picked = [r for r in rows if within in r.where][:top]
    lines += [f"| `{r.where}` | {r.inclusive:.1%} | {r.own:.1%} |" for r in picked]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy's collapsed stacks (--format raw)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--within", default="", help="only files whose path contains this")
    args = parser.parse_args()
    print(table(args.raw, args.top, args.within))
