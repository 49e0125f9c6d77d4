"""``moegrow demo``: grow and verify a small MoE checkpoint end to end, on a CPU, in seconds.

It makes a small randomly initialised Qwen3-MoE-style checkpoint with transformers, then shows
the whole growth workflow on it: plan, an exactly function-preserving growth (zero-initialised
depth copies, noiseless width copies) checked by ``verify``, the paper's growth (interposition
x2 and width x2 with relative noise 0.01), and the weight-norm profiles of both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from moegrow.checkpoint import Checkpoint
from moegrow.families import family_for
from moegrow.grow import grow
from moegrow.norms import norm_profile, plot_profile
from moegrow.plan import make_plan
from moegrow.report import plan_summary, render_plan
from moegrow.spec import GrowthSpec
from moegrow.verify import verify

#: The demo's base model: Qwen3-MoE layout (pre-norm RMSNorm, QK-norm, GQA, RoPE, SwiGLU
#: experts, softmax top-k router with renormalisation), small enough for a CPU.
DEMO_CONFIG = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    moe_intermediate_size=64,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    num_experts=8,
    num_experts_per_tok=2,
    norm_topk_prob=True,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


def make_base(path: Path, seed: int = 0) -> Path:
    """Write a randomly initialised demo checkpoint to ``path``."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**DEMO_CONFIG))
    model.save_pretrained(path)
    return path


def run_demo(out: str | Path, *, seed: int = 0, overwrite: bool = False) -> dict:
    """Run the demo into folder ``out``; returns the numbers it printed."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out = Path(out)
    if out.exists():
        if not overwrite:
            from moegrow.errors import MoegrowError

            raise MoegrowError(f"{out}: already exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)

    print(f"[1/5] base checkpoint -> {out / 'base'}")
    base = make_base(out / "base", seed)

    print("[2/5] plan: interposition x2 + width x2")
    paper = GrowthSpec(depth=2, width=2, noise=0.01, seed=seed)
    with Checkpoint(base) as ckpt:
        print(render_plan(plan_summary(make_plan(ckpt, paper))))

    print("[3/5] exact growth (--zero-init, --noise 0) and verify")
    exact = GrowthSpec(depth=2, width=2, noise=0.0, zero_init=True, seed=seed)
    grow(base, out / "grown-exact", exact)
    r_exact = verify(base, out / "grown-exact")
    print(f"  max |delta logits| {r_exact.max_abs_diff:.2e} (expected exact: {r_exact.ok})")

    print("[4/5] the paper's growth (plain copies, noise 0.01) and verify")
    grow(base, out / "grown", paper)
    r_paper = verify(base, out / "grown")
    print(f"  max |delta logits| {r_paper.max_abs_diff:.2e}, KL(source || grown) {r_paper.kl:.2e}")

    print("[5/5] weight-norm profiles")
    profiles = {}
    for name in ("base", "grown"):
        with Checkpoint(out / name) as ckpt:
            profiles[name] = norm_profile(ckpt, family_for(ckpt.config))
    plot = out / "norm_profile.png"
    plot_profile(profiles, str(plot))
    print(f"  wrote {plot}")

    result = {
        "exact_max_abs_diff": r_exact.max_abs_diff,
        "exact_ok": r_exact.ok,
        "paper_max_abs_diff": r_paper.max_abs_diff,
        "paper_kl": r_paper.kl,
    }
    print(
        "\ndemo done: exact growth |delta| = "
        f"{r_exact.max_abs_diff:.1e}; paper growth KL = {r_paper.kl:.1e}. Outputs in {out}"
    )
    return result
