"""The campaign for finding 1 (interposition > stacking past ~1 x F_c): the decisive comparison
and the tests of the causes that could explain a disagreement, each a ``repro`` experiment.

Every arm is a grown run of the base at a constant LR, read at budgets of extra FLOPs both at
that LR and annealed (a cooldown branch, :mod:`.branches`); each seed pairs a stacked and an
interposed run that see the same batches, and the tables give the paired difference
stack - interposition (positive: interposition better) with its 95 % Student-t interval.

- ``depth-horizon`` (decisive): the ``late`` base (well past F_c), k = 2, a horizon of
  2 x ``extra_fc`` read at 0.25, 0.5 and 1 of it; copy-pair symmetry after training;
- ``depth-growth-point``: grow at ``mid``, ``late`` and 2 x ``late`` x F_c;
- ``depth-lr``: post-growth LR 1 x, 1/3 x and 1/10 x the scale's;
- ``depth-zero-init``: copies with zeroed residual output projections (function-preserving);
- ``depth-launch``: the authors' launch setting, 2 un-copied layers at each end;
- ``depth-base-seed``: the decisive setting on a second base run (another init and data order);
- ``depth-k4``: k = 4;
- ``depth-long-base``: the decisive setting from a base trained into the paper's regime (the
  scale's longer base run, 24 x F_c at ``deep``).

Cause tests other than the horizon read their arms at ``extra_fc``; their reference arms are the
decisive runs (identical up to ``extra_fc``: constant LR, same warm-up, same batches).
"""

from __future__ import annotations

from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.experiments.repro.analysis import copy_pair_cosines
from moegrow.experiments.repro.experiments import Outcome, Plot, Table, _mean_curve
from moegrow.experiments.repro.runs import RunStore
from moegrow.experiments.repro.stats import fmt_interval, fmt_mean_std
from moegrow.growth.spec import GrowthSpec

PAPER = (
    "Interposition beats stacking once the base is trained past ~1 x F_c (similar before); the "
    "gap widens with k = 4. The paper's 3B base ran to ~27 x F_c and its grown models got ~5 x "
    "F_c, at a constant LR of 3e-4."
)
METHODS = ("stack", "interpose")
GAP_COLUMNS = [
    "setting",
    "budget (x F_c)",
    "LR",
    "stack: loss",
    "interposition: loss",
    "stack - interposition [95 % t-interval, paired over seeds]",
    "seeds where interposition wins",
]


def _horizon(store: RunStore) -> tuple[float, tuple[float, ...]]:
    """The decisive horizon and the budgets it is read at (x F_c)."""
    h = 2 * store.scale.extra_fc
    return h, (0.25 * h, 0.5 * h, h)


def _read(store, run, budgets, label) -> tuple[dict, dict]:
    """A run's loss at each budget at its constant LR (its curve) and annealed (a cooldown)."""
    from moegrow.experiments.curves import loss_at

    constant, annealed = {}, {}
    for b in budgets:
        value = loss_at(run.curve, b * store.chinchilla_flops)
        constant[b] = run.loss_at_budget if value is None else value
        annealed[b] = store.cooldown(run, b, f"{label}, cooldown at {b:g} x F_c").loss_at_budget
    return constant, annealed


def _pair(store, base, seeds, horizon, budgets, tag, lr=None, **spec):
    """Stacked and interposed arms of one setting, seed by seed (so that an interrupted
    campaign has complete pairs): ``{method: {"runs": [...], "constant": {b: [loss per
    seed]}, "annealed": {b: [...]}}}``."""
    out = {m: {"runs": [], "constant": {}, "annealed": {}} for m in METHODS}
    for seed in seeds:
        for m in METHODS:
            label = f"{tag}: {m}, seed {seed}"
            growth = GrowthSpec(depth_method=m, **{"depth": 2, **spec})
            run = store.grown(base, growth, horizon, seed, label, lr=lr, cooldowns=budgets)
            constant, annealed = _read(store, run, budgets, label)
            out[m]["runs"].append(run)
            for b in budgets:
                out[m]["constant"].setdefault(b, []).append(constant[b])
                out[m]["annealed"].setdefault(b, []).append(annealed[b])
    return out


