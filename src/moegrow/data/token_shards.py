"""Token shards: the on-disk format of a prepared data folder, written and read.

The token ids of each split are written as raw ``uint16``/``uint32`` shards, documents separated
by EOS, plus ``manifest.json``. ``TokenData`` opens such a folder read-only through
``numpy.memmap``.

Layout of a prepared folder::

    manifest.json             counts, dtype, shard files, tokenizer hash, sources, split lists
    tokenizer/                loadable with transformers.AutoTokenizer
    train-00000.bin ...       token ids, native byte order (little-endian on every supported host)
    train-docs.npy            int64 start offset of each document, plus the total at the end
    val-00000.bin, val-docs.npy
"""

from __future__ import annotations

import bisect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from moegrow.data.corpus import Document, document_group
from moegrow.data.manifest_check import load_document_starts, read_manifest
from moegrow.data.tokenizer import load_tokenizer
from moegrow.errors import MoegrowError

MANIFEST_NAME = "manifest.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = "moegrow-tokens"
FORMAT_VERSION = 1
SHARD_TOKENS = 1 << 27  # 256 MiB of uint16 per shard: few files, each far below 2 GiB limits
ENCODE_BATCH_CHARS = 1 << 22  # bounds the memory held by one encode_batch call


# --------------------------------------------------------------------------------------------
# Writing token shards
# --------------------------------------------------------------------------------------------
class _ShardWriter:
    """Appends token ids to ``<split>-NNNNN.bin`` files of at most ``SHARD_TOKENS`` tokens."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype):
        self.folder, self.split, self.dtype = folder, split, dtype
        self.shards: list[dict] = []
        self._file: BinaryIO | None = None
        self._room = 0

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._room == 0:
                self._next_shard()
            part, ids = ids[: self._room], ids[self._room :]
            assert self._file is not None  # opened by _next_shard
            self._file.write(part.tobytes())
            self._room -= len(part)
            self.shards[-1]["tokens"] += len(part)

    def _next_shard(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self._file = open(self.folder / name, "wb")  # noqa: SIM115 (closed in close())
        self.shards.append({"file": name, "tokens": 0})
        self._room = SHARD_TOKENS

    def close(self) -> None:
        """Flush and close the open shard."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _batches(docs: list[Document]) -> Iterator[list[Document]]:
    batch, chars = [], 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if chars >= ENCODE_BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _encode(backend, texts: list[str]) -> list[list[int]]:
    # encode_batch_fast (tokenizers >= 0.21) skips computing offsets, which we never use.
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [enc.ids for enc in encode(texts, add_special_tokens=False)]


def write_split(
    docs: list[Document],
    tokenizer,
    eos_id: int,
    folder: Path,
    split: str,
    dtype: np.dtype,
    *,
    progress: bool,
) -> dict:
    """Tokenize ``docs`` into the split's shards and ``<split>-docs.npy``; its manifest entry."""
    from tqdm.auto import tqdm

    backend = tokenizer.backend_tokenizer
    backend.no_truncation()  # a tokenizer.json may carry truncation, which would cut documents
    backend.no_padding()
    writer = _ShardWriter(folder, split, dtype)
    starts, total, max_id = [0], 0, eos_id
    bar = tqdm(total=len(docs), unit="doc", desc=f"tokenize {split}", disable=not progress)
    try:
        with bar:
            for batch in _batches(docs):
                for ids in _encode(backend, [d.text for d in batch]):
                    array = np.asarray(ids + [eos_id], dtype=np.int64)
                    max_id = max(max_id, int(array.max()))
                    writer.write(array)
                    total += len(array)
                    starts.append(total)
                bar.update(len(batch))
    finally:
        writer.close()
    np.save(folder / f"{split}-docs.npy", np.asarray(starts, dtype=np.int64))
    return {
        "documents": len(docs),
        "tokens": total,
        "max_token_id": max_id,
        "shards": writer.shards,
        "document_starts": f"{split}-docs.npy",
        "document_names": [d.name for d in docs],
    }


