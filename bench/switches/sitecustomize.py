"""Turns governance off in a benchmark's service, to measure what it costs.

:mod:`bench.governance_cost` puts this folder first on ``PYTHONPATH`` of the service it
starts, so Python imports it in that process and in the bot worker it spawns. It reads
``BENCH_OFF`` (comma-separated) and replaces, for the benchmark only:

* ``encryption``: the wiring's :func:`~threadline.store.encrypt` by a no-op (the store
  keeps payloads in plaintext);
* ``redaction``: :meth:`~threadline.engine.redaction.Redaction.apply` by the identity;
* ``policy``: the policy engine's decisions by "allowed" (no Cedar).

The product has no setting for any of these: this file is never on its path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

_OFF = {part for part in os.environ.get("BENCH_OFF", "").split(",") if part}
_KNOWN = {"encryption", "redaction", "policy"}
if _OFF - _KNOWN:
    raise SystemExit(f"BENCH_OFF: unknown {sorted(_OFF - _KNOWN)}; known: {sorted(_KNOWN)}")

if "encryption" in _OFF:
    import threadline.service.wiring as wiring

    wiring.encrypt = lambda store, keys: None  # type: ignore[assignment]

if "redaction" in _OFF:
    from threadline.engine.redaction import Redaction

    def _unredacted(self: Redaction, events: Sequence[Any]) -> list[Any]:
        return list(events)

    Redaction.apply = _unredacted  # type: ignore[method-assign]

if "policy" in _OFF:
    from threadline.security.decision import Decision
    from threadline.security.policy import PolicyEngine

    def _allowed(self: PolicyEngine, requests: Sequence[Any]) -> list[Decision]:
        return [Decision(True, (), self.version) for _ in requests]

    PolicyEngine.decide_all = _allowed  # type: ignore[method-assign]
