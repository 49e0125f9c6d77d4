"""Options of training and evaluation, as plain data (imported by the command line without
loading torch), and the check of their types and ranges (``check_options``: from the command
line or a run's ``run.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from moegrow.errors import MoegrowError

Schedule = Literal["constant", "cosine", "wsd"]

#: Largest value of a step count, token or FLOPs budget that is not a typo.
MAX_STEPS = 10**12

EVAL_SEQ_LEN = 256
"""Tokens per sequence of ``moegrow eval``."""
EVAL_TOKENS = 65536
"""Validation tokens ``moegrow eval`` scores."""


@dataclass
class TrainOptions:
    """Options of ``moegrow train`` (one field per command-line option)."""

    tokens: int | None = None
    """Training tokens of this run (or give ``flops``)."""
    flops: float | None = None
    """Training FLOPs of this run, converted to tokens with the model's FLOPs per token."""
    batch_size: int = 8
    """Sequences per optimizer step, over all processes and accumulation micro-steps."""
    seq_len: int = 256
    grad_accum: int = 1
    """Micro-batches per optimizer step (each of batch_size / grad_accum sequences)."""
    lr: float = 3e-4
    schedule: Schedule = "constant"
    """Learning-rate schedule after the warm-up: constant, cosine to ``min_lr_ratio``, or WSD
    (warm-up, stable, decay over the last ``decay_fraction`` of the steps)."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2
    """WSD: fraction of the steps spent decaying."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    aux_loss_coef: float | None = None
    """Load-balancing loss coefficient; None takes the model config's router_aux_loss_coef."""
    expert_bias_rate: float = 1e-3
    """Aux-loss-free bias update rate for routers with an expert bias (0 disables it)."""
    seed: int = 0
    eval_every: int = 0
    """Evaluate the validation loss every N steps (0: only at the end)."""
    eval_tokens: int = 32768
    save_every: int = 0
    """Write a resumable checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = 2
    stop_after: int | None = None
    """Stop (with a resumable checkpoint) after this many steps of this invocation."""
    compile: bool = False
    tensorboard: bool = False
    device: str = "auto"
    progress: bool = True

    def check(self) -> None:
        if (self.tokens is None) == (self.flops is None):
            raise MoegrowError("train: give exactly one of --tokens N and --flops F")
        for name in ("batch_size", "seq_len", "grad_accum"):
            if getattr(self, name) < 1:
                raise MoegrowError(f"--{name.replace('_', '-')} must be >= 1")
        if self.batch_size % self.grad_accum:
            raise MoegrowError(
                f"--batch-size {self.batch_size} must be a multiple of --grad-accum "
                f"{self.grad_accum}"
            )


def check_options(opts: TrainOptions) -> None:
    """Types and ranges of TrainOptions (from the command line or a run.json)."""
    spec = {
        "batch_size": (int, 1),
        "seq_len": (int, 1),
        "grad_accum": (int, 1),
        "warmup_steps": (int, 0),
        "seed": (int, 0),
        "eval_every": (int, 0),
        "eval_tokens": (int, 1),
        "save_every": (int, 0),
        "keep_checkpoints": (int, 0),  # 0 keeps every checkpoint
        "lr": (float, 0),
        "min_lr_ratio": (float, 0),
        "decay_fraction": (float, 0),
        "weight_decay": (float, 0),
        "beta1": (float, 0),
        "beta2": (float, 0),
        "grad_clip": (float, 0),
        "expert_bias_rate": (float, 0),
    }
    optional = {"tokens": (int, 1), "flops": (float, 0), "aux_loss_coef": (float, 0)}
    optional["stop_after"] = (int, 1)
    for name, (kind, minimum) in [*spec.items(), *optional.items()]:
        value = getattr(opts, name)
        if value is None and name in optional:
            continue
        option = "--" + name.replace("_", "-")
        types = (int, float) if kind is float else int
        ok = not isinstance(value, bool) and isinstance(value, types)
        if ok and kind is float:
            ok = math.isfinite(value)
        if not ok or value < minimum or value > MAX_STEPS * 1e6:
            raise MoegrowError(
                f"{option} must be a finite {'number' if kind is float else 'integer'} >= "
                f"{minimum}, got {value!r}"
            )
    for name in ("min_lr_ratio", "decay_fraction", "beta1", "beta2"):
        if getattr(opts, name) > 1:
            option = "--" + name.replace("_", "-")
            raise MoegrowError(f"{option} must be in [0, 1], got {getattr(opts, name)!r}")
    if opts.lr <= 0:
        raise MoegrowError(f"--lr must be > 0, got {opts.lr!r}")
    if opts.schedule not in ("constant", "cosine", "wsd"):
        raise MoegrowError(f"--schedule must be constant, cosine or wsd, got {opts.schedule!r}")
    if not isinstance(opts.device, str):
        raise MoegrowError(f"--device must be a string, got {opts.device!r}")
