"""Learning-rate schedules as pure functions of the step (so a resumed run needs no state)."""

from __future__ import annotations

import math
from typing import get_args

from moegrow.errors import MoegrowError
from moegrow.training.options import Schedule

SCHEDULES: tuple[str, ...] = get_args(Schedule)


def lr_at(
    step: int,
    *,
    total_steps: int,
    peak: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    min_ratio: float = 0.1,
    decay_fraction: float = 0.2,
) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Linear warm-up to ``peak`` over ``warmup_steps``; then ``constant``; ``cosine`` decay to
    ``min_ratio * peak`` at the last step; or ``wsd`` (warmup-stable-decay): constant, then a
    linear decay to ``min_ratio * peak`` over the last ``decay_fraction`` of the steps.
    """
    if schedule not in SCHEDULES:
        raise MoegrowError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    floor = peak * min_ratio
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = max(total_steps - warmup_steps - 1, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
    decay_steps = max(int(round(total_steps * decay_fraction)), 1)
    decay_start = total_steps - decay_steps
    if step < decay_start:
        return peak
    progress = min((step - decay_start + 1) / decay_steps, 1.0)
    return peak + (floor - peak) * progress
