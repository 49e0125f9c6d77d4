"""How the way bytes are appended to a new file changes the speed of writing it.

:class:`moegrow.io.sequential_writer.SequentialWriter` (under every grown shard) writes 8 MiB
blocks past the page cache (``O_DIRECT``) for outputs of 1 GiB and more, and through the page
cache in ``write`` calls of at most :data:`~moegrow.io.sequential_writer.CACHED_PIECE` bytes
otherwise. This script appends the same bytes to a new file in the folder given (default: the
system's temporary folder) in each of those two ways, with plain ``write`` calls of several sizes,
and with ``copy_file_range`` from a source file of the same size (what ``cp`` uses), in
interleaved rounds. It prints the time until the last call returned, relative to 1 MiB calls,
and the time of the ``fsync`` after it (the bytes on the disk: what a caller that needs them
durable waits for in all).

Each measurement starts after a pause (``--settle``), so that every variant starts from the same
state of the machine's free memory; the file is deleted afterwards.

Run::

    .venv/bin/python bench/write_size.py --gb 1.34 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from moegrow.io.sequential_writer import SequentialWriter

MIB = 1 << 20
SIZES = (MIB // 4, MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB)
BUFFER = 16 * MIB


def synced(fd: int, start: float) -> tuple[float, float]:
    """(seconds since ``start``, seconds of an ``fsync`` of ``fd`` now)."""
    calls = time.perf_counter() - start
    os.fsync(fd)
    return calls, time.perf_counter() - start - calls


def append_with_write(
    path: Path, total: int, piece: int, buffer: memoryview
) -> tuple[float, float]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"\0" * 4040)  # tensor data in a safetensors file starts unaligned
        start = time.perf_counter()
        done = 0
        while done < total:
            block = buffer[: min(len(buffer), total - done)]
            for at in range(0, len(block), piece):
                view = block[at : at + piece]
                while view:
                    view = view[os.write(fd, view) :]
            done += len(block)
        return synced(fd, start)
    finally:
        os.close(fd)
        path.unlink()


def append_with_sequential_writer(
    path: Path, total: int, buffer: memoryview, direct: bool
) -> tuple[float, float]:
    w = SequentialWriter(path, direct=direct)
    try:
        w.append(b"\0" * 4040)
        start = time.perf_counter()
        done = 0
        while done < total:
            block = buffer[: min(len(buffer), total - done)]
            w.append(block)
            done += len(block)
        w.flush_visible()  # every block written (past the cache, or into it)
        calls = time.perf_counter() - start
        w.close()  # the rest: cut to size, fdatasync
        return calls, time.perf_counter() - start - calls
    finally:
        w.abort()
        path.unlink()


def append_with_copy_file_range(path: Path, source: Path, total: int) -> tuple[float, float]:
    src = os.open(source, os.O_RDONLY)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"\0" * 4040)
        start = time.perf_counter()
        done = 0
        while done < total:
            done += os.copy_file_range(src, fd, total - done, done)
        return synced(fd, start)
    finally:
        os.close(fd)
        os.close(src)
        path.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--gb", type=float, default=1.34, help="bytes appended per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--settle", type=float, default=3.0, help="seconds of pause before each")
    a = p.parse_args()
    total = int(a.gb * 1e9)
    buffer = memoryview(np.full(BUFFER, 7, dtype=np.uint8)).cast("B")
    target = a.dir / "moegrow-write-size.bin"
    source = a.dir / "moegrow-write-size-source.bin"
    with open(source, "wb") as f:  # the copy's source, read once into the page cache
        for at in range(0, total, BUFFER):
            f.write(buffer[: min(BUFFER, total - at)])
    try:
        times: dict[str, list[tuple[float, float]]] = {}

        def measure(label: str, fn) -> None:
            time.sleep(a.settle)
            times.setdefault(label, []).append(fn())

        for _ in range(a.rounds):
            for piece in SIZES:
                measure(
                    f"write, {piece / MIB:g} MiB calls",
                    lambda piece=piece: append_with_write(target, total, piece, buffer),
                )
            for direct in (True, False):
                measure(
                    f"SequentialWriter, {'direct' if direct else 'cached'}",
                    lambda d=direct: append_with_sequential_writer(target, total, buffer, d),
                )
            measure(
                "copy_file_range (cp)",
                lambda: append_with_copy_file_range(target, source, total),
            )
    finally:
        source.unlink()
    reference = statistics.median(t for t, _ in times["write, 1 MiB calls"])
    print(f"appending {total / 1e9:.2f} GB to a new file in {a.dir} ({a.rounds} rounds)")
    print(
        f"{'how':32} {'calls s':>8} {'GB/s':>6} {'x 1 MiB':>8} {'+ fsync s':>10} {'GB/s':>6}"
        "  per round (calls + fsync s)"
    )
    for label, ts in times.items():
        calls = statistics.median(t for t, _ in ts)
        both = statistics.median(t + f for t, f in ts)
        rounds = ", ".join(f"{t:.2f} + {f:.2f}" for t, f in ts)
        print(
            f"{label:32} {calls:8.2f} {total / 1e9 / calls:6.2f} {calls / reference:8.2f} "
            f"{both - calls:10.2f} {total / 1e9 / both:6.2f}  {rounds}"
        )


if __name__ == "__main__":
    main()
