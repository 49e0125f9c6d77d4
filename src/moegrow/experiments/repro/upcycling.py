"""``upcycle``: recycle a dense checkpoint into an MoE, against the two things the same extra
FLOPs could buy instead.

A base of the scale preset's dense twin (Qwen3, MLP as wide as the MoE's activated width) is
trained with moegrow's own ``train`` to the scale's ``upcycle_point`` (else ``late``); then,
with equal extra FLOPs (each model's FLOPs per token from its ledger, so the MoE sees fewer
tokens than the dense model):

- **upcycled**: ``moegrow upcycle`` to 8 experts top-2 (copies of the dense MLP, noise 0.01 on
  copies 2..8, random router rows), trained like a grown run (fresh optimizer, short warm-up,
  constant LR; the load-balancing coefficient of the scratch MoE, which an upcycled config does
  not carry);
- **dense continued**: the dense checkpoint trained on the same way;
- **MoE from scratch**: a freshly initialised MoE of the upcycled shape, same extra budget.

Each arm runs ``2 x extra_fc`` and is read at a quarter, half and all of it at its constant LR
(its curve), and at half and all of it annealed (a cooldown branch). A seed sets the training
data order (all arms of a seed see the same batches), the upcycling noise and router rows, and
the scratch model's initialisation; the dense base is shared, so the tables pair the arms seed
by seed.
"""

from __future__ import annotations

from moegrow.experiments.repro.experiments import (
    GAP_COLUMN,
    Outcome,
    Table,
    _config,
    _gap_row,
    _loss_curves,
    _mean_curve,
)
from moegrow.experiments.repro.runs import RunResult, RunStore
from moegrow.experiments.repro.stats import fmt_mean_std
from moegrow.growth.upcycle_spec import UpcycleSpec
from moegrow.modeling.presets import ROUTER_AUX_LOSS_COEF

NAME = "upcycle"
PAPER = (
    "Not one of the paper's findings (it grows MoEs): sparse upcycling (Komatsuzaki et al., "
    "2023) reports that an MoE upcycled from a dense checkpoint beats continuing the dense model "
    "at equal extra compute, and beats an MoE trained from scratch unless that gets far more "
    "compute than the dense checkpoint's sunk cost."
)
#: The upcycling of every seed (its seed replaced by the run's).
SPEC = UpcycleSpec(experts=8, top_k=2, noise=0.01)
ARMS = ("upcycled", "dense continued", "MoE from scratch")
#: Config keys that give a scratch model the upcycled model's MoE shape.
SHAPE_KEYS = ("num_experts", "num_experts_per_tok", "moe_intermediate_size")


READINGS = ("constant", "annealed")


def horizon(store: RunStore) -> tuple[float, dict[str, tuple[float, ...]]]:
    """The extra budget of every arm and, per reading, the budgets it is read at (x F_c)."""
    h = 2 * store.scale.extra_fc
    return h, {"constant": (0.25 * h, 0.5 * h, h), "annealed": (0.5 * h, h)}


def dense_base(store: RunStore):
    s = store.scale
    return store.base(s.upcycle_point or s.late, dense=True)


def arms(store: RunStore, seed: int) -> dict[str, RunResult]:
    """The three arms of one seed, each trained with the horizon's extra FLOPs."""
    h, budgets = horizon(store)
    dense = dense_base(store)
    cooldowns = budgets["annealed"]
    tag = f"[{NAME}] seed {seed}"
    up = store.upcycled(
        dense,
        SPEC,
        h,
        seed,
        f"{tag}: upcycled",
        cooldowns=cooldowns,
        train={"aux_loss_coef": ROUTER_AUX_LOSS_COEF},
    )
    cont = store.continued(dense, h, seed, f"{tag}: dense continued", cooldowns=cooldowns)
    config = _config(up.folder / "init")
    shape = {k: config[k] for k in SHAPE_KEYS}
    scratch = store.scratch(shape, h, seed, f"{tag}: MoE from scratch", cooldowns=cooldowns)
    return dict(zip(ARMS, (up, cont, scratch)))


