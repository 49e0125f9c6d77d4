"""Gaussian noise for growth, drawn fast enough not to be what a growth waits for.

Two samplers make the noise of copied experts and the values of random rows:

- ``table`` (the default): sample ``i`` of a stream is a 16-bit lane of a counter-based hash,
  splitmix64 (Steele, Lea and Flood 2014) of the stream key and the counter ``i // 4``, looked
  up in a table of the 65 536 standard-normal quantiles ``Phi^-1((j + 1/2) / 65536)`` (rescaled
  to unit variance). Samples are a pure function of (key, index): the bytes do not depend on
  chunk sizes, thread counts or the order in which chunks are computed. The distribution is the
  normal one to within a Kolmogorov-Smirnov distance of 2^-16 (tested), finer than the 8-bit
  mantissa of bf16, with tails cut at 4.3 sigma (one sample in 65 536 is the outermost
  quantile). About 1 G samples/s on one core (``bench/sampler.py``);
- ``torch``: ``torch.Tensor.normal_`` from a generator seeded per chunk of
  :data:`~moegrow.growth.operators.CHUNK_ELEMENTS` elements, the sampler of earlier releases:
  it reproduces their bytes exactly.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from statistics import NormalDist

import numpy as np
import torch

SAMPLERS = ("table", "torch")
"""The noise samplers a growth can use (``--sampler``)."""

#: splitmix64's increment (the golden ratio in 64 bits) and its two multipliers.
_GAMMA = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1
#: 64-bit words hashed at a time: 128 KiB of scratch, which stays in the core's cache.
BLOCK_WORDS = 1 << 14
LANES = 4
"""Samples per 64-bit hash: four 16-bit table indices."""


def stream_key(seed: int, tensor: str, part: int) -> int:
    """The key of one part's noise stream, from the growth seed and the part's place."""
    digest = hashlib.blake2b(f"{seed}\0{tensor}\0{part}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def normal_table() -> np.ndarray:
    """The 65 536 standard-normal quantiles at the midpoints of equal-probability bins, in
    float64, rescaled so that the table's variance is exactly 1 (the cut tails would otherwise
    leave it 3e-4 short)."""
    inv = NormalDist().inv_cdf
    table = np.array([inv((j + 0.5) / 65536) for j in range(65536)], dtype=np.float64)
    table = (table - table[::-1]) / 2  # exactly symmetric: mean 0
    return table / np.sqrt(np.mean(table * table))


_TABLE: np.ndarray | None = None
_TABLE_LOCK = threading.Lock()


def _table() -> np.ndarray:
    global _TABLE
    with _TABLE_LOCK:
        if _TABLE is None:
            _TABLE = normal_table()
        return _TABLE


class TableSampler:
    """The ``table`` sampler. Thread-safe: each thread hashes in its own scratch buffers."""

    name = "table"

    def __init__(self) -> None:
        if sys.byteorder != "little":  # the lanes of a word are read as little-endian uint16
            raise RuntimeError("the table sampler needs a little-endian machine")
        self._table = _table()
        self._local = threading.local()
        self._counter = np.arange(BLOCK_WORDS, dtype=np.uint64) * np.uint64(_GAMMA)

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self._local, "z"):
            self._local.z = np.empty(BLOCK_WORDS, dtype=np.uint64)
            self._local.t = np.empty(BLOCK_WORDS, dtype=np.uint64)
            self._local.index = np.empty(LANES * BLOCK_WORDS, dtype=np.int32)
            self._local.scaled = {}
        return self._local.z, self._local.t

    def _scaled_table(self, std: float, dtype: np.dtype) -> torch.Tensor:
        """The table times ``std`` in ``dtype`` (the last few kept per thread)."""
        self._scratch()
        cache: dict = self._local.scaled
        key = (std, np.dtype(dtype).str)
        if key not in cache:
            if len(cache) >= 4:
                cache.pop(next(iter(cache)))
            cache[key] = torch.from_numpy((self._table * std).astype(dtype))
        return cache[key]

    def hash_words(self, key: int, first: int, count: int) -> np.ndarray:
        """splitmix64 outputs ``first .. first + count`` of the stream ``key`` (``count`` at
        most :data:`BLOCK_WORDS`), in this thread's scratch buffer."""
        z, t = self._scratch()
        z, t = z[:count], t[:count]
        np.add(self._counter[:count], np.uint64((key + (first + 1) * _GAMMA) & _MASK), out=z)
        np.right_shift(z, np.uint64(30), out=t)
        np.bitwise_xor(z, t, out=z)
        np.multiply(z, _M1, out=z)
        np.right_shift(z, np.uint64(27), out=t)
        np.bitwise_xor(z, t, out=z)
        np.multiply(z, _M2, out=z)
        np.right_shift(z, np.uint64(31), out=t)
        np.bitwise_xor(z, t, out=z)
        return z

    def fill(self, out: np.ndarray, key: int, start: int, std: float) -> None:
        """Samples ``start .. start + len(out)`` of stream ``key``, times ``std``, into the
        float32 or float64 array ``out``."""
        table = self._scaled_table(std, out.dtype)
        index = torch.from_numpy(self._local.index)
        dest = torch.from_numpy(out)
        n, pos = len(out), 0
        word, skip = divmod(start, LANES)
        while pos < n:
            count = min(BLOCK_WORDS, (skip + n - pos + LANES - 1) // LANES)
            lanes = self.hash_words(key, word, count).view(np.uint16)
            take = min(LANES * count - skip, n - pos)
            # uint16 -> int32 indices, then torch's gather (2-3 x numpy.take's rate here)
            np.copyto(self._local.index[:take], lanes[skip : skip + take], casting="unsafe")
            torch.index_select(table, 0, index[:take], out=dest[pos : pos + take])
            pos += take
            word += count
            skip = 0
