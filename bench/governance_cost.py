"""What governance costs on the chat path: CPU per turn with it on and off, alternating.

``python -m bench.governance_cost [--customers 100] [--turns 10] [--runs 7]`` runs the
chat benchmark's flat-out round (:mod:`bench.chat_load`: N WebSocket customers talking
to the bot at once, the service and its bot worker in child processes, serving
Northwind) against the service as it ships and against the same service with parts of
governance turned off for the benchmark (:mod:`bench.switches`), the variants in
alternation within each run so that the machine's drift falls on all of them alike:

* **as shipped**: encryption, redaction and the policy engine on;
* **without encryption and redaction**: payloads stored in plaintext, nothing redacted;
* **without encryption, redaction and policy**: every authorization allowed as well.

CPU per turn is the service's and the bot worker's CPU time during the talking phase
over the turns taken. It reports each variant's median and range over the runs, and the
rise of the shipped service over each other variant as the median of the per-run ratios
(each run's variants measured minutes apart) with their range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import serve_env
from bench.chat_load import Round, service, threadline_round

SWITCHES = Path(__file__).resolve().parent / "switches"


@dataclass(frozen=True)
class Variant:
    label: str
    off: str


VARIANTS = (
    Variant("as shipped", ""),
    Variant("without encryption and redaction", "encryption,redaction"),
    Variant("without encryption, redaction and policy", "encryption,redaction,policy"),
)


def cpu_per_turn(round_: Round) -> float:
    """Milliseconds of CPU, service and bot worker together, per turn."""
    return (round_.cpu["service"] + round_.cpu["bot worker"]) / round_.turns * 1000


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


async def one(variant: Variant, folder: str, tag: str, customers: int, turns: int) -> Round:
    env = serve_env(folder, tag)
    if variant.off:
        path = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{SWITCHES}{os.pathsep}{path}" if path else str(SWITCHES)
        env["BENCH_OFF"] = variant.off
    async with service("-m", "threadline.cli", "serve", env=env) as address:
        return await threadline_round(address, customers, turns)


async def main(customers: int, turns: int, runs: int) -> None:
    folder = tempfile.mkdtemp(prefix="tl-governance-cost-")
    print(f"{customers} customers x {turns} turns, flat out, {runs} runs, variants "
          f"alternating, on {os.cpu_count()} cores (client and server on one machine); "
          "median (min–max)")  # fmt: skip
    rounds: dict[str, list[Round]] = {v.label: [] for v in VARIANTS}
    for run in range(runs):
        # Each run starts with a different variant: none is always first or last.
        order = VARIANTS[run % len(VARIANTS):] + VARIANTS[:run % len(VARIANTS)]  # fmt: skip
        for variant in order:
            tag = f"{run}-{VARIANTS.index(variant)}"
            rounds[variant.label].append(await one(variant, folder, tag, customers, turns))
    for label, found in rounds.items():
        cpu = [cpu_per_turn(r) for r in found]
        service_ms = [r.cpu["service"] / r.turns * 1000 for r in found]
        bot_ms = [r.cpu["bot worker"] / r.turns * 1000 for r in found]
        print(f"  {label:<42} turns/s {spread([r.rate for r in found], ',.0f')}  "
              f"CPU ms/turn {spread(cpu, '.3f')} (service {statistics.median(service_ms):.3f}, "
              f"bot worker {statistics.median(bot_ms):.3f})")  # fmt: skip
    shipped = [cpu_per_turn(r) for r in rounds[VARIANTS[0].label]]
    for variant in VARIANTS[1:]:
        other = [cpu_per_turn(r) for r in rounds[variant.label]]
        rises = [(a / b - 1) * 100 for a, b in zip(shipped, other, strict=True)]
        print(f"  as shipped over {variant.label}: CPU per turn {spread(rises, '+.1f')}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    uvloop.run(main(args.customers, args.turns, args.runs))