def upcycle(store: RunStore, seeds: list[int]) -> Outcome:
    s = store.scale
    out = Outcome(
        NAME, "Upcycling a dense checkpoint vs continuing it vs an MoE from scratch", PAPER
    )
    h, budgets = horizon(store)
    fc = store.chinchilla_flops
    dense = dense_base(store)
    runs: dict[str, list[RunResult]] = {a: [] for a in ARMS}
    readings: dict[tuple[str, str, float], list[float]] = {}
    for seed in seeds:  # seed by seed: an interrupted invocation leaves complete triples
        for arm, run in arms(store, seed).items():
            runs[arm].append(run)
            report = store._report(run.folder / "init")
            for reading in READINGS:
                for b in budgets[reading]:
                    value = _value(store, run, reading, b, f"[{NAME}] {arm}, seed {seed}")
                    readings.setdefault((arm, reading, b), []).append(value)
                    out.rows.append(
                        {
                            "arm": arm,
                            "seed": seed,
                            "budget_fc": b,
                            "reading": reading,
                            "budget_flops": b * fc,
                            "val_loss": value,
                            "sunk_flops": run.sunk_flops,
                            "start_val_loss": run.start_val_loss,
                            "run_extra_flops": run.extra_flops,
                            "run_steps": run.steps,
                            "total_params": report["total_params"],
                            "active_params": report["active_params"],
                            "flops_per_token": report["flops_per_token"],
                        }
                    )
    out.tables.append(_arms_table(store, runs, readings, dense.val_loss))
    gaps = []
    for other in ARMS[1:]:
        for reading in READINGS:
            for b in budgets[reading]:
                label = f"{other}, {b:g} x F_c, {_reading(reading)}"
                ref = readings[("upcycled", reading, b)]
                gaps.append(_gap_row(label, readings[(other, reading, b)], ref))
    out.tables.append(
        Table(
            "Each arm minus upcycled, seed by seed (positive: upcycling better)",
            ["arm, extra budget, reading", GAP_COLUMN, "std of gap", "seeds where upcycled wins"],
            gaps,
        )
    )
    point = s.upcycle_point or s.late
    out.notes.append(
        f"Dense base: the `{s.preset}` preset's dense twin, trained to {point:g} x F_c "
        f"(F_c of the `{s.preset}` MoE, {fc:.3g} FLOPs; WSD, decay from {s.decay_start:g} x F_c): "
        f"sunk {dense.sunk_flops / fc:.2f} x F_c, validation loss {dense.val_loss:.4f}. Every arm "
        f"trains {h:g} x F_c extra at constant LR {s.lr:g} (fresh optimizer, "
        f"{s.grown_warmup_steps}-step warm-up); annealed: a cooldown branch, LR linear to "
        f"{s.cooldown_min_ratio:g} x peak over the last {s.cooldown_fraction:.0%} of the budget. "
        f"Upcycling: {SPEC.experts} experts top-{SPEC.top_k}, copies with noise {SPEC.noise:g}, "
        f"router {SPEC.router}; seeds: {len(seeds)}."
    )
    curves = {a: _mean_curve(runs[a], fc) for a in ARMS}
    title = "validation loss at equal extra FLOPs (mean over seeds; constant LR)"
    out.plots.append(_loss_curves(f"{NAME}-curves.png", title, curves))
    # the scratch MoE starts near ln(vocabulary): without it the two recycled arms are legible
    recycled = {a: curves[a] for a in ARMS[:2]}
    out.plots.append(_loss_curves(f"{NAME}-recycled.png", title + ", recycled arms", recycled))
    return out


def _value(store: RunStore, run: RunResult, reading: str, budget_fc: float, label: str) -> float:
    """``run``'s loss at ``budget_fc`` x F_c: on its curve, or after a cooldown there."""
    from moegrow.experiments.curves import loss_at

    if reading == "annealed":
        return store.cooldown(
            run, budget_fc, f"{label}, cooldown at {budget_fc:g} x F_c"
        ).loss_at_budget
    value = loss_at(run.curve, budget_fc * store.chinchilla_flops)
    return run.loss_at_budget if value is None else value


def _reading(reading: str) -> str:
    return "annealed" if reading == "annealed" else "constant LR"


def _arms_table(store: RunStore, runs: dict, readings: dict, dense_loss: float) -> Table:
    h, budgets = horizon(store)
    rows = []
    for arm in ARMS:
        first = runs[arm][0]
        report = store._report(first.folder / "init")
        tokens = first.steps * first.tokens_per_step
        row = [
            arm,
            f"{report['total_params'] / 1e3:.0f} K / {report['active_params'] / 1e3:.0f} K",
            f"{report['flops_per_token'] / 1e3:.0f} K",
            f"{tokens / 1e6:.2f} M",
            fmt_mean_std([r.start_val_loss for r in runs[arm]]),
        ]
        for reading in READINGS:
            row += [fmt_mean_std(readings[(arm, reading, b)]) for b in budgets[reading]]
        rows.append(row)
    columns = [
        "arm",
        "params (total / active)",
        "FLOPs per token",
        f"tokens in {h:g} x F_c",
        "loss at the start",
    ]
    for reading in READINGS:
        columns += [f"loss at {b:g} x F_c ({_reading(reading)})" for b in budgets[reading]]
    return Table(
        f"Validation loss at equal extra FLOPs after a dense base at {dense_loss:.4f} (mean ± std "
        "over seeds)",
        columns,
        rows,
    )


UPCYCLE = {NAME: upcycle}
