"""The safetensors file format, read lazily and written as a stream.

Layout (https://github.com/huggingface/safetensors, "Format"): an unsigned little-endian 64-bit
header length N, N bytes of UTF-8 JSON mapping each tensor name to ``{"dtype", "shape",
"data_offsets": [start, end]}`` (offsets relative to the first byte after the header) plus an
optional ``"__metadata__"`` string map, then the raw row-major little-endian tensor bytes.

The reader validates every header against the file before any byte is trusted. The writer knows
every tensor's dtype and shape up front, so it writes the header first and then streams tensor
bytes in order: a whole output shard never has to sit in memory.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from moegrow.errors import CheckpointError
from moegrow.io.sequential_writer import SequentialWriter

#: Bytes per element of each safetensors dtype this module reads and writes.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}

#: Floating-point dtypes that carry full-precision values (noise and scaling apply to these).
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})

TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I16": torch.int16,
    "U16": torch.uint16,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "F32": torch.float32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F64": torch.float64,
}

# A header larger than this is not a model header (safetensors itself caps it at 100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes live: ``nbytes`` bytes at absolute ``offset`` in ``file``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    offset: int
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES[self.dtype]


def numel(shape: tuple[int, ...] | list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate the header of a safetensors file.

    Returns the tensors by name and the ``__metadata__`` map. Raises :class:`CheckpointError`
    naming the file and tensor for a truncated file, a header running past the end of the file,
    an unknown dtype, a byte range that does not match dtype x shape, or overlapping or
    out-of-range offsets.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise CheckpointError(
            f"{path}: file is {size} bytes, too short to hold a safetensors header length (8 "
            "bytes); the file is truncated: copy or download it again"
        )
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8 or header_len > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{path}: header length {header_len} runs past the end of the file "
                f"({size - 8} bytes follow the length field); the file is truncated or not "
                "safetensors"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path}: header is not valid JSON ({e}); not a safetensors file"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is a JSON {type(header).__name__}, expected object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(
            f"{path}: __metadata__ must map strings to strings, got {str(metadata)[:80]}"
        )
    data_start = 8 + header_len
    data_len = size - data_start
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _tensor_info(path, name, entry, data_start, data_len)
    _check_no_overlap(path, tensors, data_start)
    return tensors, metadata


def _tensor_info(
    path: Path, name: str, entry: object, data_start: int, data_len: int
) -> TensorInfo:
    if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - entry.keys():
        raise CheckpointError(
            f"{path}: tensor {name!r}: header entry must have dtype, shape and data_offsets, "
            f"got {entry!r}"
        )
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise CheckpointError(
            f"{path}: tensor {name!r}: unsupported dtype {dtype!r}; supported: "
            f"{', '.join(DTYPE_SIZES)}"
        )
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise CheckpointError(f"{path}: tensor {name!r}: shape {shape!r} is not a list of sizes")
    if not (
        isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
    ):
        raise CheckpointError(
            f"{path}: tensor {name!r}: data_offsets {offsets!r} is not [start, end]"
        )
    start, end = offsets
    if not 0 <= start <= end:
        raise CheckpointError(f"{path}: tensor {name!r}: data_offsets {offsets} are out of order")
    expected = numel(shape) * DTYPE_SIZES[dtype]
    if end - start != expected:
        raise CheckpointError(
            f"{path}: tensor {name!r}: {dtype} x {shape} needs {expected} bytes, but data_offsets "
            f"{offsets} span {end - start}; the header is corrupt"
        )
    if end > data_len:
        raise CheckpointError(
            f"{path}: tensor {name!r}: data_offsets end at byte {end}, past the {data_len} data "
            "bytes in the file; the file is truncated: copy or download it again"
        )
    return TensorInfo(name, dtype, tuple(shape), path, data_start + start, end - start)


def _check_no_overlap(path: Path, tensors: dict[str, TensorInfo], data_start: int) -> None:
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors.values() if t.nbytes)
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:]):
        if start_b < end_a:
            raise CheckpointError(
                f"{path}: tensors {name_a!r} and {name_b!r} overlap (bytes "
                f"{start_b - data_start}..{end_a - data_start}); the header is corrupt"
            )


def to_torch(buffer: bytes | bytearray | memoryview, dtype: str, shape=None) -> torch.Tensor:
    """View raw little-endian bytes as a tensor of a safetensors dtype (no copy when writable)."""
    if len(buffer) == 0:
        t = torch.empty(0, dtype=TORCH_DTYPES[dtype])
    else:
        if isinstance(buffer, bytes):
            buffer = bytearray(buffer)
        t = torch.frombuffer(buffer, dtype=TORCH_DTYPES[dtype])
    return t.reshape(shape) if shape is not None else t


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a contiguous CPU tensor (a view, no copy)."""
    flat = t.contiguous().reshape(-1)  # a 0-dim tensor cannot be viewed as bytes
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")  # type: ignore[arg-type]


