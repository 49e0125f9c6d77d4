"""A Hugging Face checkpoint folder, opened lazily: config, shard index and tensor headers.

Nothing but headers is read when a folder is opened; tensor bytes are read on demand with
``pread`` (no mmap, so the resident memory of a growth is what it holds, not what it touched).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import torch

from moegrow.errors import CheckpointError
from moegrow.io.bounded_json import read_json
from moegrow.io.config_check import check_config
from moegrow.io.safetensors_io import TensorInfo, pread_exact, pread_into, read_header, to_torch

CONFIG_NAME = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: Weight files of other formats (pickles above all): never copied into a grown checkpoint.
NOT_COPIED = (
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".pkl",
    ".pickle",
    ".h5",
    ".msgpack",
    ".gguf",
    ".bin.index.json",
)
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")


def safe_child(folder: Path, name: str, *, what: str) -> Path:
    """``folder / name``, refusing names that leave ``folder`` (``..``, absolute paths, links)."""
    if not name or os.path.isabs(name) or ".." in Path(name).parts or "\\" in name:
        raise CheckpointError(
            f"{what}: file name {name!r} leaves the checkpoint folder {folder}; refusing to "
            "follow it: fix the index so it names files inside the folder"
        )
    path = folder / name
    try:
        real_folder = folder.resolve()
        real = path.resolve(strict=path.is_symlink())
    except (OSError, RuntimeError) as e:  # a link loop or a dangling link
        raise CheckpointError(
            f"{what}: {name!r} cannot be resolved ({e}); a symlink loop or a broken link"
        ) from None
    if real != real_folder and real_folder not in real.parents:
        raise CheckpointError(
            f"{what}: {name!r} resolves to {real}, outside the checkpoint folder {real_folder}; "
            "refusing to follow it"
        )
    return path


class Headers(Protocol):
    """What a plan reads of a checkpoint: its folder, config and tensor headers (a
    :class:`Checkpoint`, or headers synthesised from config.json alone)."""

    folder: Path
    config: dict
    tensors: dict[str, TensorInfo]


class Checkpoint:
    """A checkpoint folder: ``config.json`` plus ``model.safetensors`` or indexed shards."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CheckpointError(f"{self.folder}: no such checkpoint folder")
        config_path = self.folder / CONFIG_NAME
        if not (config_path.exists() or config_path.is_symlink()):
            raise CheckpointError(
                f"{config_path}: missing; a Hugging Face checkpoint folder needs its config.json"
            )
        safe_child(self.folder, CONFIG_NAME, what=str(self.folder))
        self.config: dict = read_json(config_path, error=CheckpointError)
        self.weight_files, self.index_metadata = self._find_weight_files()
        self.tensors: dict[str, TensorInfo] = {}
        self.file_metadata: dict[str, dict[str, str]] = {}
        for file in self.weight_files:
            tensors, metadata = read_header(file)
            self.file_metadata[file.name] = metadata
            for name, info in tensors.items():
                if name in self.tensors:
                    raise CheckpointError(
                        f"{file}: tensor {name!r} is also in {self.tensors[name].file.name}; "
                        "a tensor must live in exactly one shard"
                    )
                self.tensors[name] = info
        self._check_index()
        check_config(self.config, self.tensors, where=str(config_path))
        self._fds: dict[Path, int] = {}
        self._fd_lock = threading.Lock()

    # -- discovery -------------------------------------------------------------------------
    def _find_weight_files(self) -> tuple[list[Path], dict]:
        index_path = self.folder / INDEX_FILE
        if index_path.exists() or index_path.is_symlink():
            safe_child(self.folder, INDEX_FILE, what=str(self.folder))
            index = read_json(index_path, error=CheckpointError)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()
            ):
                raise CheckpointError(
                    f"{index_path}: expected a 'weight_map' object of tensor name -> shard file "
                    "name (strings)"
                )
            metadata = index.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise CheckpointError(f"{index_path}: 'metadata' must be an object")
            self.weight_map: dict[str, str] | None = weight_map
            names = sorted(set(weight_map.values()))
            files = [safe_child(self.folder, n, what=str(index_path)) for n in names]
            for f in files:
                if not f.is_file():
                    kind = "missing" if not f.exists() else "not a regular file"
                    raise CheckpointError(f"{index_path}: names shard {f.name!r}, which is {kind}")
            return files, metadata
        self.weight_map = None
        single = self.folder / SINGLE_FILE
        if single.is_file():
            safe_child(self.folder, SINGLE_FILE, what=str(self.folder))
            return [single], {}
        loose = sorted(self.folder.glob("*.safetensors"))
        if len(loose) == 1:
            safe_child(self.folder, loose[0].name, what=str(self.folder))
            if not loose[0].is_file():
                raise CheckpointError(f"{loose[0]}: not a regular file")
            return [loose[0]], {}
        pickles = [p for p in PICKLE_FILES if (self.folder / p).exists()]
        pickles += [p.name for p in self.folder.glob("*.bin")]
        if pickles:
            raise CheckpointError(
                f"{self.folder / pickles[0]}: pickle checkpoints are not read (unpickling can run "
                "arbitrary code); convert the checkpoint to safetensors with a trusted tool first"
            )
        raise CheckpointError(
            f"{self.folder}: no {SINGLE_FILE} or {INDEX_FILE} found; expected a Hugging Face "
            "safetensors checkpoint"
        )

    def _check_index(self) -> None:
        if self.weight_map is None:
            return
        for name, file in self.weight_map.items():
            info = self.tensors.get(name)
            if info is None:
                raise CheckpointError(
                    f"{self.folder / INDEX_FILE}: lists tensor {name!r} in {file}, but no shard "
                    "holds it; the checkpoint is incomplete"
                )
            if info.file.name != Path(file).name:
                raise CheckpointError(
                    f"{self.folder / INDEX_FILE}: lists tensor {name!r} in {file}, but it is in "
                    f"{info.file.name}"
                )
        extra = sorted(set(self.tensors) - set(self.weight_map))
        if extra:
            raise CheckpointError(
                f"{self.tensors[extra[0]].file}: tensor {extra[0]!r} is not in "
                f"{INDEX_FILE} ({len(extra)} such); the index and shards disagree"
            )

    # -- reading ----------------------------------------------------------------------------
    def fd(self, info: TensorInfo) -> int:
        """A read-only descriptor of the tensor's file (opened once; safe across threads)."""
        with self._fd_lock:
            fd = self._fds.get(info.file)
            if fd is None:
                fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
            return fd

    def read_bytes(self, name: str, start: int = 0, nbytes: int | None = None) -> bytearray:
        """Bytes ``start .. start+nbytes`` of a tensor's data."""
        info = self.tensors[name]
        if nbytes is None:
            nbytes = info.nbytes - start
        assert start >= 0 and start + nbytes <= info.nbytes
        return pread_exact(self.fd(info), nbytes, info.offset + start, name=str(info.file))

    def read_into(self, name: str, start: int, view: memoryview) -> None:
        """Fill ``view`` with the tensor's data bytes from ``start`` on (no allocation)."""
        info = self.tensors[name]
        assert start >= 0 and start + view.nbytes <= info.nbytes
        pread_into(self.fd(info), view, info.offset + start, name=str(info.file))

    def tensor(self, name: str) -> torch.Tensor:
        """A whole tensor, in its stored dtype."""
        info = self.tensors[name]
        return to_torch(self.read_bytes(name), info.dtype, info.shape)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def other_files(self) -> list[Path]:
        """Files of the folder that are not weights, index or config (tokenizer, generation
        config, ...): they are copied to a grown checkpoint as they are."""
        skip = {CONFIG_NAME, INDEX_FILE, *(f.name for f in self.weight_files)}
        out = []
        for p in sorted(self.folder.iterdir()):
            if p.name in skip or p.name.startswith(".") or not p.is_file():
                continue
            if p.suffix == ".safetensors" or p.name.endswith(NOT_COPIED):
                continue  # weights are the plan's; pickles are never carried along
            safe_child(self.folder, p.name, what=str(self.folder))
            out.append(p)
        return out
