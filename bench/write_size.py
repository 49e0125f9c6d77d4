"""How the size of each ``write`` call changes the speed of appending to a new file.

:class:`moegrow.io.safetensors_io.StreamingShardWriter` appends computed tensor bytes (noised
experts, scaled or averaged tensors) with ``write``, in pieces of at most
:data:`~moegrow.io.safetensors_io.WRITE_PIECE`. This script appends the same bytes to a new file
in the folder given (default: the system's temporary folder) with ``write`` calls of several
sizes, and with ``copy_file_range`` from a source file of the same size (what the copy path and
``cp`` use), in interleaved rounds, and prints the time of each relative to 1 MiB calls.

Each measurement starts after a pause (``--settle``), so that every variant starts from the same
state of the machine's free memory; the file is deleted afterwards, no ``sync`` is included (the
bytes are in the page cache: this measures the cost of the call, not the disk).

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

MIB = 1 << 20
SIZES = (MIB // 4, MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB)
BUFFER = 16 * MIB


def append_with_write(path: Path, total: int, piece: int, buffer: memoryview) -> float:
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
        return time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()


def append_with_copy_file_range(path: Path, source: Path, total: int) -> float:
    src = os.open(source, os.O_RDONLY)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"\0" * 4040)
        start = time.perf_counter()
        done = 0
        while done < total:
            done += os.copy_file_range(src, fd, total - done, done)
        return time.perf_counter() - start
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
        times: dict[str, list[float]] = {}
        for _ in range(a.rounds):
            for piece in SIZES:
                time.sleep(a.settle)
                label = f"write, {piece / MIB:g} MiB calls"
                times.setdefault(label, []).append(append_with_write(target, total, piece, buffer))
            time.sleep(a.settle)
            label = "copy_file_range (the copy path, cp)"
            times.setdefault(label, []).append(append_with_copy_file_range(target, source, total))
    finally:
        source.unlink()
    reference = statistics.median(times["write, 1 MiB calls"])
    print(f"appending {total / 1e9:.2f} GB to a new file in {a.dir} ({a.rounds} rounds)")
    print(f"{'how':40} {'median s':>9} {'GB/s':>7} {'x 1 MiB time':>13}  per round (s)")
    for label, ts in times.items():
        m = statistics.median(ts)
        rounds = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{label:40} {m:9.2f} {total / 1e9 / m:7.2f} {m / reference:13.2f}  {rounds}")


if __name__ == "__main__":
    main()
