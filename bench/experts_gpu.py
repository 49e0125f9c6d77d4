"""What precision the MoE experts compute in when ``moegrow train`` uses a GPU, and what it costs.

``moegrow train`` keeps float32 weights and runs the forward pass under bf16 autocast. Autocast
casts the inputs of ``nn.Linear`` layers to bf16, but transformers' ``grouped_mm`` experts
kernel is not autocast-aware: it casts the tokens to the weights' dtype, so the experts - most
of an MoE's FLOPs - run in float32. This benchmark trains a few layers of the ``paper-3b``
preset's shape (hidden 1024, 64 experts of width 768, top-4) on one GPU and compares tokens/s
of forward + backward under bf16 autocast with

* ``fp32``: the experts' matmuls in full float32 (PyTorch's default);
* ``tf32``: the same with TF32 tensor cores allowed for float32 matmuls;
* ``moegrow``: what ``moegrow train`` runs: the autocast-aware kernel of
  :mod:`moegrow.modeling.experts_kernel` (experts in bf16), with TF32 for the remaining float32
  matmuls;
* ``eager``: transformers' per-expert loop (``experts_implementation="eager"``), whose
  ``nn.Linear``-free matmuls also see float32 weights.

MFU is against the bf16 peak of 8192^3 matmuls measured in the same process. Run (about a
minute)::

    python bench/experts_gpu.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from moegrow.flops import ParamStats
from moegrow.modeling import experts_kernel
from moegrow.modeling.presets import config_dict, param_counts
from moegrow.training.perf import measured_matmul_peak


def build(layers: int, experts: str | None, autocast_kernel: bool = False):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = config_dict("paper-3b", vocab_size=8192, overrides={"num_hidden_layers": layers})
    config = AutoConfig.for_model(**cfg)
    kwargs = {"experts_implementation": experts} if experts else {}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **kwargs)
    if autocast_kernel:
        experts_kernel.use_for_training(model)
    return model.cuda().train(), cfg


def flops_per_token(cfg: dict, seq_len: int) -> float:
    """Training FLOPs per token as :mod:`moegrow.flops` counts them (untied embeddings)."""
    counts = param_counts(cfg)
    stats = ParamStats(
        total=counts.total,
        active=counts.active,
        embedding=cfg["vocab_size"] * cfg["hidden_size"],
        tied=False,
        num_layers=cfg["num_hidden_layers"],
        attention_width=cfg["num_attention_heads"] * 2 * cfg["head_dim"],
    )
    return stats.flops_per_token(seq_len)


def step_seconds(model, batch: torch.Tensor, steps: int, warmup: int) -> float:
    times = []
    for i in range(steps + warmup):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", torch.bfloat16):
            out = model(input_ids=batch, labels=batch, use_cache=False)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("experts_gpu.py needs a CUDA GPU")
    peak = measured_matmul_peak("cuda", torch.bfloat16, seconds=2.0)
    batch = torch.randint(0, 8192, (args.batch, args.seq_len), device="cuda")
    tokens = batch.numel()
    rows = []
    variants = (
        ("fp32", None, False, False),
        ("tf32", None, True, False),
        ("moegrow", None, True, True),
        ("eager", "eager", False, False),
    )
    for name, experts, tf32, autocast_kernel in variants:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        model, cfg = build(args.layers, experts, autocast_kernel)
        flops = flops_per_token(cfg, args.seq_len) * tokens
        dt = step_seconds(model, batch, args.steps, args.warmup)
        rows.append((name, model.config._experts_implementation, tokens / dt, flops / dt / peak))
        del model
        torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = False
    print(
        f"{torch.cuda.get_device_name()}; bf16 peak {peak / 1e12:.0f} TFLOP/s; "
        f"paper-3b shape, {args.layers} layers, batch {args.batch} x {args.seq_len}"
    )
    print(f"{'variant':<8}{'experts':>30}{'tok/s':>12}{'MFU':>8}{'x fp32':>8}")
    for name, experts, rate, mfu in rows:
        print(f"{name:<8}{experts:>30}{rate:>12.0f}{mfu:>8.1%}{rate / rows[0][2]:>8.2f}")


if __name__ == "__main__":
    main()
