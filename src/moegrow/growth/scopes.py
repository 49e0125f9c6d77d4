"""Source byte ranges read once and shared by the compute jobs that need them.

Adding noise to a copied tensor needs the standard deviation of a whole range (the expert's
rows, or the whole router) before the first chunk of noise can be added. Rather than read the
range once for its std and again chunk by chunk for the noise, the first job that needs it reads
it into a buffer (computing the std while each block is still in the cache), and every job of
the range takes its bytes from there. The jobs of an output tensor hold its ranges from the
moment the first of them is created; when the last lets go, the buffer goes back to a small
free list for the next range. Jobs are created at most
:data:`~moegrow.growth.operators.WINDOW` ahead of the writer, so at most a couple of large
ranges are resident at a time (two tensors' bytes, the memory bound of a growth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Lock

import numpy as np

#: Freed range buffers kept for reuse (their pages stay mapped, so reuse costs no page faults).
KEEP_FREE = 2

ScopeKey = tuple[str, int, int]
"""(tensor name, first byte, byte count) of a range of a source tensor."""


@dataclass
class _Scope:
    holders: int = 0
    lock: Lock = field(default_factory=Lock)
    buffer: np.ndarray | None = None
    std: float = 0.0


class ScopeCache:
    """Ranges of source tensors in memory while jobs hold them."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._scopes: dict[ScopeKey, _Scope] = {}
        self._free: list[np.ndarray] = []

    def hold(self, key: ScopeKey, jobs: int = 1) -> None:
        """Announce ``jobs`` jobs that will each :meth:`get` ``key`` and then :meth:`release`
        it (all the jobs of a part at once: the range stays while any of them is to come)."""
        with self._lock:
            self._scopes.setdefault(key, _Scope()).holders += jobs

    def get(
        self, key: ScopeKey, load: Callable[[ScopeKey, memoryview], float]
    ) -> tuple[memoryview, float]:
        """The range's bytes and std; the first caller fills them with ``load(key, view)``
        (which returns the std) while the others wait."""
        with self._lock:
            scope = self._scopes[key]
        with scope.lock:
            if scope.buffer is None:
                buffer = self._take(key[2])
                scope.std = load(key, memoryview(buffer)[: key[2]])  # type: ignore[arg-type]
                scope.buffer = buffer
        return memoryview(scope.buffer)[: key[2]], scope.std  # type: ignore[arg-type]

    def release(self, key: ScopeKey) -> None:
        """One holder is done with ``key``; the last frees its buffer."""
        with self._lock:
            scope = self._scopes[key]
            scope.holders -= 1
            if scope.holders == 0:
                del self._scopes[key]
                if scope.buffer is not None:
                    self._free.append(scope.buffer)
                    self._free.sort(key=len)
                    del self._free[:-KEEP_FREE]

    def _take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for i, buffer in enumerate(self._free):  # the smallest that fits, if not twice too big
                if nbytes <= len(buffer) <= 2 * nbytes:
                    return self._free.pop(i)
        return np.empty(max(nbytes, 1), dtype=np.uint8)  # pages are touched by the read

    def resident(self) -> int:
        """Bytes held in range buffers, in use or free (for tests)."""
        with self._lock:
            used = sum(len(s.buffer) for s in self._scopes.values() if s.buffer is not None)
            return used + sum(len(b) for b in self._free)
