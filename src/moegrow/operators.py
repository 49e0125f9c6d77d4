"""Tensor operators of a growth plan, as a stream of byte-producing jobs.

Every output tensor is a sequence of :class:`~moegrow.plan.Part` s; each part becomes jobs that
append bytes to the shard being written, in order:

- ``Copy``: a byte range of a source file, copied by the kernel (``copy_file_range``);
- ``Zeros``: zero bytes (zero-initialised residual projections; zero router biases);
- ``Compute``: a function producing one chunk of bytes (noise, scaling, random rows), run on a
  thread pool ahead of the writer (torch kernels and ``pread`` release the GIL).

Noise for a chunk is drawn from a generator seeded by (seed, output tensor name, part, chunk), so
the bytes do not depend on the order or the parallelism in which chunks are computed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from threading import Lock

import torch

from moegrow.checkpoint import Checkpoint
from moegrow.errors import GrowthError
from moegrow.plan import OutTensor, Part
from moegrow.safetensors_io import (
    DTYPE_SIZES,
    TORCH_DTYPES,
    StreamingShardWriter,
    tensor_bytes,
    to_torch,
)

#: Elements per compute chunk (16 MiB of float32 working memory each).
CHUNK_ELEMENTS = 1 << 22
#: Compute chunks in flight ahead of the writer (bounds memory: a few chunks per worker).
WINDOW = 6
#: Threads computing chunks (torch kernels and pread release the GIL).
COMPUTE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Copy:
    fd: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Zeros:
    nbytes: int


@dataclass(frozen=True)
class Compute:
    fn: Callable[[], memoryview]
    nbytes: int


Job = Copy | Zeros | Compute


def noise_seed(seed: int, tensor: str, part: int, chunk: int) -> int:
    """Seed of one chunk's noise, from the growth seed and the chunk's place in the output."""
    key = f"{seed}\0{tensor}\0{part}\0{chunk}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class PartJobs:
    """Turns the parts of output tensors into jobs."""

    def __init__(self, ckpt: Checkpoint, noise: float, seed: int):
        self.ckpt = ckpt
        self.noise = noise
        self.seed = seed
        self._std: dict[tuple[str, int, int], float] = {}
        self._lock = Lock()
        self._key_locks: dict[tuple[str, int, int], Lock] = {}
        self._local = threading.local()

    def jobs(self, t: OutTensor) -> Iterator[Job]:
        out_row = t.nbytes // t.shape[0] if t.shape and t.shape[0] else t.nbytes
        for index, part in enumerate(t.parts):
            if part.op == "zero":
                yield Zeros(part.rows * out_row)
            elif part.op == "random":
                yield from self._random(t, index, part, part.rows * out_row)
            else:
                yield from self._from_source(t, index, part)

    def _byte_range(self, part: Part) -> tuple[int, int]:
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        if part.start is None:
            return 0, info.nbytes
        row = info.nbytes // info.shape[0]
        return part.start * row, (part.stop - part.start) * row  # type: ignore[operator]

    def _from_source(self, t: OutTensor, index: int, part: Part) -> Iterator[Job]:
        info = self.ckpt.tensors[part.source]  # type: ignore[index]
        offset, nbytes = self._byte_range(part)
        if part.op == "copy" and part.scale == 1.0:
            yield Copy(self.ckpt.fd(info), info.offset + offset, nbytes)
            return
        if part.op == "noise":
            scope = (0, info.nbytes) if part.sigma == "source" else (offset, nbytes)
        step = CHUNK_ELEMENTS * info.itemsize
        for chunk, pos in enumerate(range(offset, offset + nbytes, step)):
            n = min(step, offset + nbytes - pos)

            def fn(pos=pos, n=n, chunk=chunk) -> memoryview:
                raw, work = self._buffers()
                self.ckpt.read_into(info.name, pos, raw[:n])
                x = to_torch(raw[:n], info.dtype)
                y = x
                if part.op == "noise":
                    std = self.noise * self.std(info.name, *scope)
                    gen = torch.Generator().manual_seed(noise_seed(self.seed, t.name, index, chunk))
                    # scaled noise drawn in place into this thread's buffer, then the weights added
                    y = work[: x.numel()] if x.dtype != torch.float64 else torch.empty_like(x)
                    y.normal_(0.0, std, generator=gen)
                    y += x
                if part.scale != 1.0:
                    y = _scaled(y, part.scale, info.name)
                # a fresh tensor: the thread's buffers are reused by its next chunk
                return tensor_bytes(y.to(x.dtype, copy=True))

            yield Compute(fn, n)

    def _buffers(self) -> tuple[memoryview, torch.Tensor]:
        """This thread's read buffer and float32 work buffer, allocated once: resident memory
        stays flat however many chunks pass through (the output of a chunk is its own)."""
        if not hasattr(self._local, "raw"):
            self._local.raw = memoryview(bytearray(CHUNK_ELEMENTS * 8))
            self._local.work = torch.empty(CHUNK_ELEMENTS, dtype=torch.float32)
        return self._local.raw, self._local.work

    def std(self, name: str, offset: int, nbytes: int) -> float:
        """Standard deviation of a byte range of a float tensor, streamed in float64; computed
        once per range even when several chunks ask for it at the same time."""
        key = (name, offset, nbytes)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, Lock())
        with key_lock:
            if key not in self._std:
                self._std[key] = self._compute_std(name, offset, nbytes)
            return self._std[key]

    def _compute_std(self, name: str, offset: int, nbytes: int) -> float:
        info = self.ckpt.tensors[name]
        step = CHUNK_ELEMENTS * info.itemsize
        total = total_sq = 0.0
        count = 0
        for pos in range(offset, offset + nbytes, step):
            n = min(step, offset + nbytes - pos)
            x = to_torch(self.ckpt.read_bytes(name, pos, n), info.dtype).double()
            total += float(x.sum())
            total_sq += float(x.square().sum())
            count += x.numel()
        mean = total / max(count, 1)
        return max(total_sq / max(count, 1) - mean * mean, 0.0) ** 0.5

    def _random(self, t: OutTensor, index: int, part: Part, nbytes: int) -> Iterator[Job]:
        if part.std == 0:
            yield Zeros(nbytes)
            return
        count = nbytes // DTYPE_SIZES[t.dtype]

        def fn() -> memoryview:
            gen = torch.Generator().manual_seed(noise_seed(self.seed, t.name, index, 0))
            values = torch.randn(count, generator=gen) * part.std
            return tensor_bytes(values.to(TORCH_DTYPES[t.dtype]))

        yield Compute(fn, nbytes)


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


def run_jobs(
    writer: StreamingShardWriter,
    jobs: Iterator[Job],
    pool: ThreadPoolExecutor,
    progress: Callable[[int], object],
) -> None:
    """Write jobs in order, keeping up to :data:`WINDOW` compute jobs running ahead. Copies and
    zeros are written as soon as everything before them is; a compute result is waited for only
    when the window is full (or at the end)."""
    pending: deque[Job | Future] = deque()
    in_flight = 0

    def drain_one() -> None:
        nonlocal in_flight
        item = pending.popleft()
        if isinstance(item, Future):
            in_flight -= 1
            data = item.result()
            writer.write(data)
            progress(memoryview(data).nbytes)
        elif isinstance(item, Copy):
            writer.copy_range(item.fd, item.offset, item.nbytes)
            progress(item.nbytes)
        else:
            writer.write_zeros(item.nbytes)
            progress(item.nbytes)

    try:
        for job in jobs:
            if isinstance(job, Compute):
                pending.append(pool.submit(job.fn))
                in_flight += 1
            else:
                pending.append(job)
            while pending and (in_flight >= WINDOW or not isinstance(pending[0], Future)):
                drain_one()
        while pending:
            drain_one()
    finally:
        for item in pending:
            if isinstance(item, Future):
                item.cancel()