def _gap_rows(setting: str, pair: dict, budgets, lr: float, out: Outcome, extra: dict) -> list:
    rows = []
    stack, inter = pair["stack"], pair["interpose"]
    for b in budgets:
        for reading in ("constant", "annealed"):
            s, i = stack[reading][b], inter[reading][b]
            rows.append(
                [
                    setting,
                    f"{b:g}" + (" (annealed)" if reading == "annealed" else " (constant LR)"),
                    f"{lr:g}",
                    fmt_mean_std(s),
                    fmt_mean_std(i),
                    fmt_interval(s, i),
                    f"{sum(x > y for x, y in zip(s, i))}/{len(s)}",
                ]
            )
            for seed, (x, y) in enumerate(zip(s, i)):
                out.rows.append(
                    {
                        **extra,
                        "setting": setting,
                        "budget_fc": b,
                        "reading": reading,
                        "lr": lr,
                        "seed": seed,
                        "stack_loss": x,
                        "interpose_loss": y,
                        "gap_stack_minus_interpose": x - y,
                    }
                )
    return rows


def _outcome(name: str, title: str) -> Outcome:
    return Outcome(name, title, PAPER)


def _gap_table(title: str, rows: list) -> Table:
    return Table(title, GAP_COLUMNS, rows)


def depth_horizon(
    store: RunStore,
    seeds: list[int],
    base_seed: int = 0,
    point: float | None = None,
    name: str = "depth-horizon",
) -> Outcome:
    """The decisive comparison from the base at ``point`` x F_c (default ``late``)."""
    s = store.scale
    point = s.late if point is None else point
    out = _outcome(name, "Depth growth, stack vs interposition: horizon and cooldowns")
    horizon, budgets = _horizon(store)
    base = store.base(point, seed=base_seed)
    tag = f"[{name}] base {point:g} x F_c (seed {base_seed})"
    pair = _pair(store, base, seeds, horizon, budgets, tag)
    setting = f"base {point:g} x F_c (base seed {base_seed}), k=2"
    rows = _gap_rows(setting, pair, budgets, s.lr, out, {"base_seed": base_seed})
    if base_seed != 0:
        first = _pair(store, store.base(s.late), seeds, horizon, budgets, "[reference]")
        pooled: dict[str, dict[str, dict]] = {
            m: {r: {} for r in ("constant", "annealed")} for m in METHODS
        }
        for m in METHODS:
            for r in ("constant", "annealed"):
                for b in budgets:
                    pooled[m][r][b] = first[m][r][b] + pair[m][r][b]
        rows += _gap_rows(
            "both base seeds (pooled pairs)", pooled, budgets, s.lr, Outcome("", "", ""), {}
        )
    out.tables.append(
        _gap_table(
            f"Stack minus interposition from the {point:g} x F_c base, k = 2, grown runs of "
            f"{horizon:g} x F_c extra at constant LR {s.lr:g}, read at each budget at that LR "
            f"and after a cooldown (LR linear to {s.cooldown_min_ratio:g} x peak over the last "
            f"{s.cooldown_fraction:.0%} of the budget); seeds: {len(seeds)}",
            rows,
        )
    )
    symmetry = []
    for m in METHODS:
        # results copied from another machine come without their checkpoints
        kept = [r for r in pair[m]["runs"] if Path(r.final).is_dir()]
        values = [copy_pair_cosines(r.final, base.path, r.key["growth"]) for r in kept]
        if not values:
            symmetry.append([m, "checkpoints not here", "-", "-"])
            continue
        symmetry.append(
            [
                m,
                fmt_mean_std([v["update_cosine"] for v in values], 3),
                fmt_mean_std([v["moment_cosine"] for v in values], 3),
                fmt_mean_std([v["weight_cosine"] for v in values], 4),
            ]
        )
        for seed, v in zip([r.key["seed"] for r in kept], values):
            out.rows.append({"setting": "symmetry", "method": m, "seed": seed, **v})
    out.tables.append(
        Table(
            f"Copy symmetry after {horizon:g} x F_c: for each pair of layers copied from one "
            "source layer, the cosine of their updates since growth, of their Adam first "
            "moments, and of their weights (mean over pairs and tensors; mean ± std over seeds)",
            ["method", "update cosine", "Adam m cosine", "weight cosine"],
            symmetry,
        )
    )
    curves = {m: _mean_curve(pair[m]["runs"], store.chinchilla_flops) for m in METHODS}
    out.plots.append(
        Plot(
            f"{name}-curves.png",
            "curves",
            f"validation loss after depth growth from the {point:g} x F_c base (mean over seeds)",
            curves,
            "extra FLOPs / F_c",
            "validation loss",
        )
    )
    return out


