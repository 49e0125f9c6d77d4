"""Several dense checkpoints of one architecture read as one source (Branch-Train-MiX).

The first checkpoint's tensors keep their names; those of checkpoint k >= 1 are named
``@k:<name>``, so that the parts of a plan can take experts from any of them and average the
rest.
"""

from __future__ import annotations

from pathlib import Path

from moegrow.errors import GrowthError
from moegrow.io.checkpoint import Checkpoint
from moegrow.io.safetensors_io import TensorInfo, pread_into

#: Config keys that must agree between the sources (the architecture).
SHAPE_KEYS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "tie_word_embeddings",
)


def source_name(k: int, name: str) -> str:
    """The name of tensor ``name`` of source ``k`` in a :class:`SourceSet`."""
    return name if k == 0 else f"@{k}:{name}"


class SourceSet:
    """The tensors of several checkpoints, readable like one :class:`Checkpoint`."""

    def __init__(self, checkpoints: list[Checkpoint]):
        self.checkpoints = checkpoints
        first = checkpoints[0]
        self.folder = first.folder
        self.config = first.config
        self.weight_files = first.weight_files
        self.tensors: dict[str, TensorInfo] = {}
        self._owner: dict[Path, Checkpoint] = {}
        for k, ckpt in enumerate(checkpoints):
            if k:
                _check_same_architecture(first, ckpt)
            for name, info in ckpt.tensors.items():
                self.tensors[source_name(k, name)] = info
            for f in ckpt.weight_files:
                self._owner[f] = ckpt

    @property
    def count(self) -> int:
        return len(self.checkpoints)

    def fd(self, info: TensorInfo) -> int:
        return self._owner[info.file].fd(info)

    def read_into(self, name: str, start: int, view: memoryview) -> None:
        info = self.tensors[name]
        assert start >= 0 and start + view.nbytes <= info.nbytes
        pread_into(self.fd(info), view, info.offset + start, name=str(info.file))

    def other_files(self) -> list[Path]:
        return self.checkpoints[0].other_files()


def _check_same_architecture(first: Checkpoint, other: Checkpoint) -> None:
    for key in SHAPE_KEYS:
        if first.config.get(key) != other.config.get(key):
            raise GrowthError(
                f"--from {other.folder}: config.json {key}={other.config.get(key)!r}, but "
                f"{first.folder} has {first.config.get(key)!r}; Branch-Train-MiX needs dense "
                "models of one architecture"
            )
    for name, info in first.tensors.items():
        theirs = other.tensors.get(name)
        if theirs is None or (theirs.dtype, theirs.shape) != (info.dtype, info.shape):
            found = "missing" if theirs is None else f"{theirs.dtype} {list(theirs.shape)}"
            raise GrowthError(
                f"--from {other.folder}: tensor {name!r} is {found}, expected {info.dtype} "
                f"{list(info.shape)} as in {first.folder}"
            )
    extra = sorted(set(other.tensors) - set(first.tensors))
    if extra:
        raise GrowthError(
            f"--from {other.folder}: tensor {extra[0]!r} is not in {first.folder}; Branch-"
            "Train-MiX needs dense models with the same tensors"
        )
