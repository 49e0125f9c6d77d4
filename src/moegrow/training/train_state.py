"""Training checkpoints: an HF model folder plus the optimizer, RNG and progress state, with no
pickle anywhere (tensors in safetensors, the rest in JSON), written atomically.

Layout of ``RUN/checkpoint-{step:07d}/``: the model as ``save_pretrained`` writes it (loadable
by transformers as it is), ``optimizer.safetensors`` (AdamW moments and step counts, named
``{parameter name}::{state}``), ``trainer_state.json`` (step, tokens, FLOPs, optimizer param
groups) and ``rng.safetensors`` (torch CPU RNG state). The data position is the step itself.
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

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
SEP = "::"  # between a parameter's name and its optimizer state's name


def checkpoint_dirs(run: Path) -> list[Path]:
    """Completed checkpoints of a run, oldest first."""
    return sorted(p for p in Path(run).glob("checkpoint-*") if (p / STATE_FILE).is_file())


def optimizer_tensors(optim_state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Flatten ``optimizer.state_dict()`` into named tensors and JSON-able param groups."""
    tensors = {}
    for index, state in optim_state["state"].items():
        for key, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{index}{SEP}{key}"] = t.detach().cpu().contiguous()
    return tensors, optim_state["param_groups"]


def optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[str, dict] = {}  # keyed by parameter name (named optimizer state)
    for name, t in tensors.items():
        index, key = name.rsplit(SEP, 1)
        state.setdefault(index, {})[key] = t
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run: Path,
    step: int,
    save_model,
    optim_state: dict,
    state: dict,
    keep: int | None = None,
) -> Path:
    """Write ``RUN/checkpoint-{step}`` atomically. ``save_model(folder)`` writes the model."""
    final = Path(run) / f"checkpoint-{step:07d}"
    tmp = hidden_sibling(final, PARTIAL)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(tmp)
        tensors, groups = optimizer_tensors(optim_state)
        save_file(tensors, tmp / OPTIMIZER_FILE)
        save_file({"cpu": torch.get_rng_state()}, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({**state, "param_groups": groups}, indent=2))
        # Re-saving a step swaps the folders (atomically where the platform allows): the
        # complete copy on disk is never deleted before the new one is in place.
        commit(tmp, final, overwrite=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep:
        for old in checkpoint_dirs(run)[:-keep]:
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
    return state, optimizer_state(tensors, groups), rng