def depth_base_seed(store: RunStore, seeds: list[int]) -> Outcome:
    return depth_horizon(store, seeds, base_seed=1, name="depth-base-seed")


def depth_long_base(store: RunStore, seeds: list[int]) -> Outcome:
    """The decisive comparison from the scale's longest-trained base (its longer base run):
    base training inside the paper's regime (its bases ran to ~13 and ~27 x F_c)."""
    s = store.scale
    if not s.long_points:
        raise MoegrowError(
            f"depth-long-base: scale {s.name!r} has no longer base run (long_points); use "
            "--scale deep"
        )
    return depth_horizon(store, seeds, point=max(s.long_points), name="depth-long-base")


def _reference(store: RunStore, seeds: list[int]) -> dict:
    """The decisive arms (read at ``extra_fc``)."""
    horizon, budgets = _horizon(store)
    s = store.scale
    return _pair(store, store.base(s.late), seeds, horizon, budgets, "[reference]")


def _cause(
    store: RunStore, seeds: list[int], name: str, title: str, variants: list[tuple]
) -> Outcome:
    """``variants``: (setting label, base point, lr or None, growth options); the reference
    (decisive) setting comes first."""
    s = store.scale
    out = _outcome(name, title)
    b = s.extra_fc
    rows = _gap_rows(
        f"reference: base {s.late:g} x F_c", _reference(store, seeds), (b,), s.lr, out, {}
    )
    for label, point, lr, spec in variants:
        base = store.base(point)
        pair = _pair(store, base, seeds, b, (b,), f"[{name}] {label}", lr, **spec)
        rows += _gap_rows(label, pair, (b,), lr or s.lr, out, {"base_fc": point})
    out.tables.append(
        _gap_table(
            f"Stack minus interposition at {b:g} x F_c extra (seeds: {len(seeds)}; reference: the "
            f"decisive arms from the {s.late:g} x F_c base at LR {s.lr:g})",
            rows,
        )
    )
    return out


def depth_growth_point(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    points = [p for p in (s.mid, 2 * s.late) if p in s.points]
    return _cause(
        store,
        seeds,
        "depth-growth-point",
        "Depth growth: how far the base was trained",
        [(f"base {p:g} x F_c", p, None, {}) for p in points],
    )


def depth_lr(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    return _cause(
        store,
        seeds,
        "depth-lr",
        "Depth growth: the post-growth learning rate",
        [(f"LR {s.lr * f:.2g}", s.late, round(s.lr * f, 10), {}) for f in (1 / 3, 1 / 10)],
    )


def depth_zero_init(store: RunStore, seeds: list[int]) -> Outcome:
    return _cause(
        store,
        seeds,
        "depth-zero-init",
        "Depth growth: copies with zeroed residual outputs (function-preserving)",
        [("zero-init copies", store.scale.late, None, {"zero_init": True})],
    )


def depth_launch(store: RunStore, seeds: list[int]) -> Outcome:
    return _cause(
        store,
        seeds,
        "depth-launch",
        "Depth growth: the authors' launch setting (2 un-copied layers at each end)",
        [
            (
                "2 un-copied layers at each end",
                store.scale.late,
                None,
                {"keep_first": 2, "keep_last": 2},
            )
        ],
    )


def depth_k4(store: RunStore, seeds: list[int]) -> Outcome:
    return _cause(
        store,
        seeds,
        "depth-k4",
        "Depth growth by k = 4",
        [("k = 4", store.scale.late, None, {"depth": 4})],
    )


#: In the order a campaign runs them: the decisive comparison first.
CAMPAIGN = {
    "depth-horizon": depth_horizon,
    "depth-growth-point": depth_growth_point,
    "depth-lr": depth_lr,
    "depth-zero-init": depth_zero_init,
    "depth-launch": depth_launch,
    "depth-base-seed": depth_base_seed,
    "depth-k4": depth_k4,
    "depth-long-base": depth_long_base,
}
