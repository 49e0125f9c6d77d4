"""Documents and user corpora, and the train/validation split by document.

A ``Document`` is one unit of the split: a play, a book of the Bible, a file, a line. User
corpora are ``.txt`` files (one document each) and ``.jsonl`` files (one document per line,
field ``text``), named by paths, folders or globs. ``clean_documents`` drops empty and repeated
texts; ``split_documents`` splits the rest into train and validation *by document*;
``document_group`` names the source a document came from (evaluation reports a loss per group).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.io.card import sha256_file

TEXT_SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True)
class Document:
    """One unit of the train/validation split: a play, a book of the Bible, a file, a line."""

    name: str
    text: str


#: A ``.jsonl`` document's name: the file's path, a colon and the line number.
_JSONL_LINE = re.compile(r"^(?P<file>.*\.jsonl):\d+$")


def document_group(name: str) -> str:
    """The source group of a document, from its name: a user corpus's file (``a/b.txt`` is its
    own group, ``a/b.jsonl:12`` belongs to ``a/b.jsonl``), or the built-in corpus's part
    (``kjv/Genesis`` -> ``kjv``, ``shakespeare/hamlet`` -> ``shakespeare``). A name of neither
    form is its own group."""
    if name.endswith(".txt"):
        return name
    line = _JSONL_LINE.match(name)
    if line:
        return line.group("file")
    return name.split("/", 1)[0] if "/" in name else name


# --------------------------------------------------------------------------------------------
# User corpora: .txt files (one document each) and .jsonl files (one document per line)
# --------------------------------------------------------------------------------------------
def expand_paths(pattern: str) -> list[Path]:
    """The ``.txt``/``.jsonl`` files named by a path, a folder or a glob (``**`` allowed).

    Globs and folders are walked without entering symlinked directories, so a link cannot pull
    a whole other tree (or a loop) into the corpus. Raises MoegrowError naming the pattern when
    it matches nothing usable.
    """
    path = Path(pattern).expanduser()
    if not glob.has_magic(pattern):
        if path.is_dir():
            files = _walk_matches(path, ["**", "*"])
            return _usable(files, pattern, f"folder {path} holds no .txt or .jsonl file")
        if not path.exists():
            raise MoegrowError(f"{pattern}: no such file or folder")
        if path.suffix not in TEXT_SUFFIXES:
            raise MoegrowError(f"{pattern}: expected a .txt or .jsonl file")
        if not path.is_file():
            raise MoegrowError(
                f"{pattern}: not a regular file (a FIFO, device or socket would block or never "
                "end); give text files"
            )
        return [path]
    root, rest = _split_literal_root(path)
    if not rest:  # only escaped magic such as "[[]": glob.has_magic was fooled
        return [path] if path.is_file() else []
    files = _walk_matches(root, rest)
    return _usable(files, pattern, "the pattern matches no file")


def _usable(files: list[Path], pattern: str, nothing: str) -> list[Path]:
    if not files:
        raise MoegrowError(f"{pattern}: {nothing}")
    # Only regular files: a FIFO or device among the matches would block or never end.
    usable = [f for f in files if f.suffix in TEXT_SUFFIXES and f.is_file()]
    if not usable:
        raise MoegrowError(
            f"{pattern}: matches {len(files)} file(s) but none ends in .txt or .jsonl"
        )
    return usable


def _split_literal_root(path: Path) -> tuple[Path, list[str]]:
    parts = list(path.parts)
    first_magic = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:first_magic]) if first_magic else Path(".")
    return root, parts[first_magic:]


def _walk_matches(root: Path, patterns: list[str]) -> list[Path]:
    """Files under ``root`` whose relative path matches ``patterns`` component by component."""
    recursive = "**" in patterns
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root).parts
        if not recursive and len(rel) >= len(patterns) - 1:
            dirnames.clear()  # deeper folders cannot match a pattern without "**"
        dirnames.sort()
        for name in sorted(filenames):
            if _match_parts(patterns, [*rel, name]):
                found.append(Path(dirpath) / name)
    return found


def _match_parts(patterns: list[str], parts: list[str]) -> bool:
    if not patterns:
        return not parts
    head, rest = patterns[0], patterns[1:]
    if head == "**":  # zero or more folders, hidden ones excepted as glob does
        for skip in range(len(parts)):
            if _match_parts(rest, parts[skip:]):
                return True
            if parts[skip].startswith("."):
                return False
        return False
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match_parts(rest, parts[1:])


def read_text_file(path: Path) -> str:
    """A file's text, UTF-8 (BOM dropped, newlines normalised), or MoegrowError naming it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise MoegrowError(f"{path}: not a regular file; give text files")
        data = path.read_bytes()
    except OSError as e:
        raise MoegrowError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MoegrowError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); convert it to UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_user_file(path: Path) -> list[Document]:
    """The documents of one user file: the whole ``.txt``, or each ``text`` of a ``.jsonl``."""
    text = read_text_file(path)
    if path.suffix == ".txt":
        return [Document(str(path), text)]
    docs = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise MoegrowError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise MoegrowError(
                f'{path}:{number}: expected a JSON object with a string field "text"'
            )
        docs.append(Document(f"{path}:{number}", record["text"]))
    return docs


def load_user_corpus(texts: list[str]) -> tuple[list[Document], list[dict]]:
    """Documents and manifest source entries for the user's paths/globs (each file once)."""
    files: dict[Path, Path] = {}
    for pattern in texts:
        for path in expand_paths(str(pattern)):
            files.setdefault(path.resolve(), path)
    docs, sources = [], []
    for path in files.values():
        file_docs = read_user_file(path)
        docs.extend(file_docs)
        sources.append(
            {
                "kind": "file",
                "path": str(path),
                "sha256": sha256_file(path),
                "documents": len(file_docs),
            }
        )
    return docs, sources


# --------------------------------------------------------------------------------------------
# Split by document
# --------------------------------------------------------------------------------------------
def clean_documents(docs: list[Document]) -> tuple[list[Document], dict[str, int]]:
    """Documents without empty texts and without repeats of an earlier text (which would leak
    across the split), and how many of each were dropped."""
    kept, seen = [], set()
    dropped = {"empty": 0, "duplicate": 0}
    for doc in docs:
        digest = hashlib.sha256(doc.text.encode()).digest()
        if not doc.text.strip():
            dropped["empty"] += 1
        elif digest in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(digest)
            kept.append(doc)
    return kept, dropped


def split_documents(
    docs: list[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Train and validation documents, each in a seed-determined order.

    Each document is ranked by a hash of ``seed`` and its name, so the split depends on nothing
    else (not on the order of the inputs, nor the Python/numpy version); the lowest-ranked
    ``round(val_fraction * n)`` documents (at least 1, at most n - 1) go to validation.
    """
    if len(docs) < 2:
        raise MoegrowError(
            f"the corpus has {len(docs)} non-empty distinct document(s); a train/validation "
            "split by document needs at least 2 (one .txt file or .jsonl line is one document)"
        )
    ranked = sorted(docs, key=lambda d: hashlib.sha256(f"{seed}\0{d.name}".encode()).digest())
    n_val = min(max(1, round(val_fraction * len(docs))), len(docs) - 1)
    return ranked[n_val:], ranked[:n_val]
