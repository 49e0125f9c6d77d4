"""Training checkpoints: an HF model folder plus the optimizer, RNG and progress state, with no
pickle anywhere (tensors in safetensors, the rest in JSON), written atomically, read back, and
checked against the run before it is trusted.

The files and their names are :mod:`moegrow.training.run_dir`'s. The data position is the step
itself. A checkpoint whose contents *disagree* with the run (its step, its progress, its
parameters) is refused, naming the file, since training from it would silently do the wrong
thing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from moegrow.errors import MoegrowError
from moegrow.io.atomic import PARTIAL, commit, hidden_sibling
from moegrow.io.bounded_json import read_json
from moegrow.training.options import MAX_STEPS
from moegrow.training.run_dir import (
    METRICS_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    SEP,
    STATE_FILE,
    RunDir,
    checkpoint_step,
    optimizer_entries,
    optimizer_tensors,
)


def save_checkpoint(
    run: Path,
    step: int,
    save_model,
    optim_state: dict,
    state: dict,
    keep: int | None = None,
) -> Path:
    """Write ``RUN/checkpoint-{step}`` atomically. ``save_model(folder)`` writes the model."""
    folder = RunDir(run)
    final = folder.checkpoint(step)
    tmp = hidden_sibling(final, PARTIAL)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(tmp)
        save_file(optimizer_tensors(optim_state["state"]), tmp / OPTIMIZER_FILE)
        save_file({"cpu": torch.get_rng_state()}, tmp / RNG_FILE)
        groups = optim_state["param_groups"]
        (tmp / STATE_FILE).write_text(json.dumps({**state, "param_groups": groups}, indent=2))
        # Re-saving a step swaps the folders (atomically where the platform allows): the
        # complete copy on disk is never deleted before the new one is in place.
        commit(tmp, final, overwrite=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep:
        for old in folder.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: Path) -> tuple[dict, dict, torch.Tensor]:
    """(trainer state, optimizer state dict, CPU RNG state) of a checkpoint folder."""
    folder = Path(folder)
    state = read_json(folder / STATE_FILE, max_bytes=1 << 24)
    groups = state.pop("param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise MoegrowError(f"{folder / STATE_FILE}: 'param_groups' must be a list of objects")
    try:
        tensors = load_file(folder / OPTIMIZER_FILE)
        rng = load_file(folder / RNG_FILE)["cpu"]
    except (OSError, KeyError) as e:
        raise MoegrowError(f"{folder}: not a complete training checkpoint ({e})") from None
    except Exception as e:  # safetensors' own error for a damaged file
        if type(e).__name__ != "SafetensorError":
            raise
        raise MoegrowError(f"{folder}: a damaged safetensors file ({e})") from None
    if any(SEP not in name for name in tensors) or rng.dtype != torch.uint8 or rng.ndim != 1:
        raise MoegrowError(
            f"{folder}: {OPTIMIZER_FILE} or {RNG_FILE} does not hold optimizer state and a "
            "CPU RNG state; the checkpoint is damaged"
        )
    # keyed by parameter name (named optimizer state)
    return state, {"state": optimizer_entries(tensors), "param_groups": groups}, rng


def check_state(folder: Path, state: dict, *, tokens_per_step: int, logged_steps: int | None):
    """The progress a checkpoint claims agrees with its folder name, the run's batch and the
    metrics that were logged."""
    path = folder / STATE_FILE
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
        raise MoegrowError(f"{path}: 'step' must be an integer >= 0, got {step!r}")
    if checkpoint_step(folder) != step:
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
                    f"{path}: {index}{SEP}{key} has shape {tuple(value.shape)}, but parameter "
                    f"{index} has {shape}; the checkpoint's model was edited"
                )
            if key == "step" and value.numel() == 1 and float(value) != step:
                raise MoegrowError(
                    f"{path}: {index}{SEP}step is {float(value):g}, but {STATE_FILE} says step "
                    f"{step}; the checkpoint's files disagree"
                )
