"""Comparing training runs at equal FLOPs: interpolation on validation-loss curves.

A curve is a list of ``(flops, val_loss)`` points in increasing FLOPs. Losses between two
evaluations are interpolated linearly in FLOPs; nothing is extrapolated past the last point.
"""

from __future__ import annotations

import math


def flops_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """FLOPs at which the curve first reaches ``target`` loss (None if it never does)."""
    for i, (flops, loss) in enumerate(curve):
        if loss <= target:
            if i == 0:
                return flops
            f0, l0 = curve[i - 1]
            return f0 + (flops - f0) * (l0 - target) / (l0 - loss)
    return None


def loss_at(curve: list[tuple[float, float]], flops: float) -> float | None:
    """Interpolated loss at ``flops`` (None outside the curve)."""
    for (f0, l0), (f1, l1) in zip(curve, curve[1:]):
        if f0 <= flops <= f1:
            return l0 if f1 == f0 else l0 + (l1 - l0) * (flops - f0) / (f1 - f0)
    if curve and math.isclose(curve[-1][0], flops):
        return curve[-1][1]
    return None


def compute_multiplier(
    scratch: list[tuple[float, float]], grown_final_loss: float, grown_extra_flops: float
) -> float | None:
    """FLOPs the scratch run needs to reach the grown run's final loss, divided by the grown
    run's extra FLOPs; None when the scratch run never reaches it (report "> budget")."""
    needed = flops_to_reach(scratch, grown_final_loss)
    return None if needed is None else needed / grown_extra_flops


def describe_multiplier(value: float | None, scratch_budget: float, grown_extra: float) -> str:
    if value is None:
        return f"> {scratch_budget / grown_extra:.2f} (scratch never reached it within its budget)"
    return f"{value:.2f}"
