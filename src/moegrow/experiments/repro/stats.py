"""Small statistics for the experiment tables: mean and spread over seeds, paired differences
with Student-t confidence intervals, correlations."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("mean_std of no values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


#: Two-sided 95 % quantiles of Student's t, t_{0.975, df}, for df = 1 .. 30.
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t975(df: int) -> float:
    """t_{0.975, df}; past 30 degrees of freedom the normal quantile's Cornish-Fisher
    correction (accurate to 1e-3 there)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean of the paired differences a_i - b_i and its two-sided 95 % Student-t confidence
    interval (lo, hi), with n - 1 degrees of freedom; (mean, nan, nan) for one pair."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_interval needs two equally long series, got {len(a)}, {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean, std = mean_std(diffs)
    if len(diffs) == 1:
        return mean, float("nan"), float("nan")
    half = t975(len(diffs) - 1) * std / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def fmt_interval(a: Sequence[float], b: Sequence[float], digits: int = 4) -> str:
    """``+0.0123 [+0.0050, +0.0196]``: paired mean difference with its 95 % t-interval."""
    mean, lo, hi = paired_interval(a, b)
    if math.isnan(lo):
        return f"{mean:+.{digits}f} (1 pair: no interval)"
    return f"{mean:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's correlation coefficient (nan when either side is constant)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"pearson needs two equally long series of >= 2, got {len(xs)}, {len(ys)}")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's on the ranks (ties averaged)."""
    return pearson(ranks(xs), ranks(ys))


def fmt_mean_std(values: Sequence[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
