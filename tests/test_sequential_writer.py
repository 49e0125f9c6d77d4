"""The sequential writer: the same bytes past the page cache or through it, a clean fallback where
the file system refuses direct I/O, errors that reach the caller, and growths whose bytes do not
depend on how they were written."""

from __future__ import annotations

import errno
import os

import pytest

from moegrow.errors import CheckpointError, MoegrowError
from moegrow.io import sequential_writer as sw
from moegrow.io.sequential_writer import (
    ALIGN,
    SequentialWriter,
    open_for_reading,
    wants_direct,
)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 alignment units, so that a few KB cross many block boundaries."""
    monkeypatch.setattr(sw, "BLOCK", 3 * ALIGN)


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed * 7 + i // 251) % 256 for i in range(n))


def _source(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(_pattern(6 * ALIGN + 77, 2))
    return src


def _write_mixed(path, direct: bool, src) -> bytes:
    """Append bytes, zeros and ranges of ``src`` at odd sizes; return what the file must hold."""
    data = _pattern(5 * ALIGN + 123, 1)
    expect = bytearray()
    w = SequentialWriter(path, direct=direct)
    w.append(b"head")
    expect += b"head"
    w.append(data[:3000])
    expect += data[:3000]
    w.append_zeros(2 * ALIGN + 5)
    expect += bytes(2 * ALIGN + 5)
    fd = open_for_reading(src, direct)
    try:
        for offset, n in [(1, 7000), (4095, 9000), (0, src.stat().st_size)]:
            w.append_from(fd, offset, n, name=str(src))
            expect += src.read_bytes()[offset : offset + n]
    finally:
        os.close(fd)
    w.append(data)
    expect += data
    assert w.size == len(expect)
    w.close()
    return bytes(expect)


@pytest.mark.parametrize("direct", [False, True])
def test_bytes_round_trip(tmp_path, small_blocks, direct):
    src = _source(tmp_path)
    out = tmp_path / "out.bin"
    expect = _write_mixed(out, direct, src)
    assert out.read_bytes() == expect  # padding of the last block cut off


def test_bytes_visible_mid_write(tmp_path, small_blocks):
    """After flush_visible another descriptor reads every byte appended so far, including those
    of a block still being filled; later appends do not disturb them."""
    out = tmp_path / "out.bin"
    data = _pattern(4 * ALIGN + 10, 3)
    w = SequentialWriter(out, direct=True)
    w.append(data)
    w.flush_visible()
    fd = open_for_reading(out, w.direct)
    try:
        w.append_from(fd, 5, len(data) - 5, name="out")  # a copy of the file's own bytes
    finally:
        os.close(fd)
    w.close()
    assert out.read_bytes() == data + data[5:]


def test_source_that_ends_early_is_a_clean_error(tmp_path, small_blocks):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)
    w = SequentialWriter(tmp_path / "out.bin", direct=True)
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(CheckpointError, match=r"src\.bin.*ended after 90 of the 200 bytes"):
            w.append_from(fd, 10, 200, name=str(src))
    finally:
        os.close(fd)
        w.abort()


def test_falls_back_where_direct_open_is_refused(tmp_path, monkeypatch, small_blocks):
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & sw.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    src = _source(tmp_path)
    w = SequentialWriter(tmp_path / "probe", direct=True)
    assert not w.direct
    w.abort()
    out = tmp_path / "out.bin"
    expect = _write_mixed(out, True, src)
    assert out.read_bytes() == expect


@pytest.mark.skipif(not sw.O_DIRECT, reason="no O_DIRECT on this platform")
def test_falls_back_where_direct_writes_are_refused(tmp_path, monkeypatch, small_blocks):
    """A file system that opens O_DIRECT but refuses the writes (EINVAL) gets the same bytes
    through the page cache."""
    real_pwrite = os.pwrite
    refused = []

    def picky(fd, data, offset):
        if sw.is_direct(fd):
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", picky)
    src = _source(tmp_path)
    out = tmp_path / "out.bin"
    expect = _write_mixed(out, True, src)
    assert refused == [0] and out.read_bytes() == expect


def test_write_errors_reach_the_caller(tmp_path, monkeypatch, small_blocks):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    w = SequentialWriter(tmp_path / "out.bin", direct=True)
    with pytest.raises(OSError, match="No space left") as caught:
        for _ in range(10):
            w.append(bytes(ALIGN))
        w.close()
    w.abort()
    assert w.fd == -1
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(w.path)


def test_a_full_disk_is_one_line_naming_the_shard(tiny, tmp_path, monkeypatch, run_cli):
    real_pwrite = os.pwrite

    def full(fd, data, offset):
        if len(data) < 64:  # the output folder's lock file takes its pid
            return real_pwrite(fd, data, offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    out = tmp_path / "out"
    code, _, err = run_cli("grow", tiny("mixtral", num_layers=2), out, "--depth", "2", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ".safetensors: the disk is full" in err and not out.exists()


def test_io_modes():
    assert wants_direct("direct", 1) and not wants_direct("cached", 10**12)
    assert wants_direct("auto", sw.DIRECT_MIN_BYTES) and not wants_direct("auto", 1000)
    with pytest.raises(MoegrowError, match="--io must be one of auto, direct, cached, got 'fast'"):
        wants_direct("fast", 0)


@pytest.mark.parametrize("shard", ["1GB", "200KB"])
def test_growth_bytes_do_not_depend_on_the_io_mode(tiny, tmp_path, small_blocks, shard):
    """Depth x2 (repeated noised tensors copied from the output, in the same shard or an
    earlier one) and width x2 with noise: direct and cached writes give the same files."""
    from moegrow.growth.grow import grow
    from moegrow.growth.spec import GrowthSpec

    src = tiny("mixtral", num_layers=2)
    spec = GrowthSpec(depth=2, width=2)
    outs = {}
    for io in ("direct", "cached"):
        outs[io] = tmp_path / io
        grow(src, outs[io], spec, max_shard_size=shard, progress=False, io=io)
    names = sorted(p.name for p in outs["direct"].iterdir())
    assert names == sorted(p.name for p in outs["cached"].iterdir())
    shards = [n for n in names if n.endswith(".safetensors")]
    assert (len(shards) == 1) == (shard == "1GB")
    for name in shards:
        assert (outs["direct"] / name).read_bytes() == (outs["cached"] / name).read_bytes()
