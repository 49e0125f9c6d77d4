"""Comparing training runs at equal FLOPs: interpolation on validation-loss curves.

A curve is a list of ``(flops, val_loss)`` points in increasing FLOPs. Losses between two
evaluations are interpolated linearly in FLOPs, or with ``log=True`` linearly in log-FLOPs
(loss curves are closer to straight lines there; a segment that starts at 0 FLOPs stays
linear); nothing is extrapolated past the last point.
"""

from __future__ import annotations

import math


def _between(f0: float, f1: float, t: float, log: bool) -> float:
    """The point a fraction ``t`` of the way from ``f0`` to ``f1`` (geometrically if ``log``)."""
    if log and f0 > 0:
        return math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))
    return f0 + t * (f1 - f0)


def flops_to_reach(
    curve: list[tuple[float, float]], target: float, *, log: bool = False
) -> float | None:
    """FLOPs at which the curve first reaches ``target`` loss (None if it never does)."""
    for i, (flops, loss) in enumerate(curve):
        if loss <= target:
            if i == 0:
                return flops
            f0, l0 = curve[i - 1]
            return _between(f0, flops, (l0 - target) / (l0 - loss), log)
    return None


def loss_at(curve: list[tuple[float, float]], flops: float, *, log: bool = False) -> float | None:
    """Interpolated loss at ``flops`` (None outside the curve)."""
    for (f0, l0), (f1, l1) in zip(curve, curve[1:]):
        if f0 <= flops <= f1:
            if f1 == f0:
                return l0
            if log and f0 > 0:
                t = (math.log(flops) - math.log(f0)) / (math.log(f1) - math.log(f0))
            else:
                t = (flops - f0) / (f1 - f0)
            return l0 + (l1 - l0) * t
    if curve and math.isclose(curve[-1][0], flops):
        return curve[-1][1]
    return None


def compute_multiplier(
    scratch: list[tuple[float, float]],
    grown_final_loss: float,
    grown_extra_flops: float,
    *,
    log: bool = False,
) -> float | None:
    """FLOPs the scratch run needs to reach the grown run's final loss, divided by the grown
    run's extra FLOPs; None when the scratch run never reaches it (report "> budget")."""
    needed = flops_to_reach(scratch, grown_final_loss, log=log)
    return None if needed is None else needed / grown_extra_flops


def describe_multiplier(value: float | None, scratch_budget: float, grown_extra: float) -> str:
    if value is None:
        return f"> {scratch_budget / grown_extra:.2f} (scratch never reached it within its budget)"
    return f"{value:.2f}"
