"""Gaussian samples per second of the growth samplers on one core.

Both fill a float32 buffer of one compute chunk (``CHUNK_ELEMENTS``) with N(0, sigma^2) samples,
as a noised chunk does: the ``table`` sampler (counter-based hash through a table of normal
quantiles) and the ``torch`` sampler (``Tensor.normal_`` from a seeded generator). Also times
the rest of a noised chunk (bf16 in, float32 sum, bf16 out) so that the sampler's share shows.
Rounds alternate between the samplers; the medians and their ratio are printed.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/sampler.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from moegrow.growth.operators import CHUNK_ELEMENTS, noise_seed
from moegrow.growth.sampler import TableSampler, stream_key


def rate(fn, n: int, repeat: int) -> float:
    """Samples (elements) per second of ``fn``, best of ``repeat`` calls after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per round (default 5)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n = CHUNK_ELEMENTS
    buf = torch.empty(n, dtype=torch.float32)
    x = torch.randn(n).bfloat16()
    out = torch.empty(n, dtype=torch.bfloat16)
    y = torch.empty(n, dtype=torch.float32)
    table = TableSampler()
    key = stream_key(0, "model.layers.0.mlp.experts.8.w1.weight", 1)
    runs = {
        "table": lambda: table.fill(buf.numpy(), key, 0, 0.01),
        "torch": lambda: buf.normal_(
            0.0, 0.01, generator=torch.Generator().manual_seed(noise_seed(0, "w", 1, 0))
        ),
        "rest of a chunk (add, round to bf16)": lambda: out.copy_(y.copy_(x).add_(buf)),
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            samples[name].append(rate(fn, n, args.repeat))
    print(f"one core, chunks of {n} float32 samples, {args.rounds} rounds (median [min, max]):")
    for name, rates in samples.items():
        med = statistics.median(rates)
        print(
            f"  {name:<38} {med / 1e6:7.0f} M/s  [{min(rates) / 1e6:.0f}, {max(rates) / 1e6:.0f}]"
        )
    ratios = [a / b for a, b in zip(samples["table"], samples["torch"])]
    print(
        f"table / torch: {statistics.median(ratios):.2f} x "
        f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
