"""The seven experiments of ``moegrow repro`` (PAPER.md, "Results to reproduce").

Each experiment asks the :class:`~moegrow.experiments.repro.runs.RunStore` for the runs it needs
(cached and
shared between experiments) and returns an :class:`Outcome`: rows for its CSV, summary tables,
plots and the paper's finding to set them beside. Final losses are compared at equal extra FLOPs
(each run's validation-loss curve interpolated at the budget), never at equal steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moegrow.experiments.repro import CAMPAIGN_NAMES, EXTRA_NAMES
from moegrow.experiments.repro.analysis import (
    co_selection,
    expert_divergence,
    loss_spike,
    moment_cosine,
    recovery_steps,
    weight_cosine,
)
from moegrow.experiments.repro.readings import (
    HELDOUT_COLUMNS,
    annealed_row,
    annealed_run,
    fmt_losses,
    group_rows,
    heldout_cells,
    heldout_gap,
    heldout_row,
    losses_of,
)
from moegrow.experiments.repro.runs import RunResult, RunStore, Source
from moegrow.experiments.repro.stats import (
    fmt_interval,
    fmt_mean_std,
    mean_std,
    pearson,
    spearman,
)
from moegrow.growth.spec import GrowthSpec


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]


@dataclass
class Plot:
    """``kind``: ``curves`` (label -> [(x, y)]), ``profiles`` (label -> [norm by layer]) or
    ``scatter`` (label -> [(x, y)])."""

    filename: str
    kind: str
    title: str
    series: dict[str, list]
    xlabel: str = ""
    ylabel: str = ""


@dataclass
class Outcome:
    name: str
    title: str
    paper: str
    rows: list[dict] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fc(store: RunStore, flops: float) -> float:
    return flops / store.chinchilla_flops


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _router(folder: Path):
    """The model's router kind (expert count and top-k under whatever keys it uses)."""
    from moegrow.training.router_stats import router_kind

    return router_kind(_config(folder))


def _mean_curve(runs: list[RunResult], fc: float) -> list[tuple[float, float]]:
    """Mean over seeds of the runs' curves, on the first run's evaluation points (x in F_c)."""
    from moegrow.experiments.curves import loss_at

    xs = [x for x, _ in runs[0].curve]
    out = []
    for x in xs:
        ys = [loss_at(r.curve, x) for r in runs]
        if all(y is not None for y in ys):
            out.append((x / fc, sum(ys) / len(ys)))  # type: ignore[arg-type]
    return out


def _profile(folder: Path) -> list[float]:
    from moegrow.families import family_for
    from moegrow.growth.norms import norm_profile
    from moegrow.io.checkpoint import Checkpoint

    with Checkpoint(folder) as ckpt:
        return [p.value for p in norm_profile(ckpt, family_for(ckpt.config))]


def _loss_curves(filename: str, title: str, curves: dict[str, list]) -> Plot:
    return Plot(filename, "curves", title, curves, "extra FLOPs / F_c", "validation loss")


def _seeded(store: RunStore, parent, spec: GrowthSpec, extra_fc: float, seeds, label: str):
    """One grown run per seed."""
    return [store.grown(parent, spec, extra_fc, seed, f"{label}, seed {seed}") for seed in seeds]


#: Column of a paired difference (every gap table says which interval it gives).
GAP_COLUMN = "mean gap [95 % t-interval, paired over seeds]"


def _run_row(r: RunResult, seed: int, **settings: object) -> dict:
    """One CSV row: the settings that tell a run apart, then what every run reports."""
    return {
        **settings,
        "seed": seed,
        "sunk_flops": r.sunk_flops,
        "start_val_loss": r.start_val_loss,
        "extra_flops": r.extra_flops,
        "val_loss_at_budget": r.loss_at_budget,
        **heldout_row(r),
    }


def _gap_row(label: str, worse: list[float], better: list[float]) -> list:
    """Mean of the paired differences worse - better, its 95 % Student-t interval and the
    spread of the differences over seeds."""
    diffs = [w - b for w, b in zip(worse, better)]
    _, std = mean_std(diffs)
    wins = sum(d > 0 for d in diffs)
    return [label, fmt_interval(worse, better), f"{std:.4f}", f"{wins}/{len(diffs)}"]


def _add_group_table(out: Outcome, title: str, arms: dict[str, list[RunResult]]) -> None:
    """A table of the arms' held-out loss per source-document group, where they have one."""
    table = group_rows(arms)
    if table is not None:
        columns, rows = table
        out.tables.append(
            Table(
                f"{title}: held-out loss per source-document group of the final models (mean "
                "over seeds)",
                columns,
                rows,
            )
        )


