"""A training run folder, checked before it is trusted: ``run.json`` (types of every option),
the training options themselves, the checkpoints to resume from and ``metrics.jsonl``.

A checkpoint a crash left *incomplete* (a missing or truncated file) is skipped with a message
and the previous complete one is used; a checkpoint whose contents *disagree* with the run (its
step, its progress, its layer count) is refused, naming the file, since training from it would
silently do the wrong thing.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import fields
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.io.bounded_json import read_json
from moegrow.training.train_state import OPTIMIZER_FILE, RNG_FILE, STATE_FILE, checkpoint_dirs

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
#: Largest value of a step count, token or FLOPs budget that is not a typo.
MAX_STEPS = 10**12


def check_options(opts) -> None:
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


def read_run(run: Path, options_type) -> dict:
    """``run.json`` with its types checked; ``options`` keeps only known fields."""
    path = run / RUN_FILE
    if not path.is_file():
        raise MoegrowError(f"{run}: not a training run (no {RUN_FILE}); nothing to resume")
    meta = read_json(path, max_bytes=1 << 20)
    for key in ("model", "data"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise MoegrowError(f"{path}: {key!r} must be a folder path (a string)")
    if not isinstance(meta.get("options"), dict):
        raise MoegrowError(f"{path}: 'options' must be an object of training options")
    known = {f.name: f for f in fields(options_type)}
    meta["options"] = {k: v for k, v in meta["options"].items() if k in known}
    return meta


def newest_checkpoint(run: Path, *, report=None) -> Path | None:
    """The newest *complete* checkpoint of ``run``; incomplete newer ones are skipped and
    reported. None when the run has none (it starts from its model)."""
    report = report or (lambda line: print(f"moegrow: {line}", file=sys.stderr))
    candidates = checkpoint_dirs(run)
    skipped: list[str] = []
    for folder in reversed(candidates):
        missing = _missing_files(folder)
        if not missing:
            for line in skipped:
                report(f"{line}; resuming from {folder.name}, the newest complete checkpoint")
            return folder
        skipped.append(f"{folder.name} is incomplete ({missing})")
    if skipped:
        raise MoegrowError(
            f"{run}: no complete checkpoint to resume ({'; '.join(skipped)}); remove the "
            "damaged checkpoint folders to restart the run from its model"
        )
    return None


def _missing_files(folder: Path) -> str | None:
    for name in (STATE_FILE, OPTIMIZER_FILE, RNG_FILE, "config.json"):
        if not (folder / name).is_file():
            return f"no {name}"
    weights = ("model.safetensors", "model.safetensors.index.json")
    if not any((folder / n).is_file() for n in weights):
        return "no model weights"
    return None


def check_state(folder: Path, state: dict, *, tokens_per_step: int, logged_steps: int | None):
    """The progress a checkpoint claims agrees with its folder name, the run's batch and the
    metrics that were logged."""
    path = folder / STATE_FILE
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
        raise MoegrowError(f"{path}: 'step' must be an integer >= 0, got {step!r}")
    named = folder.name.rpartition("-")[2]
    if not named.isdigit() or int(named) != step:
        raise MoegrowError(
            f"{path}: claims step {step}, but the folder is {folder.name}; the checkpoint was "
            "edited or moved: remove it to resume from the previous one"
        )
    tokens = state.get("tokens")
    if tokens != step * tokens_per_step:
        raise MoegrowError(
            f"{path}: claims {tokens!r} tokens, but {step} steps of {tokens_per_step} tokens "
            f"are {step * tokens_per_step}; the checkpoint does not belong to this run's options"
        )
    if logged_steps is not None and logged_steps < step:
        raise MoegrowError(
            f"{path}: claims step {step}, but {METRICS_FILE} logs steps only up to "
            f"{logged_steps}; the progress file was edited: remove the checkpoint to resume "
            "from the previous one"
        )


def check_optimizer(folder: Path, optim_state: dict, model, step: int) -> None:
    """Optimizer moments of the right shapes and step counts for ``model``'s parameters."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    state = optim_state["state"]
    path = folder / OPTIMIZER_FILE
    for index, entry in state.items():
        if index not in params:
            raise MoegrowError(
                f"{path}: state for parameter {index!r}, which the model does not have; the "
                "checkpoint's model was edited"
            )
        shape = tuple(params[index].shape)
        for key, value in entry.items():
            if key in ("exp_avg", "exp_avg_sq") and tuple(value.shape) != shape:
                raise MoegrowError(
                    f"{path}: {index}::{key} has shape {tuple(value.shape)}, but parameter "
                    f"{index} has {shape}; the checkpoint's model was edited"
                )
            if key == "step" and value.numel() == 1 and float(value) != step:
                raise MoegrowError(
                    f"{path}: {index}::step is {float(value):g}, but {STATE_FILE} says step "
                    f"{step}; the checkpoint's files disagree"
                )


def read_metrics(path: Path, upto: int | None = None) -> list[dict]:
    """Logged metrics (up to step ``upto``). A torn last line (the process was killed while
    writing it) is dropped; a damaged line elsewhere is an error naming it."""
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or isinstance(row.get("step"), bool):
                raise ValueError
            int(row["step"])
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                break  # torn by a kill: the step is logged again when it is trained again
            raise MoegrowError(
                f"{path}:{number}: not a metrics record (a JSON object with an integer 'step'); "
                "repair or remove the line"
            ) from None
        rows.append(row)
    return [r for r in rows if upto is None or r["step"] <= upto]