# --------------------------------------------------------------------------------------------
# Reading a prepared folder
# --------------------------------------------------------------------------------------------
class TokenSplit:
    """The token ids of one split, memory-mapped across its shards (read-only)."""

    def __init__(self, folder: Path, name: str, entry: dict, dtype: np.dtype):
        self.name = name
        self.num_documents: int = int(entry["documents"])
        self.document_names: list[str] = list(entry.get("document_names", []))
        self._shards = [
            _open_shard(folder / s["file"], int(s["tokens"]), dtype) for s in entry["shards"]
        ]
        self._starts = np.cumsum([0] + [len(s) for s in self._shards]).tolist()
        if self._starts[-1] != int(entry["tokens"]):
            raise MoegrowError(f"{folder}: split {name!r} shards disagree with {MANIFEST_NAME}")
        self._doc_starts = load_document_starts(folder / entry["document_starts"], len(self))
        if self._starts[-1] != int(entry["tokens"]) or self._doc_starts[-1] != self._starts[-1]:
            raise MoegrowError(f"{folder}: split {name!r} shards disagree with {MANIFEST_NAME}")

    def __len__(self) -> int:
        return self._starts[-1]

    def window(self, start: int, length: int) -> np.ndarray:
        """An int64 copy of ``tokens[start:start+length]``, read across shard boundaries."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(
                f"window [{start}, {start + length}) outside {self.name} of {len(self)}"
            )
        out = np.empty(length, dtype=np.int64)
        shard = bisect.bisect_right(self._starts, start) - 1
        done = 0
        while done < length:
            offset = start + done - self._starts[shard]
            take = min(length - done, len(self._shards[shard]) - offset)
            out[done : done + take] = self._shards[shard][offset : offset + take]
            done += take
            shard += 1
        return out

    def document_span(self, index: int) -> tuple[int, int]:
        """``(start, end)`` of document ``index``'s tokens; the EOS after it sits at ``end``."""
        return int(self._doc_starts[index]), int(self._doc_starts[index + 1]) - 1

    def documents_at(self, positions: np.ndarray) -> np.ndarray:
        """The index of the document each token position lies in (a document's EOS is its
        own)."""
        return np.searchsorted(self._doc_starts, positions, side="right") - 1

    def document_groups(self) -> list[str] | None:
        """Each document's source group (:func:`~moegrow.data.corpus.document_group`), or None
        when the manifest does not name the split's documents (folders prepared before it
        did)."""
        if len(self.document_names) != self.num_documents:
            return None
        return [document_group(name) for name in self.document_names]


def _open_shard(path: Path, tokens: int, dtype: np.dtype) -> np.ndarray:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise MoegrowError(f"{path}: cannot read the shard ({e.strerror or e})") from None
    if size != tokens * dtype.itemsize:
        raise MoegrowError(
            f"{path}: {size} bytes, but {MANIFEST_NAME} says {tokens} {dtype.name} tokens; "
            "the folder is damaged: prepare it again"
        )
    if tokens == 0:
        return np.empty(0, dtype=dtype)  # mmap cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r", shape=(tokens,))


class TokenData:
    """A prepared data folder, opened read-only."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise MoegrowError(
                f"{self.folder}: not a prepared data folder (no {MANIFEST_NAME}); "
                "make one with `moegrow data prepare`"
            )
        self.manifest: dict = read_manifest(manifest_path)
        if self.manifest.get("format") != FORMAT or self.manifest.get("format_version") != 1:
            raise MoegrowError(f"{manifest_path}: not a {FORMAT} v{FORMAT_VERSION} manifest")
        if self.manifest.get("byteorder", sys.byteorder) != sys.byteorder:
            raise MoegrowError(
                f"{manifest_path}: shards were written {self.manifest['byteorder']}-endian"
            )
        self.vocab_size: int = int(self.manifest["vocab_size"])
        self.eos_id: int = int(self.manifest["eos_id"])
        self.max_token_id: int = int(self.manifest["max_token_id"])
        self.tokenizer_dir: Path = self.folder / self.manifest["tokenizer"]["dir"]
        self._dtype = np.dtype(self.manifest["dtype"])
        self._splits: dict[str, TokenSplit] = {}

    def split(self, name: str) -> TokenSplit:
        """The ``"train"`` or ``"val"`` split, memory-mapped on first use."""
        if name not in self.manifest["splits"]:
            raise MoegrowError(
                f"{self.folder}: no split {name!r}; it has {sorted(self.manifest['splits'])}"
            )
        if name not in self._splits:
            entry = self.manifest["splits"][name]
            self._splits[name] = TokenSplit(self.folder, name, entry, self._dtype)
        return self._splits[name]

    def load_tokenizer(self):
        """The folder's tokenizer, loaded with ``transformers.AutoTokenizer``."""
        return load_tokenizer(self.tokenizer_dir)
