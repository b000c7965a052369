"""Process settings for a long-running service.

CPython's default collector runs a full pass every few thousand allocations;
a service that keeps tens of thousands of conversation states and index
entries alive pays for it in tail latency (a gen-2 pass over them takes tens
of milliseconds). The service collects young objects less often and freezes
what start-up loaded, so collections only walk what came since.
"""

from __future__ import annotations

import gc
from typing import Final

#: Allocations between young collections, and young/middle passes between older ones.
THRESHOLDS: Final = (50_000, 50, 100)


def tune_collector() -> None:
    """Apply :data:`THRESHOLDS` and move everything alive now out of the collector's way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
