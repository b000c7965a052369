"""Benchmarks for threadline (not shipped with the package).

Every benchmark serves the demo business, Northwind Devices, from its pack: the
workloads (the chat questions, the support call, the voice evaluation set) are
its customers' words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The demo business pack the benchmarks serve (``examples/northwind`` of this repository).
NORTHWIND: Final = Path(__file__).resolve().parent.parent / "examples" / "northwind"


def serve_env(folder: str | Path, tag: str) -> dict[str, str]:
    """What a benchmark's ``threadline serve`` child is configured with: the Northwind pack,
    and a store and a data folder (the in-process tools' state) of its own under ``folder``.
    Every simulated visitor opens its session from this one machine's address."""
    return {
        "THREADLINE_BUSINESS": str(NORTHWIND),
        "THREADLINE_CHAT_SESSIONS_PER_HOUR": "100000",
        "THREADLINE_STORE": f"sqlite:///{folder}/{tag}.db",
        "THREADLINE_DATA_DIR": f"{folder}/{tag}-data",
    }
