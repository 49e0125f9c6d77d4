"""Readings of a run beyond its loss at the budget: the final model's held-out scores and the
annealed reading (a cooldown branch, :mod:`.branches`).

Held-out scores (:meth:`~.runs.RunStore.heldout`) are the final model's loss, next-token
accuracy and loss per source-document group on ``scale.heldout_tokens`` validation tokens. A
result cached before they were measured has none: every reading here shows it as missing
(``-`` in a table, no column in a CSV row), never as a value.
"""

from __future__ import annotations

from moegrow.experiments.repro.branches import MissingBranch
from moegrow.experiments.repro.runs import RunResult, RunStore
from moegrow.experiments.repro.stats import fmt_interval, fmt_mean_std

#: Column titles of :func:`heldout_cells`.
HELDOUT_COLUMNS = ["held-out loss, final model", "next-token accuracy, final model"]


def heldout_row(r: RunResult | None, prefix: str = "heldout") -> dict:
    """CSV columns of a run's held-out scores (none where its cached result lacks them)."""
    if r is None or r.heldout is None:
        return {}
    h = r.heldout
    row = {
        f"{prefix}_tokens": h["tokens"],
        f"{prefix}_loss": h["loss"],
        f"{prefix}_accuracy": h["accuracy"],
    }
    for name, g in (h.get("groups") or {}).items():
        row[f"{prefix}_loss[{name}]"] = g["loss"]
        row[f"{prefix}_accuracy[{name}]"] = g["accuracy"]
    return row


def heldout_cells(runs: list[RunResult]) -> list[str]:
    """Held-out loss and next-token accuracy of the final models (mean ± std over seeds);
    ``-`` where any cached result lacks them."""
    scores = [r.heldout for r in runs if r.heldout is not None]
    if not runs or len(scores) < len(runs):
        return ["-", "-"]
    return [
        fmt_mean_std([h["loss"] for h in scores]),
        fmt_mean_std([h["accuracy"] for h in scores]),
    ]


def heldout_gap(worse: list[RunResult], better: list[RunResult]) -> str:
    """The paired interval of two arms' held-out losses, worse - better; ``-`` where any
    cached result lacks them."""
    a = [r.heldout["loss"] for r in worse if r.heldout is not None]
    b = [r.heldout["loss"] for r in better if r.heldout is not None]
    if len(a) < len(worse) or len(b) < len(better):
        return "-"
    return fmt_interval(a, b)


def group_rows(arms: dict[str, list[RunResult]]) -> tuple[list[str], list[list]] | None:
    """Columns and rows of the final models' held-out loss per source-document group (mean
    over seeds), one row per arm whose runs all have group scores; None when no arm has."""
    scored: dict[str, list[dict]] = {}
    for label, runs in arms.items():
        groups = [r.heldout["groups"] for r in runs if r.heldout and r.heldout.get("groups")]
        if runs and len(groups) == len(runs):
            scored[label] = groups
    if not scored:
        return None
    names = list(dict.fromkeys(g for per_seed in scored.values() for gs in per_seed for g in gs))
    first = next(iter(scored.values()))[0]
    rows = []
    for label, per_seed in scored.items():
        cells = []
        for g in names:
            values = [groups[g]["loss"] for groups in per_seed if g in groups]
            cells.append(f"{sum(values) / len(values):.4f}" if values else "-")
        rows.append([label, *cells])
    columns = [f"{g} ({first[g]['tokens']} tokens)" if g in first else g for g in names]
    return ["arm", *columns], rows


def annealed_run(
    store: RunStore, run: RunResult, budget_fc: float, label: str, notes: list[str]
) -> RunResult | None:
    """``run``'s cooldown branch at ``budget_fc`` x F_c, or None, with a note naming the run,
    where it was trained (cached) without the checkpoint to branch from."""
    try:
        return store.cooldown(run, budget_fc, f"{label}, cooldown at {budget_fc:g} x F_c")
    except MissingBranch as e:
        notes.append(f"Not read annealed: {label} ({e})")
        return None


def annealed_row(r: RunResult | None) -> dict:
    """CSV columns of a run's cooldown branch (none where it could not be read)."""
    if r is None:
        return {}
    return {"val_loss_at_budget_annealed": r.loss_at_budget, **heldout_row(r, "annealed_heldout")}


def losses_of(runs: list[RunResult | None]) -> list[float] | None:
    """Each run's loss at its budget; None when any run is missing."""
    if any(r is None for r in runs):
        return None
    return [r.loss_at_budget for r in runs if r is not None]


def fmt_losses(losses: list[float] | None) -> str:
    """Mean ± std of ``losses``, ``-`` when they are missing."""
    return "-" if losses is None else fmt_mean_std(losses)
