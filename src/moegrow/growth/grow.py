"""Execute a growth plan: stream tensors from the source shards into new shards, atomically.

Each output shard's header is written first (the plan knows every dtype and shape), then its
tensors are streamed in order through :class:`~moegrow.io.sequential_writer.SequentialWriter`
(aligned blocks, written in the background, past the page cache for large outputs). Plain copies
are byte ranges read straight into its blocks; tensors that need arithmetic (noise, scaling) are
processed in fixed-size chunks, so resident memory stays at a few chunks whatever the model or
shard size. Everything is written into a hidden folder beside the destination, synced, and
renamed into place only at the end.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from moegrow import __version__
from moegrow.errors import GrowthError
from moegrow.flops import tensor_stats
from moegrow.growth.config_edit import num_layers
from moegrow.growth.operators import COMPUTE_THREADS, OutputBuffers, PartJobs, run_jobs
from moegrow.growth.plan import OutTensor, Plan, assign_shards, make_plan
from moegrow.growth.spec import GrowthSpec
from moegrow.io.atomic import output_folder
from moegrow.io.card import CARD_NAME, ledger_of, sha256_file, write_json
from moegrow.io.checkpoint import CONFIG_NAME, INDEX_FILE, SINGLE_FILE, Checkpoint
from moegrow.io.resources import check_free_space
from moegrow.io.safetensors_io import StreamingShardWriter
from moegrow.io.sequential_writer import check_io, wants_direct

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
    if not 1 <= value < float("inf"):
        raise GrowthError(f"--max-shard-size must be a positive size, got {text!r}")
    return int(value)


def grow(
    src: str | os.PathLike,
    out: str | os.PathLike,
    spec: GrowthSpec,
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    io: str = "auto",
) -> GrowResult:
    """Grow the checkpoint folder ``src`` into a new folder ``out`` as ``spec`` says.

    Nothing is written unless the whole growth can be planned. ``out`` appears only when every
    byte is written (and synced); on any error or interrupt the partial folder is removed.
    ``io``: how the shards are written, one of :data:`~moegrow.io.sequential_writer.IO_MODES`
    (``auto``: past the page cache for outputs of 1 GiB and more).
    """
    check_io(io)  # refused before anything is read
    out = check_destination([src], out, overwrite=overwrite)
    max_shard_size = parse_size(max_shard_size)
    start = time.perf_counter()
    with _one_thread_per_kernel(), Checkpoint(Path(src)) as ckpt:
        plan = make_plan(ckpt, spec)
        ledger_of(Path(src))  # a damaged card is refused now, not after the shards are written
        shards = write_plan(
            ckpt,
            plan,
            out,
            growth_card,
            max_shard_size,
            overwrite=overwrite,
            progress=progress,
            io=io,
        )
    return GrowResult(out, plan, plan.bytes_out, time.perf_counter() - start, shards)


def check_destination(
    sources: list[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool
) -> Path:
    """Refuse an existing ``out`` (unless ``overwrite``) and one that is, or is inside, a source
    (checked again under the output's lock when writing)."""
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise GrowthError(f"{out}: already exists; pass --overwrite to replace it")
    for src in sources:
        src_path = Path(src).resolve()
        if out.resolve() == src_path or src_path in out.resolve().parents:
            raise GrowthError(f"{out}: must not be the source folder {src} or inside it")
    return out


def write_plan(
    ckpt: Checkpoint,
    plan: Plan,
    out: Path,
    card: Callable[[Plan, dict[str, str], int], dict],
    max_shard_size: int,
    *,
    overwrite: bool,
    reader=None,
    progress: bool,
    io: str = "auto",
) -> int:
    """Write ``plan``'s shards, config, the source's other files and ``card(plan, source
    hashes, shard count)`` into a hidden folder renamed to ``out`` at the end, under ``out``'s
    lock, after checking the free space (removed on any error). ``reader`` (default ``ckpt``)
    serves the parts' source tensors; ``io`` says how shards are written (:func:`wants_direct`).
    Returns the number of shards."""
    direct = wants_direct(io, plan.bytes_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(out.parent, plan.bytes_out, what=f"writing {out} ({plan.bytes_out} bytes)")
    with output_folder(out, overwrite=overwrite, what="output folder") as target:
        tmp = target.path
        tmp.mkdir()
        with ThreadPoolExecutor(1) as pool:
            hashes = pool.submit(_hash_sources, ckpt)
            shards = assign_shards(plan.tensors, max_shard_size)
            _write_shards(reader or ckpt, plan, shards, tmp, progress=progress, direct=direct)
            write_json(tmp / CONFIG_NAME, plan.config)
            for f in ckpt.other_files():
                if f.name != CARD_NAME:
                    shutil.copy2(f, tmp / f.name)
            write_json(tmp / CARD_NAME, card(plan, hashes.result(), len(shards)))
        target.commit()
    return len(shards)


def bound_malloc_retention() -> None:
    """Serve large allocations straight from the kernel (glibc only). glibc raises its mmap
    threshold as big blocks are freed, after which the 16-32 MiB chunk buffers of the compute
    threads come from per-thread arenas that keep the memory: resident size then grows to
    several times what is in use (measured 642 -> 422 MB peak on a 3 GB growth). A fixed 1 MiB
    threshold returns every freed chunk at once.

    This is process-wide and cannot be undone (glibc has no way back to its dynamic threshold),
    so :func:`grow` does not call it: the ``moegrow grow`` command, which owns its process, does;
    a program that embeds growth may call it too."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


@contextmanager
def _one_thread_per_kernel() -> Iterator[None]:
    """Run each torch kernel on the thread that calls it: the compute threads already keep the
    cores busy, and intra-op threads on top of them only contend (measured 59 -> 53 s on a
    23 GB growth with noise, 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _hash_sources(ckpt: Checkpoint) -> dict[str, str]:
    files = [ckpt.folder / CONFIG_NAME, *ckpt.weight_files]
    return {f.name: sha256_file(f) for f in files}


def shard_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def _write_shards(
    ckpt: Checkpoint,
    plan: Plan,
    shards: list[list[OutTensor]],
    folder: Path,
    *,
    progress: bool,
    direct: bool,
) -> None:
    from tqdm.auto import tqdm

    names = shard_names(len(shards))
    bar = tqdm(total=plan.bytes_out, unit="B", unit_scale=True, desc="grow", disable=not progress)
    part_jobs = PartJobs(
        ckpt,
        plan.spec.noise,
        plan.spec.seed,
        lambda n: seed_name(plan, n),
        sampler=plan.spec.sampler,
        direct=direct,
    )
    buffers = OutputBuffers()
    weight_map: dict[str, str] = {}
    with bar, ThreadPoolExecutor(COMPUTE_THREADS) as pool:
        try:
            for shard_name, tensors in zip(names, shards):
                entries = [(t.name, t.dtype, t.shape) for t in tensors]
                writer = StreamingShardWriter(
                    folder / shard_name, entries, {"format": "pt"}, direct=direct
                )
                try:
                    jobs = (
                        job
                        for t in tensors
                        for job in part_jobs.jobs(t, writer.path, writer.file_offsets[t.name])
                    )
                    run_jobs(writer, jobs, pool, bar.update, buffers)
                    writer.finish()
                finally:
                    writer.close()
                weight_map.update((t.name, shard_name) for t in tensors)
        finally:
            part_jobs.close()
    if len(shards) > 1:
        stats = tensor_stats(plan.tensors, plan.family, plan.config)
        index = {
            "metadata": {"total_size": plan.bytes_out, "total_parameters": stats.total},
            "weight_map": dict(sorted(weight_map.items())),
        }
        write_json(folder / INDEX_FILE, index)


def seed_name(plan: Plan, name: str) -> str:
    """The name of an output tensor in the width growth of the source alone: a layer tensor's
    index is replaced by that of the source layer it copies. It seeds the tensor's noise and
    random rows, so that growing depth and width at once gives the bytes of growing width, then
    depth: the copies of a layer are identical, noise included."""
    m = plan.family.layer_regex.match(name)
    if m is None:
        return name
    j, grown = int(m.group("i")), len(plan.layer_map)
    if j < grown:
        source = plan.layer_map[j]
    else:  # multi-token-prediction layers follow the model's layers, re-indexed
        source = j - grown + num_layers(plan.source_config, plan.family)
    return f"{plan.family.layer_prefix}{source}.{m.group('rest')}"


def card_provenance(plan: Plan, source_hashes: dict[str, str]) -> dict:
    """What every card starts with: the version that wrote it, when, and the source it read."""
    return {
        "moegrow_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "path": str(Path(plan.source).resolve()),
            "model_type": plan.source_config.get("model_type"),
            "sha256": source_hashes,
        },
    }


def growth_card(plan: Plan, source_hashes: dict[str, str], num_shards: int) -> dict:
    before = tensor_stats(
        plan.source_tensors.values(),
        plan.family,
        plan.source_config,
    )
    after = tensor_stats(plan.tensors, plan.family, plan.config)
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
        **card_provenance(plan, source_hashes),
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
    assert isinstance(s, GrowthSpec), "describe() is for growth plans"
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
