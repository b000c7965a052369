"""Offline evaluation of the automated agent: scripted conversations, scored.

A suite (:mod:`.suite`) scripts conversations and what a good agent does in
each; the runner (:mod:`.runner`) plays every scenario through the real product
in process (:mod:`.sandbox`) against an agent chosen by name (:mod:`.agents`);
:mod:`.metrics` scores the runs, :mod:`.gate` checks the scores against
thresholds, and :mod:`.report` prints and writes them. The command line is
``threadline eval`` (:mod:`.commands`).

Importing this package loads nothing heavy; the agents load when first used.
"""

from __future__ import annotations

from threadline.business.loader import Problem
from threadline.evaluation.suite import Scenario, Suite, SuiteError, TurnSpec, load_suite

__all__ = ["Problem", "Scenario", "Suite", "SuiteError", "TurnSpec", "load_suite"]