# -- 1 -------------------------------------------------------------------------------------------


def depth_method(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "depth-method",
        "Depth growth: stack vs interposition",
        "Interposition beats stacking once the base is trained past ~1 x F_c (similar before); "
        "the gap widens with k = 4. Stacking breaks the increasing per-layer norm profile.",
    )
    summary, gaps, curves = [], [], {}
    profiles: dict[str, dict[str, list[float]]] = {}
    arms: dict[str, list[RunResult]] = {}
    for point in (s.early, s.late):
        base = store.base(point)
        tag = f"base {point:g} x F_c"
        profiles[tag] = {"base": _profile(base.path)}
        for k in (2, 4):
            losses, pair = {}, {}
            for method in ("stack", "interpose"):
                runs = _seeded(
                    store,
                    base,
                    GrowthSpec(depth=k, depth_method=method),
                    s.extra_fc,
                    seeds,
                    f"[depth-method] {method} k={k} from {tag}",
                )
                losses[method] = [r.loss_at_budget for r in runs]
                pair[method] = arms[f"{tag}, k={k}, {method}"] = runs
                for seed, r in zip(seeds, runs):
                    out.rows.append(_run_row(r, seed, base_fc=point, k=k, method=method))
                summary.append(
                    [
                        f"{point:g}",
                        k,
                        method,
                        fmt_mean_std([r.start_val_loss for r in runs]),
                        fmt_mean_std(losses[method]),
                        *heldout_cells(runs),
                    ]
                )
                curves[f"{tag}, k={k}, {method}"] = _mean_curve(runs, store.chinchilla_flops)
                profiles[tag][f"k={k} {method} (trained)"] = _profile(runs[0].final)
            gaps.append(
                _gap_row(f"{tag}, k={k}", losses["stack"], losses["interpose"])
                + [heldout_gap(pair["stack"], pair["interpose"])]
            )
    out.tables.append(
        Table(
            f"Validation loss at {s.extra_fc:g} x F_c extra FLOPs (mean ± std over "
            f"{len(seeds)} seeds); held-out: {s.heldout_tokens} validation tokens",
            [
                "base (x F_c)",
                "k",
                "method",
                "loss right after growth",
                "loss at budget",
                *HELDOUT_COLUMNS,
            ],
            summary,
        )
    )
    out.tables.append(
        Table(
            "Stack minus interposition (positive: interposition better)",
            [
                "setting",
                GAP_COLUMN,
                "std of gap",
                "seeds where interposition wins",
                "held-out loss: stack - interposition [95 % t-interval]",
            ],
            gaps,
        )
    )
    _add_group_table(out, "Depth method", arms)
    out.plots.append(
        _loss_curves(
            "depth-method-curves.png",
            "validation loss after depth growth (mean over seeds)",
            curves,
        )
    )
    for tag, series in profiles.items():
        out.plots.append(
            Plot(
                f"depth-method-norms-{tag.split()[1]}fc.png",
                "profiles",
                f"expert weight-norm profile, {tag} (grown models after training, seed {seeds[0]})",
                series,
                "relative depth",
                "mean expert weight RMS",
            )
        )
    return out


# -- 2 -------------------------------------------------------------------------------------------

NOISE_LEVELS = (0.0, 0.001, 0.01, 0.1, 1.0)


