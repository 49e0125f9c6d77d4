"""Execute a growth plan: stream tensors from the source shards into new shards, atomically.

Each output shard's header is written first (the plan knows every dtype and shape), then its
tensors are streamed in order. Plain copies go through ``copy_file_range`` (in the kernel, like
``cp``); tensors that need arithmetic (noise, scaling) are processed in fixed-size chunks, so
resident memory stays at a few chunks whatever the model or shard size. Everything is written
into a hidden folder beside the destination, which is renamed into place only at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from moegrow import __version__
from moegrow.card import CARD_NAME, ledger_of, sha256_file, write_json
from moegrow.checkpoint import CONFIG_NAME, INDEX_FILE, SINGLE_FILE, Checkpoint
from moegrow.errors import GrowthError
from moegrow.flops import param_stats
from moegrow.plan import OutTensor, Part, Plan, assign_shards, make_plan
from moegrow.safetensors_io import (
    DTYPE_SIZES,
    StreamingShardWriter,
    tensor_bytes,
    to_torch,
)
from moegrow.spec import GrowthSpec

#: Elements processed at once by arithmetic operators (16 MiB of float32).
CHUNK_ELEMENTS = 1 << 22
DEFAULT_MAX_SHARD_SIZE = 5 * 10**9


@dataclass
class GrowResult:
    out: Path
    plan: Plan
    bytes_written: int
    seconds: float
    num_shards: int


def parse_size(text: str | int) -> int:
    """``"5GB"`` -> 5_000_000_000; ``"512MiB"`` -> 536_870_912; plain integers are bytes."""
    if isinstance(text, int):
        return text
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    units |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    s = text.strip().upper()
    num = s.rstrip("KMGTIB")
    try:
        value = float(num) * units[s[len(num) :]]
    except (KeyError, ValueError):
        raise GrowthError(
            f"--max-shard-size must be a size like 5GB or 512MiB, got {text!r}"
        ) from None
    if value < 1:
        raise GrowthError(f"--max-shard-size must be positive, got {text!r}")
    return int(value)


def noise_seed(seed: int, tensor: str, part: int) -> int:
    """Seed of one part's noise: depends on the seed and the output tensor's name only, so the
    output bytes do not depend on processing order."""
    digest = hashlib.blake2b(f"{seed}\0{tensor}\0{part}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def grow(
    src: str | os.PathLike,
    out: str | os.PathLike,
    spec: GrowthSpec,
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
) -> GrowResult:
    """Grow the checkpoint folder ``src`` into a new folder ``out`` as ``spec`` says.

    Nothing is written unless the whole growth can be planned. ``out`` appears only when every
    byte is written; on any error or interrupt the partial folder is removed.
    """
    out = Path(out)
    max_shard_size = parse_size(max_shard_size)
    src_path = Path(src)
    if out.exists() and not overwrite:
        raise GrowthError(f"{out}: already exists; pass --overwrite to replace it")
    if out.resolve() == src_path.resolve() or src_path.resolve() in out.resolve().parents:
        raise GrowthError(f"{out}: must not be the source folder {src} or inside it")
    start = time.perf_counter()
    with Checkpoint(src_path) as ckpt:
        plan = make_plan(ckpt, spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.moegrow-partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            with ThreadPoolExecutor(1) as pool:
                hashes = pool.submit(_hash_sources, ckpt)
                shards = assign_shards(plan.tensors, max_shard_size)
                _write_shards(ckpt, plan, shards, tmp, progress=progress)
                write_json(tmp / CONFIG_NAME, plan.config)
                for f in ckpt.other_files():
                    if f.name != CARD_NAME:
                        shutil.copy2(f, tmp / f.name)
                write_json(tmp / CARD_NAME, growth_card(plan, hashes.result(), len(shards)))
            _replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return GrowResult(out, plan, plan.bytes_out, time.perf_counter() - start, len(shards))


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = out.parent / f".{out.name}.moegrow-old-{os.getpid()}"
        out.rename(trash)
        tmp.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(out)


def _hash_sources(ckpt: Checkpoint) -> dict[str, str]:
    files = [ckpt.folder / CONFIG_NAME, *ckpt.weight_files]
    return {f.name: sha256_file(f) for f in files}


def shard_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def _write_shards(
    ckpt: Checkpoint, plan: Plan, shards: list[list[OutTensor]], folder: Path, *, progress: bool
) -> None:
    from tqdm.auto import tqdm

    names = shard_names(len(shards))
    bar = tqdm(total=plan.bytes_out, unit="B", unit_scale=True, desc="grow", disable=not progress)
    executor = _PartExecutor(ckpt, plan.spec, bar)
    weight_map = {}
    with bar:
        for shard_name, tensors in zip(names, shards):
            entries = [(t.name, t.dtype, t.shape) for t in tensors]
            writer = StreamingShardWriter(folder / shard_name, entries, {"format": "pt"})
            try:
                for t in tensors:
                    executor.write(writer, t)
                    weight_map[t.name] = shard_name
            finally:
                writer.close()
    if len(shards) > 1:
        stats = param_stats(
            ((t.name, t.dtype, t.shape) for t in plan.tensors), plan.family, plan.config
        )
        index = {
            "metadata": {"total_size": plan.bytes_out, "total_parameters": stats.total},
            "weight_map": dict(sorted(weight_map.items())),
        }
        write_json(folder / INDEX_FILE, index)


class _PartExecutor:
    """Writes the parts of output tensors into a shard writer."""

    def __init__(self, ckpt: Checkpoint, spec: GrowthSpec, bar):
        self.ckpt = ckpt
        self.spec = spec
        self.bar = bar
        self._source_std: dict[str, float] = {}

    def write(self, writer: StreamingShardWriter, t: OutTensor) -> None:
        out_row = t.nbytes // t.shape[0] if t.shape and t.shape[0] else t.nbytes
        for index, part in enumerate(t.parts):
            before = writer.written
            if part.op == "zero":
                writer.write_zeros(part.rows * out_row)
            elif part.op == "random":
                self._random(writer, t, index, part, part.rows * out_row)
            else:
                self._from_source(writer, t, index, part)
            self.bar.update(writer.written - before)

    def _byte_range(self, part: Part) -> tuple[int, int]:
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        if part.start is None:
            return 0, info.nbytes
        row = info.nbytes // info.shape[0]
        return part.start * row, (part.stop - part.start) * row  # type: ignore[operator]

    def _from_source(self, writer: StreamingShardWriter, t: OutTensor, index: int, part: Part):
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        offset, nbytes = self._byte_range(part)
        if part.op == "copy" and part.scale == 1.0:
            writer.copy_range(self.ckpt.fd(info), info.offset + offset, nbytes)
            return
        item = DTYPE_SIZES[info.dtype]
        std = 0.0
        if part.op == "noise":
            if part.sigma == "source":
                std = self._std(info.name, 0, info.nbytes)
            else:
                std = self._std(info.name, offset, nbytes)
            std *= self.spec.noise
        gen = torch.Generator().manual_seed(noise_seed(self.spec.seed, t.name, index))
        step = CHUNK_ELEMENTS * item
        for pos in range(offset, offset + nbytes, step):
            n = min(step, offset + nbytes - pos)
            x = to_torch(self.ckpt.read_bytes(info.name, pos, n), info.dtype)
            if part.op == "noise":
                work = x.to(torch.float64 if info.dtype == "F64" else torch.float32)
                work += torch.randn(work.shape, generator=gen, dtype=work.dtype) * std
            else:
                work = x
            y = _scaled(work, part.scale, info.name) if part.scale != 1.0 else work
            writer.write(tensor_bytes(y.to(x.dtype)))

    def _std(self, name: str, offset: int, nbytes: int) -> float:
        """Standard deviation of a byte range of a float tensor, streamed in float64."""
        key = f"{name}:{offset}:{nbytes}"
        if key not in self._source_std:
            info = self.ckpt.tensors[name]
            step = CHUNK_ELEMENTS * info.itemsize
            total = total_sq = 0.0
            count = 0
            for pos in range(offset, offset + nbytes, step):
                n = min(step, offset + nbytes - pos)
                x = to_torch(self.ckpt.read_bytes(name, pos, n), info.dtype).double()
                total += float(x.sum())
                total_sq += float((x * x).sum())
                count += x.numel()
            mean = total / max(count, 1)
            self._source_std[key] = max(total_sq / max(count, 1) - mean * mean, 0.0) ** 0.5
        return self._source_std[key]

    def _random(self, writer, t: OutTensor, index: int, part: Part, nbytes: int) -> None:
        if part.std == 0:
            writer.write_zeros(nbytes)
            return
        gen = torch.Generator().manual_seed(noise_seed(self.spec.seed, t.name, index))
        count = nbytes // DTYPE_SIZES[t.dtype]
        values = torch.randn(count, generator=gen) * part.std
        writer.write(tensor_bytes(values.to(to_torch(b"", t.dtype).dtype)))


def _scaled(x: torch.Tensor, scale: float, name: str) -> torch.Tensor:
    """Multiply by ``scale``; MXFP4 exponent tensors (``_scales``, uint8 with bias 127) take a
    power-of-two scale as a shift of the exponent."""
    if x.dtype == torch.uint8 and name.endswith("_scales"):
        shift = -torch.log2(torch.tensor(scale)).item()
        assert shift == int(shift) and shift >= 0, scale
        if bool((x < shift).any()):
            raise GrowthError(f"tensor {name!r}: an exponent is too small to scale by {scale}")
        return x - int(shift)
    return x.to(torch.float32 if x.dtype != torch.float64 else x.dtype) * scale


def growth_card(plan: Plan, source_hashes: dict[str, str], num_shards: int) -> dict:
    before = param_stats(
        ((i.name, i.dtype, i.shape) for i in plan.source_tensors.values()),
        plan.family,
        plan.source_config,
    )
    after = param_stats(
        ((t.name, t.dtype, t.shape) for t in plan.tensors), plan.family, plan.config
    )
    ledger = ledger_of(Path(plan.source))
    ledger.append(
        {
            "stage": "grow",
            "tokens": 0,
            "flops": 0.0,
            "note": describe(plan),
            "active_params": after.active,
        }
    )
    return {
        "moegrow_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "path": str(Path(plan.source).resolve()),
            "model_type": plan.source_config.get("model_type"),
            "sha256": source_hashes,
        },
        "spec": plan.spec.to_json(),
        "family": plan.family.name,
        "exact": plan.exact,
        "not_exact": plan.not_exact,
        "notes": plan.notes,
        "layer_map": plan.layer_map,
        "expert_map": [list(e) for e in plan.expert_map] if plan.expert_map else None,
        "config_edits": plan.config_edits,
        "params_before": before.to_json(),
        "params_after": after.to_json(),
        "bytes_written": plan.bytes_out,
        "num_shards": num_shards,
        "ledger": ledger,
    }


def describe(plan: Plan) -> str:
    s = plan.spec
    bits = []
    if s.grows_depth:
        if s.layer_map is not None:
            bits.append(f"layer map {list(s.layer_map)}")
        else:
            bits.append(f"depth x{s.depth} {s.depth_method}")
        if s.zero_init:
            bits.append("zero-init")
    if s.grows_width:
        bits.append(f"width x{s.width} noise {s.noise} top-k {s.top_k} {s.expert_order}")
    return ", ".join(bits) or "copy"
