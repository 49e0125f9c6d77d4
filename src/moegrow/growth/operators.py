"""Tensor operators of a growth plan, as a stream of byte-producing jobs.

Every output tensor is a sequence of :class:`~moegrow.growth.plan.Part` s; each part becomes
jobs that append bytes to the shard being written, in order:

- ``Copy``: a byte range of a source file (or of the output written so far), read into the
  writer's block;
- ``Zeros``: zero bytes (zero-initialised residual projections; zero router biases);
- ``Compute``: a function filling one chunk of bytes (noise, scaling, random rows, the mean of
  several sources, column slices, re-drawn neurons of Drop-Upcycling), run on a thread pool
  ahead of the writer (torch kernels and ``pread`` release the GIL), into one of a few output
  buffers reused once written.

Noise is drawn by a sampler of :mod:`moegrow.growth.sampler`: by default element ``i`` of a
part's noise is a pure function of (seed, seed name of the tensor, part, ``i``); with the
``torch`` sampler a chunk's noise comes from a generator seeded by (seed, seed name, part,
chunk). Either way the bytes do not depend on the order or the parallelism in which chunks are
computed. A noised source range is read once (:mod:`moegrow.growth.scopes`): its std and its
noised chunks are computed from the same bytes in memory.
The seed name is the tensor's name in the width growth of the source alone (see
:func:`moegrow.growth.grow.seed_name`): the copies of a layer made by depth growth then have the
same bytes, as if depth were grown after width, and only the first is computed; the others are
copied from where it was written.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import torch

from moegrow.errors import GrowthError
from moegrow.growth.plan import OutTensor, Part
from moegrow.growth.sampler import SAMPLERS, TableSampler, stream_key
from moegrow.growth.scopes import ScopeCache, ScopeKey
from moegrow.io.checkpoint import Checkpoint
from moegrow.io.safetensors_io import (
    DTYPE_SIZES,
    StreamingShardWriter,
    to_torch,
)
from moegrow.io.sequential_writer import open_for_reading

#: Elements per compute chunk (16 MiB of float32 working memory each).
CHUNK_ELEMENTS = 1 << 22
#: Elements per block of a standard deviation's sums: fixed, so that the std (and so the noise)
#: does not depend on the chunk size.
STD_BLOCK = 1 << 22
#: Compute chunks in flight ahead of the writer (bounds memory: a few chunks per worker).
WINDOW = 6
#: Threads computing chunks (torch kernels and pread release the GIL).
COMPUTE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Copy:
    fd: int
    offset: int
    nbytes: int
    source: str = ""
    """The file read, for errors."""
    own_file: bool = False
    """The file read is the one being written (a repeated tensor earlier in the same shard)."""


@dataclass(frozen=True)
class Zeros:
    nbytes: int


@dataclass(frozen=True)
class Compute:
    fn: Callable[[memoryview], None]
    """Fills the ``nbytes`` bytes it is given."""
    nbytes: int


Job = Copy | Zeros | Compute


def noise_seed(seed: int, tensor: str, part: int, chunk: int) -> int:
    """Seed of one chunk's noise, from the growth seed and the chunk's place in the output."""
    key = f"{seed}\0{tensor}\0{part}\0{chunk}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class PartJobs:
    """Turns the parts of output tensors into jobs."""

    def __init__(
        self,
        ckpt: Checkpoint,
        noise: float,
        seed: int,
        seed_name: Callable[[str], str] = lambda name: name,
        sampler: str = "table",
        *,
        direct: bool = False,
    ):
        if sampler not in SAMPLERS:
            raise GrowthError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        self.sampler = sampler
        self._table = TableSampler() if sampler == "table" else None
        self._scopes = ScopeCache()
        self.ckpt = ckpt
        self.noise = noise
        self.seed = seed
        self.seed_name = seed_name
        """The name that seeds an output tensor's noise and random rows."""
        self._moments: dict[str, tuple[float, float]] = {}
        self._lock = Lock()
        self._key_locks: dict[str, Lock] = {}
        self._local = threading.local()
        self._written: dict[tuple, tuple[Path, int]] = {}
        self._output_fds: dict[Path, int] = {}
        self._direct = direct
        """Whether the output is written past the page cache (and so read back past it)."""

    def jobs(self, t: OutTensor, path: Path, offset: int) -> Iterator[Job]:
        """The jobs that write ``t``, whose bytes go at ``offset`` of the output file ``path``.
        A computed tensor with the same parts and seed name as one written before has the same
        bytes: they are copied from that one (read back past the page cache when the output is
        written past it)."""
        key = self._repeat_key(t)
        if key is not None:
            if key in self._written:
                first_path, first_offset = self._written[key]
                fd = self._output_fd(first_path)
                yield Copy(fd, first_offset, t.nbytes, str(first_path), first_path == path)
                return
            self._written[key] = (path, offset)
        out_row = t.nbytes // t.shape[0] if t.shape and t.shape[0] else t.nbytes
        for part in t.parts:  # the tensor's noise jobs hold their source ranges from now on
            if part.op == "noise":
                step = CHUNK_ELEMENTS * self.ckpt.tensors[part.source].itemsize  # type: ignore[index]
                self._scopes.hold(self._scope(part), len(range(0, self._byte_range(part)[1], step)))
        for index, part in enumerate(t.parts):
            if part.op == "zero" or (part.op == "fill" and part.value == 0):
                yield Zeros(part.rows * out_row)
            elif part.op == "fill":
                yield from self._fill(t, part.value, part.rows * out_row)
            elif part.op == "random":
                yield from self._random(t, index, part, part.rows * out_row)
            elif part.op == "ids":
                yield from self._ids(part)
            else:
                yield from self._from_source(t, index, part)

    def _repeat_key(self, t: OutTensor) -> tuple | None:
        """What the bytes of a computed tensor depend on (None for plain copies and zeros,
        which cost no more to write again)."""
        if all(p.op in ("copy", "zero") and p.scale == 1.0 for p in t.parts):
            return None
        return self.seed_name(t.name), t.dtype, t.shape, tuple(t.parts)

    def _output_fd(self, path: Path) -> int:
        if path not in self._output_fds:
            self._output_fds[path] = open_for_reading(path, self._direct)
        return self._output_fds[path]

    def close(self) -> None:
        """Close the output files opened to copy repeated tensors from."""
        for fd in self._output_fds.values():
            os.close(fd)
        self._output_fds.clear()

    def _scope(self, part: Part) -> ScopeKey:
        """The source range whose std sets a noise part's noise: the part, or its whole source."""
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        if part.sigma == "source":
            return info.name, 0, info.nbytes
        return info.name, *self._byte_range(part)

    def _byte_range(self, part: Part) -> tuple[int, int]:
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        if part.start is None:
            return 0, info.nbytes
        row = info.nbytes // info.shape[0]
        return part.start * row, (part.stop - part.start) * row  # type: ignore[operator]

    def _from_source(self, t: OutTensor, index: int, part: Part) -> Iterator[Job]:
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        index = index if part.key is None else part.key
        if part.cols is not None:
            yield from self._columns(t, index, part, info)
            return
        offset, nbytes = self._byte_range(part)
        if part.op == "copy" and part.scale == 1.0:
            yield Copy(self.ckpt.fd(info), info.offset + offset, nbytes, str(info.file))
            return
        step = CHUNK_ELEMENTS * info.itemsize
        if part.op == "noise":
            scope = self._scope(part)
            for chunk, pos in enumerate(range(offset, offset + nbytes, step)):
                n = min(step, offset + nbytes - pos)
                yield Compute(self._noise_job(t, index, part, scope, chunk, pos - offset, n), n)
            return
        for pos in range(offset, offset + nbytes, step):
            n = min(step, offset + nbytes - pos)

            def fn(out: memoryview, pos=pos, n=n) -> None:
                raw = self._buffers()[0][:n]
                self.ckpt.read_into(info.name, pos, raw)
                x = to_torch(raw, info.dtype)
                if part.op == "mean":
                    x = self._mean(x, raw, part, pos)
                to_torch(out, info.dtype).copy_(_scaled(x, part.scale, info.name))

            yield Compute(fn, n)

    def _mean(self, x: torch.Tensor, raw: memoryview, part: Part, pos: int) -> torch.Tensor:
        """The mean of the same bytes of ``part.source`` and ``part.others`` (tensors of equal
        dtype and shape in other checkpoints), in the work precision."""
        work = self._buffers()[1][: x.numel()]
        acc = x.clone() if x.dtype == torch.float64 else work.copy_(x)
        for other in part.others:
            self.ckpt.read_into(other, pos, raw)
            acc += to_torch(raw, self.ckpt.tensors[other].dtype)
        return acc.div_(1 + len(part.others))

    def _columns(self, t: OutTensor, index: int, part: Part, info) -> Iterator[Job]:
        """Columns ``c0:c1`` of the rows of a 2-D source, in chunks of whole source rows (read
        whole, sliced in memory); noise, when asked for, has the std of the whole source."""
        assert part.cols is not None and len(info.shape) == 2, (t.name, info.shape)
        c0, c1 = part.cols
        r0 = 0 if part.start is None else part.start
        r1 = info.shape[0] if part.stop is None else part.stop
        row_bytes = info.shape[1] * info.itemsize
        rows_per_chunk = max(1, CHUNK_ELEMENTS // info.shape[1])
        for chunk, r in enumerate(range(r0, r1, rows_per_chunk)):
            n = min(rows_per_chunk, r1 - r)

            def fn(out: memoryview, r=r, n=n, chunk=chunk) -> None:
                # statistics first: measuring them uses this thread's buffers too
                needs_moments = part.op == "noise" or part.drop
                mean, std = self.moments(info.name) if needs_moments else (0.0, 0.0)
                raw = self._buffers()[0]
                if raw.nbytes < n * row_bytes:  # a single row wider than a chunk
                    raw = memoryview(bytearray(n * row_bytes))
                raw = raw[: n * row_bytes]
                self.ckpt.read_into(info.name, r * row_bytes, raw)
                x = to_torch(raw, info.dtype, (n, info.shape[1]))[:, c0:c1]
                x = x.to(_work_dtype(x)) if part.op == "noise" or part.scale != 1.0 else x
                if part.op == "noise":
                    noise = torch.empty(x.numel(), dtype=torch.float32)
                    first = (r - r0) * (c1 - c0)
                    self._draw(t, index, chunk, first)(noise, self.noise * std)
                    x = x + noise.view(x.shape).to(x.dtype)
                if part.drop:
                    x = self._dropped(x, part, (mean, std), t, index, chunk, r - r0)
                if part.scale != 1.0:
                    x = x * part.scale
                to_torch(out, info.dtype, (n, c1 - c0)).copy_(x)

            yield Compute(fn, n * (c1 - c0) * info.itemsize)

    def _dropped(self, x, part: Part, moments, t: OutTensor, index: int, chunk: int, row: int):
        """Drop-Upcycling: the part's dropped neurons (rows of gate/up, columns of down: the
        same neurons for every tensor with the same ``drop_key``) re-drawn from N(mean, std^2)
        of the whole source tensor."""
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        rows = (part.start or 0, info.shape[0] if part.stop is None else part.stop)
        width = rows[1] - rows[0] if part.drop_axis == 0 else x.shape[1]
        dropped = drop_mask(self.seed, part.drop_key, width, part.drop)
        if part.drop_axis == 0:
            dropped = dropped[row : row + x.shape[0]]
        mean, std = moments
        seed = noise_seed(self.seed, self.seed_name(t.name) + "\0drop", index, chunk)
        fresh = torch.empty(x.shape, dtype=torch.float32).normal_(mean, std, generator=_gen(seed))
        x = x.to(_work_dtype(x)).clone()
        if part.drop_axis == 0:
            x[dropped] = fresh[dropped].to(x.dtype)
        else:
            x[:, dropped] = fresh[:, dropped].to(x.dtype)
        return x

    def _noise_job(
        self, t: OutTensor, index: int, part: Part, scope: ScopeKey, chunk: int, at: int, n: int
    ) -> Callable[[memoryview], None]:
        """The job filling the ``n`` bytes of chunk ``chunk`` of a noised part, ``at`` bytes
        from the part's start; it holds ``scope``, the source range whose std sets the noise."""
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        start = self._byte_range(part)[0] + at - scope[1]  # of the chunk, in the scope's bytes

        def fn(out: memoryview) -> None:
            try:
                raw, std = self._scopes.get(scope, self._load_scope)
                x = to_torch(raw[start : start + n], info.dtype)
                draw = self._draw(t, index, chunk, at // info.itemsize)
                dest = to_torch(out, info.dtype)
                if part.scale == 1.0 and dest.dtype != torch.float64:
                    self._noised(x, self.noise * std, draw, dest)
                else:
                    y = self._noised(x, self.noise * std, draw)
                    dest.copy_(_scaled(y, part.scale, info.name) if part.scale != 1.0 else y)
            finally:
                self._scopes.release(scope)

        return fn

    def _draw(
        self, t: OutTensor, index: int, chunk: int, first: int
    ) -> Callable[[torch.Tensor, float], None]:
        """What fills a buffer with the N(0, std^2) samples of one chunk of part ``index`` of
        ``t``, whose first element is element ``first`` of the part."""
        name = self.seed_name(t.name)
        if self._table is None:
            seed = noise_seed(self.seed, name, index, chunk)

            def fill(buf: torch.Tensor, std: float) -> None:
                buf.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))

            return fill
        key, table = stream_key(self.seed, name, index), self._table
        return lambda buf, std: table.fill(buf.numpy(), key, first, std)

    def _noised(
        self,
        x: torch.Tensor,
        std: float,
        draw: Callable[[torch.Tensor, float], None],
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` plus N(0, std^2) noise filled in by ``draw``, summed in the work precision
        (float32, or float64 for float64 weights) in this thread's buffers, and rounded into
        ``out`` when given."""
        if x.dtype == torch.float64:
            y, noise = torch.empty_like(x), torch.empty_like(x)
        else:
            _, work_y, work_noise = self._buffers()
            y, noise = work_y[: x.numel()], work_noise[: x.numel()]
        draw(noise, std)
        y.copy_(x).add_(noise)  # three plain kernels: a mixed-dtype add is 50 x slower here
        return y if out is None else out.copy_(y)

    def _buffers(self) -> tuple[memoryview, torch.Tensor, torch.Tensor]:
        """This thread's read buffer and two float32 work buffers, allocated once: nothing is
        allocated (and no page faulted in) per chunk, and resident memory stays flat however many
        chunks pass through."""
        if not hasattr(self._local, "raw"):
            self._local.raw = memoryview(bytearray(CHUNK_ELEMENTS * 8))
            self._local.work = torch.empty(2, max(CHUNK_ELEMENTS, STD_BLOCK), dtype=torch.float32)
        return self._local.raw, self._local.work[0], self._local.work[1]

    def std(self, name: str, offset: int, nbytes: int) -> float:
        """Standard deviation of a byte range of a float tensor (read for the occasion)."""
        scope = (name, offset, nbytes)
        self._scopes.hold(scope)
        try:
            return self._scopes.get(scope, self._load_scope)[1]
        finally:
            self._scopes.release(scope)

    def _load_scope(self, scope: ScopeKey, view: memoryview) -> float:
        """Read a source range into ``view`` and return its standard deviation, computed block
        by block while each block is in the cache (see :meth:`_block_moments`)."""
        name, offset, nbytes = scope
        step = STD_BLOCK * self.ckpt.tensors[name].itemsize
        return self._block_moments(name, offset, nbytes, lambda at: view[at : at + step])[1]

    def moments(self, name: str) -> tuple[float, float]:
        """Mean and standard deviation of a whole float tensor, read once through this thread's
        buffer and kept (column slices and Drop-Upcycling need those of the whole source)."""
        with self._lock:
            key_lock = self._key_locks.setdefault(name, Lock())
        with key_lock:
            if name not in self._moments:
                info = self.ckpt.tensors[name]
                raw = self._buffers()[0][: STD_BLOCK * info.itemsize]
                self._moments[name] = self._block_moments(name, 0, info.nbytes, lambda at: raw)
            return self._moments[name]

    def _block_moments(
        self, name: str, offset: int, nbytes: int, block_at: Callable[[int], memoryview]
    ) -> tuple[float, float]:
        """Mean and std of a byte range, read block by block into ``block_at(position)``: each
        block is shifted by the first block's mean (so the sums do not cancel) and summed in
        float32 (pairwise sums, a BLAS dot), the blocks' sums accumulated in float64."""
        info = self.ckpt.tensors[name]
        step = STD_BLOCK * info.itemsize
        work = self._buffers()[1]
        shift: float | None = None
        total = total_sq = 0.0
        count = 0
        for at in range(0, nbytes, step):
            block = block_at(at)[: min(step, nbytes - at)]
            self.ckpt.read_into(name, offset + at, block)
            x = to_torch(block, info.dtype)
            w = x.double() if x.dtype == torch.float64 else work[: x.numel()].copy_(x)
            if shift is None:
                shift = float(w.mean())
            w -= shift
            total += float(w.sum())
            total_sq += float(w.dot(w))
            count += w.numel()
        mean = total / max(count, 1)
        std = max(total_sq / max(count, 1) - mean * mean, 0.0) ** 0.5
        if not math.isfinite(std):  # checked once per range, never per byte
            raise GrowthError(
                f"tensor {name!r}: holds NaN or infinite values (std {std}), so noise relative "
                "to its std is undefined; repair the source checkpoint or pass --noise 0 to copy "
                "it as it is"
            )
        return mean + (shift or 0.0), std

    def _fill(self, t: OutTensor, value: float, nbytes: int) -> Iterator[Job]:
        step = CHUNK_ELEMENTS * DTYPE_SIZES[t.dtype]
        for pos in range(0, nbytes, step):

            def fn(out: memoryview) -> None:
                to_torch(out, t.dtype).fill_(value)

            yield Compute(fn, min(step, nbytes - pos))

    def _ids(self, part: Part) -> Iterator[Job]:
        """A table of expert indices ``[rows, k]`` rewritten for the grown experts: ``[rows,
        M*k]``, block m holding the m-th copy of every entry (see ``Part.ids``)."""
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        rows, k = info.shape
        lookup = torch.tensor(part.ids, dtype=torch.int64)  # [E, M]
        m = lookup.shape[1]
        row_bytes = k * info.itemsize
        rows_per_chunk = max(1, CHUNK_ELEMENTS // (k * m))
        for r in range(0, rows, rows_per_chunk):
            n = min(rows_per_chunk, rows - r)

            def fn(out: memoryview, r=r, n=n) -> None:
                raw = memoryview(bytearray(n * row_bytes))
                self.ckpt.read_into(info.name, r * row_bytes, raw)
                x = to_torch(raw, info.dtype, (n, k)).long()
                if n and (x.min() < 0 or x.max() >= lookup.shape[0]):
                    bad = x[(x < 0) | (x >= lookup.shape[0])][0].item()
                    raise GrowthError(
                        f"tensor {info.name!r}: expert index {bad} in rows {r}..{r + n - 1}, but "
                        f"the layer has experts 0..{lookup.shape[0] - 1}; the table is corrupt"
                    )
                new = lookup[x].permute(0, 2, 1).reshape(n, m * k)  # [n, k, M] -> [n, M*k]
                to_torch(out, info.dtype, (n, m * k)).copy_(new)

            yield Compute(fn, n * m * k * info.itemsize)

    def _random(self, t: OutTensor, index: int, part: Part, nbytes: int) -> Iterator[Job]:
        index = index if part.key is None else part.key
        if part.std == 0:
            yield Zeros(nbytes)
            return
        step = CHUNK_ELEMENTS * DTYPE_SIZES[t.dtype]
        for chunk, pos in enumerate(range(0, nbytes, step)):

            def fn(out: memoryview, chunk=chunk) -> None:
                dest = to_torch(out, t.dtype)
                values = self._buffers()[2][: dest.numel()]  # float32 samples
                self._draw(t, index, chunk, chunk * CHUNK_ELEMENTS)(values, part.std)
                dest.copy_(values)

            yield Compute(fn, min(step, nbytes - pos))


def drop_mask(seed: int, key: str, width: int, ratio: float) -> torch.Tensor:
    """Which of ``width`` neurons Drop-Upcycling re-initialises: ``round(ratio * width)`` of
    them, chosen by (seed, key) alone, so gate, up and down of one expert agree."""
    gen = _gen(noise_seed(seed, key, 0, 0))
    mask = torch.zeros(width, dtype=torch.bool)
    mask[torch.randperm(width, generator=gen)[: round(ratio * width)]] = True
    return mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _scaled(x: torch.Tensor, scale: float, name: str) -> torch.Tensor:
    """Multiply by ``scale``; MXFP4 exponents (``_scales``, uint8 with bias 127) take a
    power-of-two scale as a shift of the exponent."""
    if x.dtype == torch.uint8 and name.endswith("_scales"):
        shift = -torch.log2(torch.tensor(scale)).item()
        assert shift == int(shift) and shift >= 0, scale
        if bool((x < shift).any()):
            raise GrowthError(f"tensor {name!r}: an exponent is too small to scale by {scale}")
        return x - int(shift)
    return x.to(_work_dtype(x)) * scale


class OutputBuffers:
    """Output buffers of the compute jobs in flight, reused once their bytes are written: no
    memory is allocated (and no page faulted in) per chunk. At most :data:`WINDOW` are taken at
    a time, so that many exist; pages never touched (a buffer holds a float64 chunk, most are
    bf16) stay unallocated."""

    def __init__(self) -> None:
        self._free: list[torch.Tensor] = []

    def take(self, nbytes: int) -> torch.Tensor:
        while self._free:
            buf = self._free.pop()
            if buf.numel() >= nbytes:
                return buf
        return torch.empty(max(nbytes, CHUNK_ELEMENTS * 8), dtype=torch.uint8)

    def give(self, buf: torch.Tensor) -> None:
        self._free.append(buf)


def run_jobs(
    writer: StreamingShardWriter,
    jobs: Iterator[Job],
    pool: ThreadPoolExecutor,
    progress: Callable[[int], object],
    buffers: OutputBuffers,
) -> None:
    """Write jobs in order, keeping up to :data:`WINDOW` compute jobs running ahead. Copies and
    zeros are written as soon as everything before them is; a compute result is waited for only
    when the window is full (or at the end)."""
    pending: deque[Job | tuple[Future, torch.Tensor, int]] = deque()
    in_flight = 0

    def drain_one() -> None:
        nonlocal in_flight
        item = pending.popleft()
        if isinstance(item, tuple):
            future, buf, nbytes = item
            in_flight -= 1
            future.result()
            writer.write(buf.numpy()[:nbytes])
            buffers.give(buf)
            progress(nbytes)
        elif isinstance(item, Copy):
            if item.own_file:
                writer.flush_visible()
            writer.copy_range(item.fd, item.offset, item.nbytes, name=item.source)
            progress(item.nbytes)
        else:
            writer.write_zeros(item.nbytes)
            progress(item.nbytes)

    try:
        for job in jobs:
            if isinstance(job, Compute):
                buf = buffers.take(job.nbytes)
                view = memoryview(buf.numpy()[: job.nbytes])  # type: ignore[arg-type]
                pending.append((pool.submit(job.fn, view), buf, job.nbytes))
                in_flight += 1
            else:
                pending.append(job)
            while pending and (in_flight >= WINDOW or not isinstance(pending[0], tuple)):
                drain_one()
        while pending:
            drain_one()
    finally:
        for item in pending:
            if isinstance(item, tuple):
                item[0].cancel()
