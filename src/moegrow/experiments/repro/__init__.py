"""``moegrow repro``: the paper's findings (PAPER.md, "Results to reproduce") at small scale.

Every run is cached by its full configuration under ``OUT/SCALE/`` (see :mod:`.runs`), so
experiments share runs, a repeated invocation trains nothing twice and a killed one resumes.
Each experiment writes ``OUT/SCALE/EXPERIMENT/`` with a CSV (one row per run), PNG plots and a
markdown file of tables beside the paper's finding; ``all`` also writes ``OUT/SCALE/results.md``.
"""

from __future__ import annotations

#: The experiments, in the order ``all`` runs them (implemented in :mod:`.experiments`).
NAMES = ("depth-method", "noise", "routing", "sunk-cost", "total-budget", "order", "post-norm")
ALL = "all"
#: The finding-1 campaign (:mod:`.depth_causes`), decisive comparison first.
CAMPAIGN_NAMES = (
    "depth-horizon",
    "depth-growth-point",
    "depth-lr",
    "depth-zero-init",
    "depth-launch",
    "depth-base-seed",
    "depth-k4",
    "depth-long-base",
)
CAMPAIGN_GROUP = "depth-campaign"
#: Beyond the paper: recycling a dense checkpoint (:mod:`.upcycling`); not part of ``all``.
EXTRA_NAMES = ("upcycle",)
