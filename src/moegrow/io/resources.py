"""The user's environment, as one-line errors: full, read-only or forbidden disks, missing paths
and exhausted memory, and the free space a write needs, checked before it starts.

These are not bugs of moegrow, so the CLI prints :func:`environment_message` of such an error
and exits with status 2 instead of showing a traceback; any other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from moegrow.errors import MoegrowError

#: errno -> what to do about it.
ADVICE = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free space or write somewhere else",
    errno.EFBIG: "a file grew past the largest file size allowed here (ulimit -f or the "
    "file system's limit): raise the limit or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: check the folder's owner and mode, or write elsewhere",
    errno.EPERM: "operation not permitted: check the folder's owner and mode",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EMFILE: "too many open files: raise ulimit -n",
    errno.ENFILE: "too many open files in the system",
    errno.EIO: "input/output error: the disk or the file system failed",
    errno.ENXIO: "no such device",
    errno.ENOMEM: "out of memory",
}

_OS_ERROR_CODE = re.compile(r"os error (\d+)|code: (\d+)")
_TORCH_OOM = ("can't allocate memory", "out of memory", "not enough memory")


def environment_message(exc: BaseException) -> str | None:
    """A one-line message for an error caused by the user's environment, else None."""
    if isinstance(exc, MemoryError):
        return (
            "out of memory (MemoryError); free memory, use a machine with more, or shrink the "
            "job (smaller model, batch or sequence length)"
        )
    if isinstance(exc, OSError) and exc.errno in ADVICE:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{ADVICE[exc.errno]} ({exc.strerror or errno.errorcode[exc.errno]})"
    if type(exc).__name__ == "SafetensorError":  # safetensors' Rust I/O errors carry the errno
        m = _OS_ERROR_CODE.search(str(exc))
        code = int(m.group(1) or m.group(2)) if m else None
        if code in ADVICE:
            return f"writing safetensors: {ADVICE[code]} ({os.strerror(code)})"
        return None
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_OOM):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"out of memory ({first[:200]}); free memory or shrink the job"
    return None


def _existing(folder: Path) -> Path:
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(folder: Path) -> int | None:
    """Free bytes for an unprivileged writer on ``folder``'s file system (None if unknown)."""
    folder = _existing(folder)
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            return None
    return st.f_bavail * st.f_frsize


def read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(_existing(folder)).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


#: Headroom kept beyond the bytes a write needs (headers, config, card, tokenizer files).
SPACE_MARGIN = 16 * 2**20


def check_free_space(folder: Path, need: int, *, what: str) -> None:
    """Refuse ``what`` up front when ``folder``'s file system cannot hold ``need`` more bytes."""
    if read_only(folder):
        raise MoegrowError(
            f"{folder}: the file system is read-only; {what} needs {_gib(need)}: write "
            "somewhere else"
        )
    have = free_bytes(folder)
    if have is not None and need + SPACE_MARGIN > have:
        raise MoegrowError(
            f"{folder}: {what} needs {_gib(need)} (+{_gib(SPACE_MARGIN)} headroom) but the file "
            f"system has {_gib(have)} free; free space or write somewhere else"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"
