"""Shared fixtures: tiny on-disk checkpoints, built once per session and reused."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models  # noqa: E402


def _cores_per_worker() -> int:
    """The cores this process may use, shared among the pytest-xdist workers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (cores or 1) // workers)


@pytest.fixture(autouse=True, scope="session")
def _size_thread_pools():
    """One intra-op pool per worker sized to its share of the cores: oversubscribed OpenMP
    pools spin against each other and slow a busy machine's suite many times over."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(_cores_per_worker())
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _registered_variants():
    """Tests build moegrow_moe models with transformers' Auto classes directly."""
    from moegrow.modeling.variants import register

    register()


@pytest.fixture(autouse=True, scope="session")
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or fill the user's corpus cache."""
    import os

    old = os.environ.get("MOEGROW_CACHE")
    os.environ["MOEGROW_CACHE"] = str(tmp_path_factory.mktemp("moegrow-cache"))
    yield
    if old is None:
        os.environ.pop("MOEGROW_CACHE", None)
    else:
        os.environ["MOEGROW_CACHE"] = old


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``tiny(family, **overrides)`` -> path of a tiny checkpoint (built once, read-only)."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny")

    def get(family: str, **kwargs) -> Path:
        key = family + json.dumps(kwargs, sort_keys=True, default=str)
        if key not in cache:
            cache[key] = tiny_models.make_tiny(family, root / f"m{len(cache)}_{family}", **kwargs)
        return cache[key]

    return get


@pytest.fixture
def run_cli(capsys):
    """Run ``moegrow ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from moegrow.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A prepared data folder made from the standard library's pydoc topics (no download)."""
    import pydoc_data.topics

    from moegrow.data.prepare import prepare

    root = tmp_path_factory.mktemp("corpus")
    texts = root / "texts"
    texts.mkdir()
    for i, (name, text) in enumerate(sorted(pydoc_data.topics.topics.items())):
        (texts / f"{i:03d}-{name}.txt").write_text(text)
    out = root / "data"
    prepare(out, texts=[str(texts / "*.txt")], vocab_size=512, val_fraction=0.1, progress=False)
    return out


@pytest.fixture(scope="session")
def base_model(tmp_path_factory, data_dir):
    """A freshly initialised tiny-preset checkpoint with the vocabulary of ``data_dir``."""
    from moegrow.modeling.presets import init_checkpoint

    out = tmp_path_factory.mktemp("models") / "tiny"
    return init_checkpoint(out, "tiny", tokenizer=str(data_dir), seed=0)