def noise(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "noise",
        "Width growth: noise on the copied experts",
        "alpha = 0.01 > alpha = 0 > large alpha > random new experts (alpha = 0.01 gave about "
        "+1 accuracy point over 0 at 3B; exact copies get identical gradients).",
    )
    base = store.base(s.late)
    e = _router(base.path).num_experts
    variants = [(f"alpha={a:g}", GrowthSpec(width=2, noise=a)) for a in NOISE_LEVELS]
    variants.append(("random new experts", GrowthSpec(width=2, experts="random", router="random")))
    summary, curves, final = [], {}, {}
    arms: dict[str, list[RunResult]] = {}
    for label, spec in variants:
        runs = _seeded(store, base, spec, s.extra_fc, seeds, f"[noise] {label}")
        arms[label] = runs
        div = [expert_divergence(r.final, e) for r in runs]
        co = [co_selection(r.final, store.data, e, s.seq_len, s.eval_tokens // 2) for r in runs]
        for seed, r, d, c in zip(seeds, runs, div, co):
            out.rows.append(
                _run_row(r, seed, variant=label)
                | {
                    "copy_weight_cosine": d["copy_weight_cosine"],
                    "copy_router_cosine": d["copy_router_cosine"],
                    "co_selection": c,
                }
            )
        final[label] = [r.loss_at_budget for r in runs]
        summary.append(
            [
                label,
                fmt_mean_std([r.start_val_loss for r in runs]),
                fmt_mean_std(final[label]),
                fmt_mean_std([d["copy_weight_cosine"] for d in div]),
                fmt_mean_std([d["copy_router_cosine"] for d in div]),
                fmt_mean_std(co, 3),
                *heldout_cells(runs),
            ]
        )
        curves[label] = _mean_curve(runs, store.chinchilla_flops)
    out.tables.append(
        Table(
            f"Width x2 (experts and top-k) from the {s.late:g} x F_c base, {s.extra_fc:g} x F_c "
            f"extra (mean ± std over {len(seeds)} seeds); specialisation measured after "
            f"training; held-out: {s.heldout_tokens} validation tokens",
            [
                "new experts",
                "loss right after growth",
                "loss at budget",
                "copy/original weight cosine",
                "copy/original router-row cosine",
                "co-selection (both chosen / either chosen)",
                *HELDOUT_COLUMNS,
            ],
            summary,
        )
    )
    ref = final["alpha=0.01"]
    out.tables.append(
        Table(
            "Each variant minus alpha = 0.01 (positive: alpha = 0.01 better)",
            [
                "variant",
                GAP_COLUMN,
                "std of gap",
                "seeds where alpha = 0.01 wins",
                "held-out loss: variant - alpha 0.01 [95 % t-interval]",
            ],
            [
                _gap_row(k, v, ref) + [heldout_gap(arms[k], arms["alpha=0.01"])]
                for k, v in final.items()
                if k != "alpha=0.01"
            ],
        )
    )
    _add_group_table(out, "Noise", arms)
    out.plots.append(
        _loss_curves(
            "noise-curves.png", "validation loss after width growth (mean over seeds)", curves
        )
    )
    return out


# -- 3 -------------------------------------------------------------------------------------------


def routing(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "routing",
        "Width growth: doubling experts and top-k",
        "Doubling E and k together > E only > (eventually) k only; k only is competitive early "
        "but converges slower.",
    )
    base = store.base(s.late)
    k = _router(base.path).top_k
    variants = [
        ("E x2 and k x2", GrowthSpec(width=2, top_k="scale")),
        ("E x2 only", GrowthSpec(width=2, top_k="keep")),
        ("k x2 only", GrowthSpec(width=1, top_k=2 * k)),
    ]
    summary, curves, arms = [], {}, {}
    for label, spec in variants:
        runs = _seeded(store, base, spec, s.extra_fc, seeds, f"[routing] {label}")
        arms[label] = runs
        for seed, r in zip(seeds, runs):
            out.rows.append(
                _run_row(r, seed, variant=label) | {"val_loss_at_half_budget": _at(r, 0.5)}
            )
        summary.append(
            [
                label,
                fmt_mean_std([r.start_val_loss for r in runs]),
                fmt_mean_std([_at(r, 0.5) for r in runs]),
                fmt_mean_std([r.loss_at_budget for r in runs]),
                *heldout_cells(runs),
            ]
        )
        curves[label] = _mean_curve(runs, store.chinchilla_flops)
    out.tables.append(
        Table(
            f"From the {s.late:g} x F_c base (top-{k}), {s.extra_fc:g} x F_c extra FLOPs, "
            f"noise 0.01 (mean ± std over {len(seeds)} seed(s)); held-out: "
            f"{s.heldout_tokens} validation tokens",
            [
                "growth",
                "loss right after growth",
                "loss at half the budget",
                "loss at budget",
                *HELDOUT_COLUMNS,
            ],
            summary,
        )
    )
    loss = {label: [r.loss_at_budget for r in runs] for label, runs in arms.items()}
    half = {label: [_at(r, 0.5) for r in runs] for label, runs in arms.items()}
    both, e_only, k_only = (label for label, _ in variants)
    gaps = []
    for worse, better in ((e_only, both), (k_only, both), (k_only, e_only)):
        for at, values in (("budget", loss), ("half the budget", half)):
            name, *cells = _gap_row(f"{worse} minus {better}", values[worse], values[better])
            gaps.append([name, at, *cells])
    out.tables.append(
        Table(
            "Paired gaps at the budget and at half of it (positive: the second arm better)",
            ["comparison", "at", GAP_COLUMN, "std of gap", "seeds where the second arm wins"],
            gaps,
        )
    )
    _add_group_table(out, "Routing", arms)
    out.plots.append(
        _loss_curves("routing-curves.png", "validation loss after width growth", curves)
    )
    return out


def _at(r: RunResult, fraction: float) -> float:
    from moegrow.experiments.curves import loss_at

    value = loss_at(r.curve, fraction * r.budget_flops)
    return value if value is not None else float("nan")


# -- 4 -------------------------------------------------------------------------------------------

SUNK_COST_GROWTH = GrowthSpec(depth=2)


def sunk_cost(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "sunk-cost",
        "Sunk cost: growing checkpoints taken later in the base run",
        "With a fixed extra budget, the final accuracy rises with the sunk cost (3B: scratch "
        "38.79; grown from 8k steps 42.07 ... 88k 48.99; annealed 96k 48.52): returns diminish "
        "in the annealing phase.",
    )
    table, xs, phases = [], [], []
    # mean final loss per checkpoint, by reading (nan where a reading is missing)
    points: dict[str, list[float]] = {"constant LR": [], "annealed": []}
    scatter: dict[str, list] = {}
    arms: dict[str, list[RunResult]] = {}
    grown_shape = None
    budget = (s.extra_fc,)
    for point in s.points:
        base = store.base(point)
        phase = "decay" if point > s.decay_start + 1e-9 else "constant-LR"
        label = f"[sunk-cost] from {point:g} x F_c"
        runs = [
            store.grown(
                base, SUNK_COST_GROWTH, s.extra_fc, seed, f"{label}, seed {seed}", cooldowns=budget
            )
            for seed in seeds
        ]
        cooled = [
            annealed_run(store, r, s.extra_fc, f"{label}, seed {seed}", out.notes)
            for seed, r in zip(seeds, runs)
        ]
        grown_shape = grown_shape or {
            "num_hidden_layers": _config(runs[0].final)["num_hidden_layers"]
        }
        arms[f"from {point:g} x F_c"] = runs
        final, annealed = [r.loss_at_budget for r in runs], losses_of(cooled)
        for seed, r, c in zip(seeds, runs, cooled):
            out.rows.append(
                _run_row(r, seed, base_fc=point, phase=phase)
                | {"base_val_loss": base.val_loss}
                | annealed_row(c)
            )
        xs.append(runs[0].sunk_flops)
        phases.append(phase)
        points["constant LR"].append(sum(final) / len(final))
        points["annealed"].append(float("nan") if annealed is None else mean_std(annealed)[0])
        for reading, ys in points.items():
            scatter.setdefault(f"{phase} phase, {reading}", []).append(
                (_fc(store, runs[0].sunk_flops), ys[-1])
            )
        table.append(
            [
                f"{point:g}",
                phase,
                f"{_fc(store, runs[0].sunk_flops):.2f}",
                f"{base.val_loss:.4f}",
                fmt_mean_std(final),
                fmt_losses(annealed),
                *heldout_cells(runs),
            ]
        )
    scratch, scratch_cooled = [], []
    for seed in seeds:
        label = f"[sunk-cost] scratch, seed {seed}"
        r = store.scratch(grown_shape or {}, s.extra_fc, seed, label, cooldowns=budget)
        scratch.append(r)
        scratch_cooled.append(annealed_run(store, r, s.extra_fc, label, out.notes))
    arms["scratch"] = scratch
    for seed, r, c in zip(seeds, scratch, scratch_cooled):
        out.rows.append(
            {
                "base_fc": 0,
                "phase": "scratch",
                "seed": seed,
                "sunk_flops": 0.0,
                "extra_flops": r.extra_flops,
                "val_loss_at_budget": r.loss_at_budget,
                **heldout_row(r),
                **annealed_row(c),
            }
        )
    table.append(
        [
            "scratch",
            "-",
            "0",
            "-",
            fmt_mean_std([r.loss_at_budget for r in scratch]),
            fmt_losses(losses_of(scratch_cooled)),
            *heldout_cells(scratch),
        ]
    )
    out.tables.append(
        Table(
            f"Interposition x2 with {s.extra_fc:g} x F_c extra FLOPs from each checkpoint of one "
            f"base run (WSD: decay from {s.decay_start:g} x F_c); scratch: the grown shape, same "
            f"budget. Annealed: a cooldown branch (LR linear to {s.cooldown_min_ratio:g} x peak "
            f"over the last {s.cooldown_fraction:.0%} of the budget); held-out: the constant-LR "
            f"final model on {s.heldout_tokens} validation tokens",
            [
                "checkpoint (x F_c)",
                "phase",
                "sunk / F_c",
                "base val loss",
                "grown loss at budget, constant LR",
                "grown loss at budget, annealed",
                *HELDOUT_COLUMNS,
            ],
            table,
        )
    )
    corr = []
    for reading, ys in points.items():
        for subset in ("all checkpoints", "constant-LR phase only"):
            keep = [
                i
                for i, p in enumerate(phases)
                if (subset == "all checkpoints" or p == "constant-LR") and ys[i] == ys[i]
            ]
            if len(keep) >= 2:
                x, y = [xs[i] for i in keep], [ys[i] for i in keep]
                corr.append(
                    [reading, subset, len(keep), f"{pearson(x, y):+.3f}", f"{spearman(x, y):+.3f}"]
                )
    out.tables.append(
        Table(
            "Correlation of the grown model's final loss with the sunk FLOPs (negative: more "
            "sunk compute, lower loss)",
            ["reading", "points", "n", "Pearson", "Spearman"],
            corr,
        )
    )
    _add_group_table(out, "Sunk cost (constant LR)", arms)
    scatter["scratch (grown shape), constant LR"] = [
        (0.0, mean_std([r.loss_at_budget for r in scratch])[0])
    ]
    scratch_annealed = losses_of(scratch_cooled)
    if scratch_annealed is not None:
        scatter["scratch (grown shape), annealed"] = [(0.0, mean_std(scratch_annealed)[0])]
    out.plots.append(
        Plot(
            "sunk-cost.png",
            "scatter",
            f"final loss after {s.extra_fc:g} x F_c extra FLOPs vs sunk FLOPs",
            {k: [p for p in v if p[1] == p[1]] for k, v in scatter.items()},
            "sunk FLOPs / F_c",
            "validation loss at budget",
        )
    )
    return out


# -- 5 -------------------------------------------------------------------------------------------


def total_budget(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "total-budget",
        "Fixed total budget: when to grow",
        "With a fixed total budget, growing early-to-mid (best at 16k of 96k steps) beats "
        "scratch (48.53 vs 45.03 end accuracy at 3B); very late growth loses.",
    )
    table = []
    shape = None
    arms: dict[str, list[RunResult]] = {}
    constant: dict[str, list[float]] = {}
    annealed: dict[str, list[float] | None] = {}
    for point in s.total_points:
        base = store.base(point)
        extra_fc = s.total_fc - _fc(store, base.sunk_flops)
        label = f"[total-budget] at {point:g} x F_c"
        runs = [
            store.grown(
                base,
                SUNK_COST_GROWTH,
                extra_fc,
                seed,
                f"{label}, seed {seed}",
                cooldowns=(extra_fc,),
            )
            for seed in seeds
        ]
        cooled = [
            annealed_run(store, r, extra_fc, f"{label}, seed {seed}", out.notes)
            for seed, r in zip(seeds, runs)
        ]
        shape = shape or {"num_hidden_layers": _config(runs[0].final)["num_hidden_layers"]}
        for seed, r, c in zip(seeds, runs, cooled):
            out.rows.append(
                {
                    "growth_point_fc": point,
                    "seed": seed,
                    "sunk_flops": r.sunk_flops,
                    "extra_flops": r.extra_flops,
                    "total_flops": r.sunk_flops + r.budget_flops,
                    "val_loss_at_total": r.loss_at_budget,
                    **heldout_row(r),
                    **annealed_row(c),
                }
            )
        tag = f"grow at {point:g} x F_c"
        arms[tag] = runs
        constant[tag], annealed[tag] = [r.loss_at_budget for r in runs], losses_of(cooled)
        table.append(
            [
                tag,
                f"{_fc(store, base.sunk_flops):.2f}",
                f"{extra_fc:.2f}",
                fmt_mean_std(constant[tag]),
                fmt_losses(annealed[tag]),
                *heldout_cells(runs),
            ]
        )
    scratch, scratch_cooled = [], []
    for seed in seeds:
        label = f"[total-budget] scratch, seed {seed}"
        r = store.scratch(shape or {}, s.total_fc, seed, label, cooldowns=(s.total_fc,))
        scratch.append(r)
        scratch_cooled.append(annealed_run(store, r, s.total_fc, label, out.notes))
    for seed, r, c in zip(seeds, scratch, scratch_cooled):
        out.rows.append(
            {
                "growth_point_fc": "scratch",
                "seed": seed,
                "sunk_flops": 0.0,
                "extra_flops": r.extra_flops,
                "total_flops": r.budget_flops,
                "val_loss_at_total": r.loss_at_budget,
                **heldout_row(r),
                **annealed_row(c),
            }
        )
    tag = "scratch (grown shape)"
    arms[tag] = scratch
    constant[tag], annealed[tag] = [r.loss_at_budget for r in scratch], losses_of(scratch_cooled)
    table.append(
        [
            tag,
            "0",
            f"{s.total_fc:.2f}",
            fmt_mean_std(constant[tag]),
            fmt_losses(annealed[tag]),
            *heldout_cells(scratch),
        ]
    )
    if s.total_fc in s.points:
        base = store.base(s.total_fc)
        phase = "decay" if s.total_fc > s.decay_start + 1e-9 else "constant-LR"
        table.append(
            [
                f"no growth (the base run itself, {phase} phase)",
                f"{s.total_fc:.2f}",
                "0",
                f"{base.val_loss:.4f}",
                "-",
                "-",
                "-",
            ]
        )
    out.tables.append(
        Table(
            f"Total budget {s.total_fc:g} x F_c (base + grown training), interposition x2. "
            f"Annealed: a cooldown branch over the last {s.cooldown_fraction:.0%} of the grown "
            f"(or scratch) training, LR linear to {s.cooldown_min_ratio:g} x peak; held-out: "
            f"the constant-LR final model on {s.heldout_tokens} validation tokens",
            [
                "run",
                "base FLOPs / F_c",
                "grown FLOPs / F_c",
                "val loss at the total budget, constant LR",
                "annealed",
                *HELDOUT_COLUMNS,
            ],
            table,
        )
    )
    gaps = []
    grown = [t for t in constant if t.startswith("grow at")]
    for t in grown:
        for reading, values in (("constant LR", constant), ("annealed", annealed)):
            a, b = values["scratch (grown shape)"], values[t]
            if a is not None and b is not None:
                name, *cells = _gap_row(f"scratch minus {t}", a, b)
                gaps.append([name, reading, *cells])
    out.tables.append(
        Table(
            "Scratch minus each growth point (positive: growing there better)",
            ["comparison", "reading", GAP_COLUMN, "std of gap", "seeds where growing wins"],
            gaps,
        )
    )
    _add_group_table(out, "Total budget (constant LR)", arms)
    return out


# -- 6 -------------------------------------------------------------------------------------------


def order(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "order",
        "Orthogonality: depth-then-width vs width-then-depth",
        "Both orders reach the same accuracy (weight cosine > 0.82 between the two paths); depth "
        "and width updates stay nearly orthogonal (|cos| of Adam first moments < 0.04).",
    )
    base = store.base(s.late)
    half = s.extra_fc / 2
    depth, width = GrowthSpec(depth=2), GrowthSpec(width=2)
    # both paths start from this point, up to their noise: the base grown both ways exactly
    exact = _exact_growth(store, base.path, GrowthSpec(depth=2, width=2, noise=0.0))
    table = []
    finals: dict[str, list[RunResult]] = {"depth then width": [], "width then depth": []}
    cosines: dict[str, list[float]] = {}
    for seed in seeds:
        d1 = store.grown(base, depth, half, seed, f"[order] depth first, seed {seed}")
        dw = store.grown(d1.as_source(), width, half, seed, f"[order] then width, seed {seed}")
        w1 = store.grown(base, width, half, seed, f"[order] width first, seed {seed}")
        wd = store.grown(w1.as_source(), depth, half, seed, f"[order] then depth, seed {seed}")
        weights = weight_cosine(dw.final, wd.final)
        updates = weight_cosine(dw.final, wd.final, reference=exact)
        moments = moment_cosine(d1.final, w1.final, lambda j: j // 2)
        # the base's last update direction against each grown model's after stage 1 (their
        # optimizers start fresh at growth): does growth turn the updates away from it?
        from_base = {
            "depth": moment_cosine(d1.final, base.path, lambda j: j // 2),
            "width": moment_cosine(base.path, w1.final),
        }
        finals["depth then width"].append(dw)
        finals["width then depth"].append(wd)
        for name, value in (
            ("weight cosine, global", weights["global"]),
            ("update cosine, global", updates["global"]),
            ("Adam m cosine, global", moments["global"]),
            ("Adam m mean |cos| per tensor", moments["mean_abs_per_tensor"]),
            *(
                (f"Adam m cosine, base vs {axis}-grown, {how}", m[key])
                for axis, m in from_base.items()
                for how, key in (("global", "global"), ("mean |cos|", "mean_abs_per_tensor"))
            ),
        ):
            cosines.setdefault(name, []).append(value)
        out.rows.append(
            {
                "seed": seed,
                "depth_then_width_loss": dw.loss_at_budget,
                "width_then_depth_loss": wd.loss_at_budget,
                "extra_flops_depth_then_width": d1.extra_flops + dw.extra_flops,
                "extra_flops_width_then_depth": w1.extra_flops + wd.extra_flops,
                "weight_cosine_global": weights["global"],
                "weight_cosine_mean_per_tensor": weights["mean_per_tensor"],
                "update_cosine_global": updates["global"],
                "update_cosine_mean_per_tensor": updates["mean_per_tensor"],
                "adam_m_cosine_global": moments["global"],
                "adam_m_abs_cosine_mean_per_tensor": moments["mean_abs_per_tensor"],
                "adam_m_abs_cosine_max_per_tensor": moments["max_abs_per_tensor"],
                "shared_tensors": moments["tensors"],
                **{
                    f"adam_m_cosine_base_vs_{axis}_{key}": m[key]
                    for axis, m in from_base.items()
                    for key in ("global", "mean_abs_per_tensor")
                },
                **heldout_row(dw, "depth_then_width_heldout"),
                **heldout_row(wd, "width_then_depth_heldout"),
            }
        )
        table.append(
            [
                seed,
                f"{dw.loss_at_budget:.4f}",
                f"{wd.loss_at_budget:.4f}",
                f"{weights['global']:.3f} / {weights['mean_per_tensor']:.3f}",
                f"{updates['global']:.3f} / {updates['mean_per_tensor']:.3f}",
                f"{moments['global']:+.3f} / {moments['mean_abs_per_tensor']:.3f} / "
                f"{moments['max_abs_per_tensor']:.3f}",
            ]
        )
    out.tables.append(
        Table(
            f"From the {s.late:g} x F_c base: grow one way, train {half:g} x F_c, grow the other "
            f"way, train {half:g} x F_c (equal extra FLOPs per path)",
            [
                "seed",
                "depth then width: loss",
                "width then depth: loss",
                "weight cosine of the two final models (global / mean per tensor)",
                "cosine of their updates from the base grown both ways exactly (global / mean "
                "per tensor)",
                "Adam m cosine, depth-grown vs width-grown after stage 1 (global / mean |cos| "
                "/ max |cos|)",
            ],
            table,
        )
    )
    dw_runs, wd_runs = finals["depth then width"], finals["width then depth"]
    out.tables.append(
        Table(
            f"Over {len(seeds)} seed(s): losses and held-out scores ({s.heldout_tokens} "
            "validation tokens) of the two paths, their paired gap, and the cosines",
            ["quantity", "value"],
            [
                [
                    "depth then width: loss at budget",
                    fmt_mean_std([r.loss_at_budget for r in dw_runs]),
                ],
                [
                    "width then depth: loss at budget",
                    fmt_mean_std([r.loss_at_budget for r in wd_runs]),
                ],
                [
                    f"depth-then-width minus width-then-depth ({GAP_COLUMN})",
                    fmt_interval(
                        [r.loss_at_budget for r in dw_runs], [r.loss_at_budget for r in wd_runs]
                    ),
                ],
                *(
                    [f"{path}: {column}", cell]
                    for path, runs in finals.items()
                    for column, cell in zip(HELDOUT_COLUMNS, heldout_cells(runs))
                ),
                *([name, fmt_mean_std(values, 3)] for name, values in cosines.items()),
                *_moment_drift(store, base),
            ],
        )
    )
    _add_group_table(out, "Order", finals)
    return out


def _moment_drift(store: RunStore, base: Source) -> list[list[str]]:
    """What the moment cosines are to be read against: the base run's own Adam first moments at
    the growth point against those at the point before it (no growth in between)."""
    s = store.scale
    earlier = max((p for p in s.points if p < s.late), default=None)
    if earlier is None:
        return []
    drift = moment_cosine(store.base(earlier).path, base.path)
    return [
        [
            f"calibration: Adam m cosine of the base at {earlier:g} vs at {s.late:g} x F_c "
            "(global / mean |cos| per tensor)",
            f"{drift['global']:+.3f} / {drift['mean_abs_per_tensor']:.3f}",
        ]
    ]


def _exact_growth(store: RunStore, source: Path, spec: GrowthSpec) -> Path:
    """``source`` grown by ``spec`` (deterministic: cached in the store's root by name)."""
    from moegrow.experiments.repro.runs import digest, growth_key
    from moegrow.growth.grow import grow

    folder = store.root / "exact" / f"{source.parent.parent.name}-{source.name}-"
    folder = folder.with_name(folder.name + digest(growth_key(spec)))
    if not folder.is_dir():
        grow(source, folder, spec, progress=False)
    return folder


# -- 7 -------------------------------------------------------------------------------------------


def post_norm(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        "post-norm",
        "Width growth on pre-norm and post-norm transformers",
        "Width growth with noise is claimed stable across pre-norm and post-norm transformers "
        "(no post-norm numbers were recoverable from the paper).",
    )
    table, curves, gaps = [], {}, []
    arms: dict[str, list[RunResult]] = {}
    for norm in ("pre", "post"):
        base = store.base(s.mid, norm)
        final: dict[float, list[float]] = {}
        for alpha in (0.0, 0.01):
            runs = _seeded(
                store,
                base,
                GrowthSpec(width=2, noise=alpha),
                s.extra_fc,
                seeds,
                f"[post-norm] {norm}-norm, alpha {alpha:g}",
            )
            arms[f"{norm}-norm, alpha {alpha:g}"] = runs
            final[alpha] = [r.loss_at_budget for r in runs]
            spikes = [loss_spike(r.train_losses, base.loss_level) for r in runs]
            recovery = [recovery_steps(r.train_losses, base.loss_level) for r in runs]
            for seed, r, sp, rec in zip(seeds, runs, spikes, recovery):
                out.rows.append(
                    _run_row(r, seed, norm=norm, alpha=alpha)
                    | {
                        "base_val_loss": base.val_loss,
                        "base_train_loss_level": base.loss_level,
                        "train_loss_spike": sp,
                        "recovery_steps": rec,
                        "steps": r.steps,
                    }
                )
            table.append(
                [
                    f"{norm}-norm",
                    f"{alpha:g}",
                    f"{base.val_loss:.4f}",
                    fmt_mean_std([r.start_val_loss - base.val_loss for r in runs]),
                    fmt_mean_std(spikes),
                    ", ".join("never" if x is None else str(x) for x in recovery)
                    + f" (of {runs[0].steps})",
                    fmt_mean_std([r.loss_at_budget for r in runs]),
                    *heldout_cells(runs),
                ]
            )
            curves[f"{norm}-norm, alpha {alpha:g}"] = [
                (i + 1, v) for i, v in enumerate(runs[0].train_losses)
            ]
        name, *cells = _gap_row(f"{norm}-norm: alpha 0 minus alpha 0.01", final[0.0], final[0.01])
        gaps.append([name, *cells])
    out.tables.append(
        Table(
            f"Width x2 from {s.mid:g} x F_c bases, {s.extra_fc:g} x F_c extra FLOPs (mean ± std "
            f"over {len(seeds)} seed(s)); held-out: {s.heldout_tokens} validation tokens",
            [
                "base",
                "alpha",
                "base val loss",
                "val loss jump at growth",
                "train-loss spike over the base's level (running mean of 5, first 20 steps)",
                "steps until the running mean is back at that level",
                "loss at budget",
                *HELDOUT_COLUMNS,
            ],
            table,
        )
    )
    out.tables.append(
        Table(
            "alpha = 0 minus alpha = 0.01 on each base (positive: alpha = 0.01 better)",
            ["comparison", GAP_COLUMN, "std of gap", "seeds where alpha = 0.01 wins"],
            gaps,
        )
    )
    _add_group_table(out, "Post-norm", arms)
    out.plots.append(
        Plot(
            "post-norm-train-loss.png",
            "curves",
            "training loss after width growth (first seed)",
            curves,
            "step after growth",
            "training loss",
        )
    )
    return out


EXPERIMENTS: dict[str, Callable[[RunStore, list[int]], Outcome]] = {
    "depth-method": depth_method,
    "noise": noise,
    "routing": routing,
    "sunk-cost": sunk_cost,
    "total-budget": total_budget,
    "order": order,
    "post-norm": post_norm,
}

#: Seeds when ``--seeds`` is not given: 3 where gaps are compared, else 1.
DEFAULT_SEEDS = {
    **dict.fromkeys(("depth-method", "noise", "routing", "order", "post-norm"), 3),
    **dict.fromkeys(CAMPAIGN_NAMES, 3),
    **dict.fromkeys(EXTRA_NAMES, 3),
}