def pread_exact(fd: int, nbytes: int, offset: int, *, name: str = "") -> bytearray:
    """Read exactly ``nbytes`` at ``offset`` or raise :class:`CheckpointError`."""
    buf = bytearray(nbytes)
    pread_into(fd, memoryview(buf), offset, name=name)
    return buf


def pread_into(fd: int, view: memoryview, offset: int, *, name: str = "") -> None:
    """Fill ``view`` with the bytes at ``offset`` or raise :class:`CheckpointError`."""
    got, nbytes = 0, view.nbytes
    while got < nbytes:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            raise CheckpointError(f"{name}: file ended after {got} of {nbytes} bytes (truncated)")
        got += n


class StreamingShardWriter:
    """Write one safetensors file whose tensors are all known up front.

    The header is written first; then the caller streams each tensor's bytes in the order of
    ``entries`` through :meth:`write`, :meth:`write_zeros` and :meth:`copy_range`.
    :meth:`finish` checks that exactly the declared number of bytes arrived and makes the file
    durable. Memory use is a few blocks of :class:`SequentialWriter`, not the shard. ``direct``:
    write past the page cache where the file system allows it (see
    :mod:`moegrow.io.sequential_writer`).
    """

    def __init__(
        self,
        path: Path,
        entries: list[tuple[str, str, tuple[int, ...]]],
        metadata: dict[str, str] | None = None,
        *,
        direct: bool = False,
    ):
        self.path = Path(path)
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        starts = {}
        for name, dtype, shape in entries:
            nbytes = numel(shape) * DTYPE_SIZES[dtype]
            header[name] = {
                "dtype": dtype,
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            starts[name] = offset
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # pad so that tensor data starts 8-byte aligned
        self.file_offsets = {name: 8 + len(raw) + start for name, start in starts.items()}
        """Where each tensor's bytes start in the file."""
        self.data_bytes = offset
        self.written = 0
        self._out = SequentialWriter(self.path, direct=direct)
        self._out.append(struct.pack("<Q", len(raw)) + raw)

    def write(self, data) -> None:
        """Append raw tensor bytes."""
        n = memoryview(data).nbytes
        self._out.append(data)
        self.written += n

    def write_zeros(self, nbytes: int) -> None:
        self._out.append_zeros(nbytes)
        self.written += nbytes

    def copy_range(self, src_fd: int, offset: int, nbytes: int, *, name: str = "") -> None:
        """Append ``nbytes`` of another file (``name``, for errors) starting at ``offset``."""
        self._out.append_from(src_fd, offset, nbytes, name=name)
        self.written += nbytes

    def flush_visible(self) -> None:
        """Make every byte written so far readable through other descriptors of the file."""
        self._out.flush_visible()

    def finish(self) -> None:
        """Close the file after checking that every declared byte was written."""
        assert self.written == self.data_bytes, (
            f"{self.path}: wrote {self.written} tensor bytes, header declares {self.data_bytes}"
        )
        self._out.close()

    def close(self) -> None:
        """Stop writing (after :meth:`finish`, or on an error: the file is left incomplete)."""
        self._out.abort()
