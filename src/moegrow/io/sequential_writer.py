"""Appending a large new file at the speed of the disk: aligned blocks, written in the background,
past the page cache where the file system allows it.

A growth writes tens to hundreds of GB that it never reads back (except the few tensors it
copies from its own earlier output). Through the page cache every written byte first needs a
fresh page of memory, and the kernel's copy into it, then writeback: on a KVM guest with free page
reporting, fresh pages cost the host's page faults, and writing 4 GB took 25.5 s (0.15 GB/s,
20.6 s of kernel CPU) where the same bytes written with ``O_DIRECT`` in 8 MiB blocks took 1.2 s
(3.4 GB/s); ``cp`` of a growth's bytes ran at 0.18 GB/s, one core in the kernel throughout
(2026-11-29; README, Performance). Direct writes also leave the machine's page cache to the
programs that use it.

:class:`SequentialWriter` gathers appended bytes in page-aligned blocks of :data:`BLOCK` bytes
and hands each full block to one I/O thread, :data:`DEPTH` blocks in flight, so that filling the
next block (copying, computing) overlaps writing the last. With ``direct`` the file is opened
with ``O_DIRECT``; a file system that refuses it (tmpfs, some network file systems) gets the
same blocks through the page cache instead, written in pieces of :data:`CACHED_PIECE` bytes. The
last block is written padded to :data:`ALIGN` and the file cut to its size; :meth:`close` makes
the data durable (``fdatasync``) before it returns.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from moegrow.errors import CheckpointError, MoegrowError

#: Alignment of direct I/O offsets, lengths and buffers: the largest logical block size of
#: common devices (4Kn disks); 512-byte devices accept it too.
ALIGN = 4096
#: Bytes per write: large enough that a direct write runs at the disk's speed.
BLOCK = 8 << 20
#: Blocks in flight (being written or waiting) while the next one is filled.
DEPTH = 3
#: Largest single ``write`` through the page cache. Appending 1.34 GB to a new file on ext4
#: (Linux 6.18, a KVM guest with free page reporting) took 0.28 s in 1 MiB calls, 1.1-1.8 s in
#: 2 MiB calls and 7.3-8.7 s in 8 MiB calls (bench/write_size.py; README, Performance).
CACHED_PIECE = 1 << 20
#: ``O_DIRECT`` where the platform has it (Linux); 0 elsewhere, where writes use the page cache.
O_DIRECT = getattr(os, "O_DIRECT", 0)


#: How output files are written (``--io``): ``auto`` goes past the page cache from
#: :data:`DIRECT_MIN_BYTES` of output on, ``direct`` always, ``cached`` never.
IO_MODES = ("auto", "direct", "cached")
#: Output size from which ``auto`` writes past the page cache: smaller outputs are usually read
#: again soon (evaluated, trained) and are served from the page cache then.
DIRECT_MIN_BYTES = 1 << 30


def check_io(io: str) -> None:
    """Refuse an ``--io`` that is not one of :data:`IO_MODES`."""
    if io not in IO_MODES:
        raise MoegrowError(f"--io must be one of {', '.join(IO_MODES)}, got {io!r}")


def wants_direct(io: str, nbytes: int) -> bool:
    """Whether ``--io io`` writes an output of ``nbytes`` bytes past the page cache."""
    check_io(io)
    return io == "direct" or (io == "auto" and nbytes >= DIRECT_MIN_BYTES)


#: Makes a file's data durable: ``fdatasync`` where there is one (not on macOS).
_sync_data = getattr(os, "fdatasync", os.fsync)


def _round_up(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


def open_for_reading(path: Path, direct: bool) -> int:
    """A read-only descriptor of ``path``; with ``direct``, past the page cache where allowed
    (:meth:`SequentialWriter.append_from` reads it in aligned blocks)."""
    if direct and O_DIRECT:
        try:
            return os.open(path, os.O_RDONLY | O_DIRECT)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
    return os.open(path, os.O_RDONLY)


def is_direct(fd: int) -> bool:
    return bool(O_DIRECT) and bool(fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT)


class SequentialWriter:
    """Append bytes to a new file ``path`` (created or truncated) in aligned background writes.

    :meth:`append`, :meth:`append_from` and :meth:`append_zeros` add bytes at the end;
    :meth:`flush_visible` makes every byte appended so far readable by other descriptors;
    :meth:`close` writes the rest, cuts the file to :attr:`size` and syncs it; :meth:`abort`
    stops without either. Not thread-safe: one thread appends.
    """

    def __init__(self, path: Path, *, direct: bool):
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.direct = bool(direct and O_DIRECT)
        if self.direct:
            try:
                self.fd = os.open(self.path, flags | O_DIRECT, 0o644)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: this file system refuses O_DIRECT
                    raise
                self.direct = False
        if not self.direct:
            self.fd = os.open(self.path, flags, 0o644)
        self.size = 0
        """Bytes appended so far."""
        self._free = [mmap.mmap(-1, BLOCK) for _ in range(DEPTH)]  # page-aligned
        self._block = self._free.pop()
        self._view = memoryview(self._block)
        self._base = 0  # file offset of the current block
        self._fill = 0  # bytes of the current block in use
        self._in_flight: deque[tuple[Future, mmap.mmap | None]] = deque()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="moegrow-write")
        self._scratch: memoryview | None = None  # aligned reads of direct descriptors

    # -- appending ------------------------------------------------------------------------------
    def append(self, data) -> None:
        """Append the bytes of ``data`` (any buffer)."""
        view = memoryview(data).cast("B")
        while view:
            n = min(len(view), BLOCK - self._fill)
            self._view[self._fill : self._fill + n] = view[:n]
            self._advance(n)
            view = view[n:]

    def append_zeros(self, nbytes: int) -> None:
        zeros = memoryview(bytes(min(nbytes, BLOCK)))
        while nbytes:
            n = min(nbytes, BLOCK - self._fill)
            self._view[self._fill : self._fill + n] = zeros[:n]
            self._advance(n)
            nbytes -= n

    def append_from(self, src_fd: int, offset: int, nbytes: int, *, name: str = "") -> None:
        """Append ``nbytes`` of the file ``src_fd`` from ``offset`` on, read straight into the
        block (aligned reads through a scratch block if ``src_fd`` is opened ``O_DIRECT``).
        Raises :class:`CheckpointError` naming ``name`` if the file ends first."""
        direct_src = is_direct(src_fd)
        done = 0
        while done < nbytes:
            want = min(nbytes - done, BLOCK - self._fill)
            dest = self._view[self._fill : self._fill + want]
            if direct_src:
                got = self._read_aligned(src_fd, offset + done, dest)
            else:
                got = os.preadv(src_fd, [dest], offset + done)
            if got == 0:
                raise CheckpointError(
                    f"{name or 'source file'}: ended after {done} of the {nbytes} bytes to copy "
                    f"from offset {offset} (truncated while being read?)"
                )
            self._advance(got)
            done += got

    def _read_aligned(self, fd: int, offset: int, dest: memoryview) -> int:
        """Read up to ``len(dest)`` bytes at ``offset`` of a direct descriptor into ``dest``
        through an aligned scratch block; returns how many (0 at the end of the file)."""
        if self._scratch is None:
            self._scratch = memoryview(mmap.mmap(-1, BLOCK + ALIGN))
        start = offset - offset % ALIGN
        length = min(_round_up(offset + len(dest)) - start, len(self._scratch))
        got = os.preadv(fd, [self._scratch[:length]], start)
        n = max(0, min(got - (offset - start), len(dest)))
        dest[:n] = self._scratch[offset - start : offset - start + n]
        return n

    def _advance(self, n: int) -> None:
        self._fill += n
        self.size += n
        if self._fill == BLOCK:
            self._submit(self._block, BLOCK)
            self._block = self._take()
            self._view = memoryview(self._block)
            self._base += BLOCK
            self._fill = 0

    # -- writing --------------------------------------------------------------------------------
    def _submit(self, block: mmap.mmap, length: int, *, keep: bool = False) -> None:
        """Write ``length`` bytes of ``block`` at the current block's offset in the background;
        ``keep``: the block stays the current one (not returned to the free list)."""
        future = self._io.submit(self._write, block, length, self._base)
        self._in_flight.append((future, None if keep else block))

    def _take(self) -> mmap.mmap:
        while not self._free:
            self._complete_one()
        return self._free.pop()

    def _complete_one(self) -> None:
        future, block = self._in_flight.popleft()
        future.result()
        if block is not None:
            self._free.append(block)

    def _write(self, block: mmap.mmap, length: int, offset: int) -> None:
        view = memoryview(block)[:length]
        done = 0
        while done < length:
            piece = view[done:] if self.direct else view[done : done + CACHED_PIECE]
            try:
                n = os.pwrite(self.fd, piece, offset + done)
            except OSError as e:
                if not (self.direct and e.errno == errno.EINVAL):
                    raise OSError(e.errno, e.strerror, str(self.path)) from e  # name the file
                self._stop_direct()  # the file system opened it O_DIRECT but refuses the write
                continue
            done += n

    def _stop_direct(self) -> None:
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~O_DIRECT)
        self.direct = False

    def _padded(self) -> int:
        """The current block's bytes, rounded up to a length a direct write accepts (the
        padding is cut off by :meth:`close` or overwritten by the block's next write)."""
        return _round_up(self._fill) if self.direct else self._fill

    def _drain(self) -> None:
        while self._in_flight:
            self._complete_one()

    def flush_visible(self) -> None:
        """Write (and wait for) every byte appended so far, so that another descriptor of the
        file reads them. The current block stays current: its next write covers it again."""
        if self._fill:
            self._submit(self._block, self._padded(), keep=True)
        self._drain()

    def close(self) -> None:
        """Write the rest, cut the file to :attr:`size`, make it durable and close it."""
        if self.fd < 0:
            return
        try:
            if self._fill:
                self._submit(self._block, self._padded(), keep=True)
            self._drain()
            os.ftruncate(self.fd, self.size)
            _sync_data(self.fd)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop: wait for writes already started, close the file (left as it is)."""
        self._io.shutdown(wait=True, cancel_futures=True)
        self._in_flight.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
