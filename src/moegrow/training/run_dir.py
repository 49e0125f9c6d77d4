"""A training run folder's layout, stated once: what ``moegrow train`` writes into a run folder
and how everything that reads one (resuming, the reproduction suite, the analyses) finds it.

::

    RUN/
      run.json                    the model and data folders and the training options
      metrics.jsonl               one JSON object per trained step (``val_*`` at evaluations)
      checkpoint-{step:07d}/      the model as ``save_pretrained`` writes it, plus
        trainer_state.json        progress: step, tokens, FLOPs, optimizer param groups
        optimizer.safetensors     AdamW state, one tensor per ``{parameter name}::{state}``
        rng.safetensors           the torch CPU RNG state
      tensorboard/                with ``--tensorboard``

A checkpoint appears complete or not at all (it is written beside its final name and renamed);
one that a crash or an edit left without a file is *incomplete*: :meth:`RunDir.newest_complete`
skips it with a message. A torn last line of ``metrics.jsonl`` (the process was killed while
writing it) is dropped; a damaged line elsewhere is an error naming it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from moegrow.errors import MoegrowError
from moegrow.io.atomic import PARTIAL, hidden_sibling
from moegrow.io.bounded_json import read_json
from moegrow.io.card import write_json

if TYPE_CHECKING:
    import torch

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
SEP = "::"
"""Between a parameter's name and its optimizer state's name in ``OPTIMIZER_FILE``."""
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def checkpoint_step(folder: str | os.PathLike[str]) -> int | None:
    """The step a checkpoint folder's name says; None for a name that is not
    ``checkpoint-DIGITS``."""
    name = Path(folder).name
    digits = name[len(CHECKPOINT_PREFIX) :]
    if not name.startswith(CHECKPOINT_PREFIX) or not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits)


def missing_files(checkpoint: Path) -> str | None:
    """What a checkpoint folder lacks to be resumed from (``"no optimizer.safetensors"``), or
    None when it is complete."""
    for name in (STATE_FILE, OPTIMIZER_FILE, RNG_FILE, "config.json"):
        if not (checkpoint / name).is_file():
            return f"no {name}"
    if not any((checkpoint / n).is_file() for n in WEIGHT_FILES):
        return "no model weights"
    return None


def _stderr(line: str) -> None:
    print(f"moegrow: {line}", file=sys.stderr)


class RunDir:
    """One training run folder: the paths of its files and their readers and writers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    # -- run.json ----------------------------------------------------------------------------

    def is_run(self) -> bool:
        """Whether the folder holds a run (its ``run.json``): ``train(..., resume=True)``
        continues it."""
        return self.run_file.is_file()

    def read_run(self, options_type: type) -> dict:
        """``run.json`` with its types checked; ``options`` keeps only the fields of the
        dataclass ``options_type``."""
        path = self.run_file
        if not path.is_file():
            raise MoegrowError(
                f"{self.path}: not a training run (no {RUN_FILE}); nothing to resume"
            )
        meta = read_json(path, max_bytes=1 << 20)
        for key in ("model", "data"):
            if not isinstance(meta.get(key), str) or not meta[key]:
                raise MoegrowError(f"{path}: {key!r} must be a folder path (a string)")
        if not isinstance(meta.get("options"), dict):
            raise MoegrowError(f"{path}: 'options' must be an object of training options")
        known = {f.name for f in fields(options_type)}
        meta["options"] = {k: v for k, v in meta["options"].items() if k in known}
        return meta

    def write_run(self, meta: dict) -> None:
        write_json(self.run_file, meta)

    # -- metrics.jsonl -----------------------------------------------------------------------

    def read_metrics(self, upto: int | None = None) -> list[dict]:
        """Logged metrics (up to step ``upto``); none when the file is not there. A torn last
        line is dropped; a damaged line elsewhere is an error naming it."""
        path = self.metrics_file
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
                    f"{path}:{number}: not a metrics record (a JSON object with an integer "
                    "'step'); repair or remove the line"
                ) from None
            rows.append(row)
        return [r for r in rows if upto is None or r["step"] <= upto]

    def logged_steps(self) -> int | None:
        """The last step ``metrics.jsonl`` logs (0 when it logs none); None without the file."""
        if not self.metrics_file.is_file():
            return None
        return max((r["step"] for r in self.read_metrics()), default=0)

    def write_metrics(self, rows: Iterable[dict]) -> None:
        """Replace ``metrics.jsonl`` by ``rows``: a kill leaves the old file or the new one."""
        partial = hidden_sibling(self.metrics_file, PARTIAL)
        partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
        os.replace(partial, self.metrics_file)

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(row) + "\n")

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self, step: int) -> Path:
        """The folder of the checkpoint at ``step`` (there or not)."""
        return self.path / f"{CHECKPOINT_PREFIX}{step:07d}"

    def checkpoints(self) -> list[Path]:
        """Checkpoint folders with their progress file, oldest first (by step; a folder whose
        name is not ``checkpoint-DIGITS`` counts as the newest, so that resuming from it is
        refused rather than silently passed over)."""
        if not self.path.is_dir():
            return []
        found = [p for p in self.path.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()]

        def order(p: Path) -> tuple[int, int, str]:
            step = checkpoint_step(p)
            return (0, step, p.name) if step is not None else (1, 0, p.name)

        return sorted(found, key=order)

    def last_step(self) -> int:
        """The step of the newest checkpoint (0 when there is none)."""
        dirs = self.checkpoints()
        return (checkpoint_step(dirs[-1]) or 0) if dirs else 0

    def newest_complete(self, *, report: Callable[[str], object] | None = None) -> Path | None:
        """The newest *complete* checkpoint; incomplete newer ones are skipped and reported
        (one line each to ``report``, default standard error). None when the run has no
        checkpoint (it starts from its model); an error when it has only incomplete ones."""
        report = report or _stderr
        skipped: list[str] = []
        for folder in reversed(self.checkpoints()):
            missing = missing_files(folder)
            if not missing:
                for line in skipped:
                    report(f"{line}; resuming from {folder.name}, the newest complete checkpoint")
                return folder
            skipped.append(f"{folder.name} is incomplete ({missing})")
        if skipped:
            raise MoegrowError(
                f"{self.path}: no complete checkpoint to resume ({'; '.join(skipped)}); remove "
                "the damaged checkpoint folders to restart the run from its model"
            )
        return None


# -- the optimizer state file ------------------------------------------------------------------


def optimizer_tensors(state: dict) -> dict[str, torch.Tensor]:
    """``optimizer.state_dict()["state"]`` (keyed by parameter name) as the named tensors of
    ``OPTIMIZER_FILE``: ``{parameter}::{state}``."""
    import torch

    tensors = {}
    for index, entry in state.items():
        for key, value in entry.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{index}{SEP}{key}"] = t.detach().cpu().contiguous()
    return tensors


def optimizer_entries(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The tensors of ``OPTIMIZER_FILE`` by parameter name, then state name (``exp_avg``,
    ``exp_avg_sq``, ``step``)."""
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        index, key = name.rsplit(SEP, 1)
        state.setdefault(index, {})[key] = t
    return state


def optimizer_moments(checkpoint: Path, state: str = "exp_avg") -> dict[str, torch.Tensor]:
    """One optimizer state (default Adam's first moment) of every parameter of a checkpoint
    folder, by parameter name."""
    from safetensors.torch import load_file

    tensors = load_file(Path(checkpoint) / OPTIMIZER_FILE)
    entries = optimizer_entries({k: t for k, t in tensors.items() if SEP in k})
    return {name: entry[state] for name, entry in entries.items() if state in entry}
