"""Measured peak matmul throughput: the denominator of model FLOPs utilisation (MFU).

Nominal peaks of CPUs are rarely known and never reached by PyTorch, so MFU is reported against
what square matmuls of the same dtype achieve on the same device in the same process.
"""

from __future__ import annotations

import time

import torch


def measured_matmul_peak(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int | None = None,
    seconds: float = 0.5,
) -> float:
    """Best FLOP/s of ``size`` x ``size`` matmuls over about ``seconds`` (default size: 1024
    on a CPU; 8192 on a GPU, which smaller products leave partly idle)."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    # A private generator: measuring must not move the global RNG a training run relies on.
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    flops = 2.0 * size**3
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        _sync(device)
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = max(best, 4 * flops / (time.perf_counter() - t))
        if time.perf_counter() > deadline:
            return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
