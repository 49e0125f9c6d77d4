"""Folders that appear complete or not at all: built hidden beside their destination, then
renamed into place (a rename within one file system is atomic)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def partial_dir(out: Path) -> Path:
    """A fresh hidden folder beside ``out`` to build it in (never mistaken for a result)."""
    tmp = out.parent / f".{out.name}.moegrow-partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``, replacing an existing ``out`` only once ``tmp`` is
    complete."""
    if out.exists() or out.is_symlink():
        trash = out.parent / f".{out.name}.moegrow-old-{os.getpid()}"
        out.rename(trash)
        tmp.rename(out)
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink()
    else:
        tmp.rename(out)
