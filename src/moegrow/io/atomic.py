"""Folders that appear complete or not at all, written by one process at a time.

Every folder moegrow writes (a grown checkpoint, a prepared data folder, a fresh checkpoint, a
training checkpoint) is built in a hidden ``.NAME.moegrow-partial-PID`` beside its destination
and renamed into place at the end: a rename within one file system is atomic. Replacing an
existing folder swaps the two with ``renameat2(RENAME_EXCHANGE)`` where the kernel and file
system have it; elsewhere the old folder is first renamed to ``.NAME.moegrow-old-PID``, which
the next run on the same destination puts back if the process died between the two renames.

While a folder is written, an advisory lock (``flock`` on ``.NAME.moegrow-lock`` beside it, which
holds the writer's pid) keeps a second moegrow process from writing it too; that process refuses
with the holder's pid. Partial and old folders of dead processes are removed by the next writer.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from moegrow.errors import MoegrowError

PARTIAL = ".moegrow-partial-"
OLD = ".moegrow-old-"
LOCK = ".moegrow-lock"
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def hidden_sibling(out: Path, kind: str, pid: int | None = None) -> Path:
    return out.parent / f".{out.name}{kind}{os.getpid() if pid is None else pid}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(out: Path) -> list[str]:
    """Remove partial folders beside ``out`` left by dead processes, and put back an old ``out``
    that a dead process renamed away but never replaced. Returns what was done, one line each.
    Call it only while holding ``out``'s lock."""
    done: list[str] = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return done
    for p in sorted(siblings):
        for kind in (PARTIAL, OLD):
            prefix = f".{out.name}{kind}"
            if not p.name.startswith(prefix) or not p.name[len(prefix) :].isdigit():
                continue
            pid = int(p.name[len(prefix) :])
            if pid != os.getpid() and pid_alive(pid):
                done.append(
                    f"left {p}: process {pid} is alive; if it is not moegrow, remove it with "
                    f"rm -rf '{p}'"
                )
            elif kind == OLD and not (out.exists() or out.is_symlink()):
                p.rename(out)
                done.append(f"restored {out} from {p.name} (an interrupted --overwrite)")
            else:
                _remove(p)
                done.append(f"removed {p.name} (left by an interrupted run, process {pid})")
    return done


def clean_partials_in(folder: Path) -> list[str]:
    """:func:`clean_stale` for every destination inside ``folder`` that has partial or old
    folders beside it (training checkpoints of a run). Call it while holding the run's lock."""
    done: list[str] = []
    bases = set()
    for p in folder.iterdir():
        for kind in (PARTIAL, OLD):
            head, sep, pid = p.name.rpartition(kind)
            if sep and head.startswith(".") and pid.isdigit():
                bases.add(head[1:])
    for base in sorted(bases):
        done += clean_stale(folder / base)
    return done


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the platform or file system lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def commit(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``out``; an existing ``out`` is replaced only if
    ``overwrite``, and atomically where the platform allows."""
    if not (out.exists() or out.is_symlink()):
        try:
            if _renameat2(tmp, out, _RENAME_NOREPLACE):
                return
        except FileExistsError:
            pass
        else:
            if not (out.exists() or out.is_symlink()):
                tmp.rename(out)
                return
    if not overwrite:
        raise MoegrowError(f"{out}: already exists; pass --overwrite to replace it")
    if _renameat2(tmp, out, _RENAME_EXCHANGE):
        _remove(tmp)  # now the old folder
        return
    old = hidden_sibling(out, OLD)
    out.rename(old)
    tmp.rename(out)
    _remove(old)


@contextmanager
def exclusive(target: Path, *, what: str = "folder") -> Iterator[list[str]]:
    """Hold the advisory lock of ``target`` (a folder that may not exist yet) for the block;
    another holder makes this refuse with its pid. Yields the lines of :func:`clean_stale`."""
    target = Path(os.path.abspath(target))
    lock_path = target.parent / f".{target.name}{LOCK}"
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise MoegrowError(
                f"{target}: another moegrow process (pid {holder}) is writing this {what}; "
                f"wait for it to finish (lock {lock_path})"
            ) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file meanwhile: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield clean_stale(target)
    finally:
        with suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


class OutputFolder:
    """The folder being built for ``out``: ``path`` (created by the caller) and ``commit()``."""

    def __init__(self, out: Path, overwrite: bool):
        self.out = out
        self.overwrite = overwrite
        self.path = hidden_sibling(out, PARTIAL)
        self.committed = False

    def commit(self) -> None:
        """Make the folder's files durable, then move it into place (and make that durable):
        a crash after the commit cannot leave ``out`` with empty or partial files."""
        sync_tree(self.path)
        commit(self.path, self.out, overwrite=self.overwrite)
        self.committed = True
        _sync_dir(self.out.parent)


def sync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, and the folders' entries, to the disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(root))


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # a file system whose folders cannot be synced: their entries are its own
        pass
    finally:
        os.close(fd)


@contextmanager
def output_folder(
    out: str | os.PathLike, *, overwrite: bool, what: str = "folder", report=None
) -> Iterator[OutputFolder]:
    """Build ``out`` atomically under its lock: yields an :class:`OutputFolder` whose ``path``
    the caller fills (it does not exist yet) and then commits; on any error, interrupt or a
    missing commit, the partial folder is removed and ``out`` is left as it was."""
    out = Path(out)
    with exclusive(out, what=what) as cleaned:
        for line in cleaned:
            (report or _stderr)(line)
        if (out.exists() or out.is_symlink()) and not overwrite:
            raise MoegrowError(f"{out}: already exists; pass --overwrite to replace it")
        folder = OutputFolder(out, overwrite)
        _remove(folder.path)
        try:
            yield folder
        finally:
            if not folder.committed:
                _remove(folder.path)


def _stderr(line: str) -> None:
    print(f"moegrow: {line}", file=sys.stderr)
