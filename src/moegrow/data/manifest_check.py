"""A prepared data folder's ``manifest.json``, checked before any shard is opened: JSON types
and ranges of every field that is read, and every file it names inside the folder (no ``..``,
no absolute path, no link out of the folder, a regular file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moegrow.errors import MoegrowError
from moegrow.io.bounded_json import read_json
from moegrow.io.checkpoint import safe_child

#: A manifest lists every document's name: allow large corpora, not unbounded files.
MAX_MANIFEST_BYTES = 1 << 30
DTYPES = ("uint16", "uint32")


def read_manifest(path: Path) -> dict:
    """The checked manifest of the data folder ``path.parent``."""
    manifest = read_json(path, max_bytes=MAX_MANIFEST_BYTES)
    folder = path.parent

    def fail(field: str, expected: str, value) -> MoegrowError:
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        return MoegrowError(
            f"{path}: {field} must be {expected}, got {text}; the folder is damaged: prepare it "
            "again with `moegrow data prepare`"
        )

    def count(field: str, value, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise fail(field, f"an integer >= {minimum}", value)
        return value

    if manifest.get("dtype") not in DTYPES:
        raise fail("dtype", " or ".join(DTYPES), manifest.get("dtype"))
    limit = int(np.iinfo(manifest["dtype"]).max)
    vocab = count("vocab_size", manifest.get("vocab_size"), 1)
    for field in ("eos_id", "max_token_id"):
        value = count(field, manifest.get(field))
        if value > limit:
            raise fail(field, f"at most {limit} ({manifest['dtype']})", value)
    if manifest["eos_id"] >= max(vocab, manifest["max_token_id"] + 1):
        raise fail("eos_id", f"below vocab_size {vocab}", manifest["eos_id"])
    tokenizer = manifest.get("tokenizer")
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("dir"), str):
        raise fail("tokenizer", 'an object with a string "dir"', tokenizer)
    _inside(folder, tokenizer["dir"], path, "tokenizer.dir", directory=True)
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise fail("splits", "an object of split name -> entry", splits)
    for name, entry in splits.items():
        where = f"splits.{name}"
        if not isinstance(entry, dict):
            raise fail(where, "an object", entry)
        count(f"{where}.documents", entry.get("documents"))
        count(f"{where}.tokens", entry.get("tokens"))
        names = entry.get("document_names", [])
        if not isinstance(names, list):
            raise fail(f"{where}.document_names", "a list", names)
        if not isinstance(entry.get("document_starts"), str):
            raise fail(f"{where}.document_starts", "a file name", entry.get("document_starts"))
        _inside(folder, entry["document_starts"], path, f"{where}.document_starts")
        shards = entry.get("shards")
        if not isinstance(shards, list):
            raise fail(f"{where}.shards", "a list", shards)
        for i, shard in enumerate(shards):
            if not isinstance(shard, dict) or not isinstance(shard.get("file"), str):
                raise fail(f"{where}.shards[{i}]", 'an object with a string "file"', shard)
            count(f"{where}.shards[{i}].tokens", shard.get("tokens"))
            _inside(folder, shard["file"], path, f"{where}.shards[{i}].file")
    return manifest


def _inside(folder: Path, name: str, manifest: Path, field: str, *, directory=False) -> Path:
    """``folder / name``, refused when it leaves the folder or is not a regular file (folder)."""
    try:
        target = safe_child(folder, name, what=f"{manifest}: {field}")
    except MoegrowError as e:
        raise MoegrowError(str(e).replace("checkpoint folder", "data folder")) from None
    ok = target.is_dir() if directory else target.is_file()
    if not ok:
        kind = "folder" if directory else "regular file"
        state = "missing" if not target.exists() else f"not a {kind}"
        raise MoegrowError(
            f"{manifest}: {field} names {name!r}, which is {state}; the folder is damaged: "
            "prepare it again"
        )
    return target


def load_document_starts(path: Path, tokens: int) -> np.ndarray:
    """``<split>-docs.npy``: int64 offsets, starting at 0, non-decreasing, ending at ``tokens``."""
    try:
        starts = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise MoegrowError(f"{path}: not a readable .npy array ({e})") from None
    if starts.dtype != np.int64 or starts.ndim != 1 or len(starts) < 1:
        raise MoegrowError(
            f"{path}: expected a 1-D int64 array of document offsets, got {starts.dtype} "
            f"{starts.shape}; the folder is damaged: prepare it again"
        )
    starts = np.asarray(starts)
    if starts[0] != 0 or starts[-1] != tokens or bool((np.diff(starts) < 0).any()):
        raise MoegrowError(
            f"{path}: document offsets must rise from 0 to the split's {tokens} tokens; the "
            "folder is damaged: prepare it again"
        )
    return starts
