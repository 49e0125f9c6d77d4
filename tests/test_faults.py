"""Faults: full and read-only disks, file-size limits, kill -9 at random moments of grow, train
and data prepare, concurrent invocations, stale partial folders, interrupted --overwrite swaps and
checkpoint re-saves, damaged newest checkpoints, torn metrics, missing optional packages.

Killed runs are forked from the test process (the CLI code runs in a real child process that
receives a real SIGKILL) instead of started with a fresh interpreter, which keeps each one to a
fraction of a second; ``MOEGROW_KILL_POINTS`` sets how many kill points each command gets
(3 by default, 20 under ``make fuzz``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from moegrow.io import atomic

KILL_POINTS = int(os.environ.get("MOEGROW_KILL_POINTS", "3"))
#: The fast suite's kill points, and the acceptance run's 20 behind the slow marker.
POINTS = [KILL_POINTS, pytest.param(20, marks=pytest.mark.slow, id="20")]
SEED = int(os.environ.get("MOEGROW_FUZZ_SEED", "0"))
MARKS = (".moegrow-partial-", ".moegrow-old-", ".moegrow-lock")


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if any(m in p.name for m in MARKS))


def _one_line_error(code: int, err: str) -> str:
    progress = ("%|", "it/s]", "doc/s]")  # progress bars drawn before the error
    lines = [
        line
        for line in err.replace("\r", "\n").splitlines()
        if line.strip() and not any(p in line for p in progress)
    ]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("moegrow: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _fork_cli(argv: list, log: Path) -> int:
    """Run ``moegrow ARGV`` in a forked child (stdout/stderr to ``log``); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (not pytest's)
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            from moegrow.cli import main

            code = main([str(a) for a in argv])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)
    return pid


def _wait(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"process {pid} did not finish in {timeout} s")


def _kill_at(pid: int, ready, delay: float, timeout: float = 60.0) -> bool:
    """SIGKILL ``pid`` ``delay`` seconds after ``ready()`` turns true; False if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
        if time.monotonic() > deadline:
            break
        time.sleep(0.001)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == -signal.SIGKILL


def _bytes_of(folder: Path) -> dict[str, bytes]:
    skip = {"growth_card.json", "moegrow_card.json"}
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


# --------------------------------------------------------------------------------------------
# disks: full, read-only, file-size limit
# --------------------------------------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path):
    """``mount(size, ro=False)`` -> a fresh tmpfs of ``size`` (root only; skipped elsewhere)."""
    mounted = []

    def mount(size: str, ro: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_grow_refuses_up_front_when_the_disk_is_too_small(tiny, small_fs, run_cli):
    fs = small_fs("256k")
    code, _, err = run_cli(
        "grow", tiny("mixtral", num_layers=2), fs / "out", "--depth", "2", "--quiet"
    )
    line = _one_line_error(code, err)
    assert "free" in line and "needs" in line, line
    assert list(fs.iterdir()) == []


def test_full_disk_while_preparing_data_is_one_line(tmp_path, small_fs, run_cli):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(4):
        (texts / f"{i}.txt").write_text(f"words of document {i} " * 4000)
    fs = small_fs("64k")
    code, _, err = run_cli("data", "prepare", fs / "data", "--text", texts, "--vocab", "300")
    line = _one_line_error(code, err)
    assert "disk is full" in line, line
    assert list(fs.iterdir()) == []


def test_full_disk_while_training_is_one_line(base_model, data_dir, small_fs, run_cli):
    fs = small_fs("1m")
    args = ["--tokens", "256", "--batch-size", "4", "--seq-len", "16", "--eval-tokens", "64"]
    code, _, err = run_cli(
        "train", base_model, "--data", data_dir, "--out", fs / "run", *args, "--quiet"
    )
    line = _one_line_error(code, err)
    assert "disk is full" in line, line
    assert not _leftovers(fs)
    assert not list((fs / "run").glob("checkpoint-*")), "a checkpoint without its files"


def test_read_only_disk_is_one_line(tiny, tmp_path, small_fs, run_cli):
    fs = small_fs("64m", ro=True)
    src = tiny("mixtral", num_layers=2)
    code, _, err = run_cli("grow", src, fs / "out", "--depth", "2", "--quiet")
    assert "read-only" in _one_line_error(code, err)  # statvfs, before planning the write
    (tmp_path / "texts").mkdir()
    for i in range(3):
        (tmp_path / "texts" / f"{i}.txt").write_text(f"document {i} " * 100)
    code, _, err = run_cli("data", "prepare", fs / "data", "--text", tmp_path / "texts")
    assert "read-only" in _one_line_error(code, err)  # EROFS from the first write


def _with_file_size_limit(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death

    return apply


def test_file_size_limit_while_growing_is_one_line(tiny, tmp_path):
    """RLIMIT_FSIZE below the output shard: the write fails mid-way (EFBIG); one line, no OUT."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run(
        [sys.executable, "-m", "moegrow", "grow", tiny("mixtral", num_layers=2), tmp_path / "out"]
        + ["--depth", "2", "--quiet"],
        preexec_fn=_with_file_size_limit(100_000),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    line = _one_line_error(r.returncode, r.stderr)
    assert "largest file size" in line, line
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


# --------------------------------------------------------------------------------------------
# kill -9 at random moments
# --------------------------------------------------------------------------------------------
def _partial_exists(out: Path):
    return lambda: any(
        p.name.startswith(f".{out.name}.moegrow-partial-") for p in out.parent.iterdir()
    )


@pytest.mark.parametrize("points", POINTS)
def test_kill_grow_at_random_points(tiny, tmp_path, run_cli, points):
    src = tiny("mixtral", num_layers=4)
    reference = tmp_path / "reference"
    assert run_cli("grow", src, reference, "--width", "2", "--depth", "2", "--quiet")[0] == 0
    rng = random.Random(SEED)
    killed = 0
    for i in range(points):
        case = tmp_path / f"k{i}"
        case.mkdir()
        out = case / "out"
        argv = ["grow", src, out, "--width", "2", "--depth", "2", "--quiet"]
        pid = _fork_cli(argv, case / "log")
        killed += _kill_at(pid, _partial_exists(out), rng.uniform(0, 0.02))
        assert not out.exists() or _bytes_of(out) == _bytes_of(reference), "a half-written OUT"
        code, _, err = run_cli(*argv, *(["--overwrite"] if out.exists() else []))
        assert code == 0, err
        assert not _leftovers(case), _leftovers(case)
        assert _bytes_of(out) == _bytes_of(reference)
    print(f"grow: {points} kill points, {killed} killed while writing, 0 partial outputs")
    assert killed >= 1, "no kill landed while the output was being written"


@pytest.mark.parametrize("points", POINTS)
def test_kill_data_prepare_at_random_points(tmp_path, run_cli, points):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(6):
        (texts / f"{i}.txt").write_text(f"document {i}: " + "some words repeat here " * 3000)
    base = ["--text", texts, "--vocab", "400"]
    rng = random.Random(SEED)
    reference = None
    killed = 0
    for i in range(points):
        case = tmp_path / f"k{i}"
        case.mkdir()
        out = case / "data"
        base_i = [*base, "--cache-dir", case / "cache"]  # no cached copy: the full preparation
        pid = _fork_cli(["data", "prepare", out, *base_i], case / "log")
        killed += _kill_at(pid, _partial_exists(out), rng.uniform(0, 0.05))
        assert not out.exists() or (out / "manifest.json").is_file(), "a half-written data folder"
        code, _, err = run_cli(
            "data", "prepare", out, *base_i, *(["--overwrite"] if out.exists() else [])
        )
        assert code == 0, err
        assert not _leftovers(case), _leftovers(case)
        manifest = json.loads((out / "manifest.json").read_text())
        manifest.pop("sources")
        reference = reference or manifest
        assert manifest["splits"] == reference["splits"]
    print(f"data prepare: {points} kill points, {killed} killed while writing")


TRAIN = dict(batch_size=4, seq_len=16, eval_tokens=64, lr=3e-3, progress=False)


def _final_tensors(run: Path) -> dict:
    final = sorted(run.glob("checkpoint-*"))[-1]
    return {n: load_file(final / n) for n in ("model.safetensors", "optimizer.safetensors")}


def _same(a: dict, b: dict) -> bool:
    return all(a[f].keys() == b[f].keys() and all(a[f][k].equal(b[f][k]) for k in a[f]) for f in a)


@pytest.mark.parametrize("points", POINTS)
def test_kill_train_at_random_points_resumes_bit_exact(
    base_model, data_dir, tmp_path, run_cli, points
):
    from moegrow.training.train import TrainOptions, train

    steps = 8
    opts = dict(tokens=steps * 4 * 16, save_every=1, keep_checkpoints=2, **TRAIN)
    reference = tmp_path / "reference"
    train(base_model, data_dir, reference, TrainOptions(**opts))
    want = _final_tensors(reference)
    want_losses = [json.loads(line)["loss"] for line in (reference / "metrics.jsonl").open()]
    rng = random.Random(SEED)
    argv_opts = ["--tokens", str(steps * 64), "--batch-size", "4", "--seq-len", "16"]
    argv_opts += ["--eval-tokens", "64", "--lr", "3e-3", "--save-every", "1", "--quiet"]
    killed = 0
    for i in range(points):
        run = tmp_path / f"k{i}"
        pid = _fork_cli(
            ["train", base_model, "--data", data_dir, "--out", run, *argv_opts],
            tmp_path / f"log{i}",
        )
        at_step = rng.randint(0, steps - 1)

        def reached(run=run, at_step=at_step):
            m = run / "metrics.jsonl"
            return m.is_file() and len(m.read_text().splitlines()) >= at_step

        killed += _kill_at(pid, reached, rng.uniform(0, 0.03))
        if not (run / "run.json").is_file():  # killed before the run existed: start it again
            code, _, err = run_cli(
                "train", base_model, "--data", data_dir, "--out", run, *argv_opts
            )
        else:
            code, _, err = run_cli("train", "--resume", run, "--quiet")
        assert code == 0, err
        assert not _leftovers(run.parent), _leftovers(run.parent)
        assert _same(_final_tensors(run), want), f"kill point {i}: resumed run differs"
        losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").open()]
        assert losses == want_losses
    print(f"train: {points} kill points, {killed} killed mid-run, all resumed bit-exact")


# --------------------------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------------------------
def test_second_writer_of_an_output_is_refused_with_the_holders_pid(tiny, tmp_path, run_cli):
    out = tmp_path / "out"
    with atomic.exclusive(out):
        code, _, err = run_cli(
            "grow", tiny("mixtral", num_layers=2), out, "--depth", "2", "--quiet"
        )
        line = _one_line_error(code, err)
        assert f"pid {os.getpid()}" in line, line
    assert not out.exists() and not _leftovers(tmp_path)


def test_two_grows_into_one_output_at_once(tiny, tmp_path, run_cli):
    src = tiny("mixtral", num_layers=4)
    out = tmp_path / "out"
    argv = ["grow", src, out, "--width", "2", "--depth", "2", "--quiet"]
    pids = [_fork_cli(argv, tmp_path / f"log{i}") for i in range(2)]
    codes = sorted(_wait(p) for p in pids)
    assert codes == [0, 2], (codes, [(tmp_path / f"log{i}").read_text() for i in range(2)])
    logs = " ".join((tmp_path / f"log{i}").read_text() for i in range(2))
    assert "another moegrow process" in logs or "already exists" in logs, logs
    assert not _leftovers(tmp_path)


def test_second_train_of_a_run_is_refused(base_model, data_dir, tmp_path, run_cli):
    from moegrow.training.train import TrainOptions, train

    run = tmp_path / "run"
    train(base_model, data_dir, run, TrainOptions(tokens=4 * 64, stop_after=2, **TRAIN))
    with atomic.exclusive(run, what="run folder"):
        code, _, err = run_cli("train", "--resume", run, "--quiet")
    assert "another moegrow process" in _one_line_error(code, err)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


# --------------------------------------------------------------------------------------------
# crash leftovers and atomic replacement
# --------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_folders_of_dead_processes_are_removed(tiny, tmp_path, run_cli):
    out = tmp_path / "out"
    stale = tmp_path / f".out.moegrow-partial-{_dead_pid()}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    code, _, err = run_cli("grow", tiny("mixtral", num_layers=2), out, "--depth", "2", "--quiet")
    assert code == 0, err
    assert "removed" in err and not stale.exists()
    assert not _leftovers(tmp_path)


def test_partial_folder_of_a_live_process_is_reported_not_removed(tiny, tmp_path, run_cli):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = tmp_path / f".out.moegrow-partial-{sleeper.pid}"
        alive.mkdir()
        code, _, err = run_cli(
            "grow", tiny("mixtral", num_layers=2), tmp_path / "out", "--depth", "2", "--quiet"
        )
        assert code == 0, err
        assert alive.exists() and f"rm -rf '{alive}'" in err
    finally:
        sleeper.kill()
        sleeper.wait()


def test_overwrite_interrupted_between_renames_is_recovered(tiny, tmp_path, run_cli):
    """Where RENAME_EXCHANGE is missing, OUT is first renamed to .OUT.moegrow-old-PID: a kill
    right then leaves no OUT, and the next run on OUT puts the old one back."""
    src = tiny("mixtral", num_layers=2)
    out = tmp_path / "out"
    assert run_cli("grow", src, out, "--depth", "2", "--quiet")[0] == 0
    before = _bytes_of(out)
    out.rename(tmp_path / f".out.moegrow-old-{_dead_pid()}")  # the state a kill leaves
    code, _, err = run_cli("grow", src, out, "--depth", "2", "--quiet")
    assert "restored" in err and "already exists" in err  # put back, then not overwritten
    assert code == 2 and _bytes_of(out) == before and not _leftovers(tmp_path)


@pytest.mark.parametrize("exchange", [True, False])
def test_overwrite_replaces_atomically(tiny, tmp_path, run_cli, monkeypatch, exchange):
    src = tiny("mixtral", num_layers=2)
    out = tmp_path / "out"
    assert run_cli("grow", src, out, "--depth", "2", "--quiet")[0] == 0
    if not exchange:
        monkeypatch.setattr(atomic, "_renameat2", lambda *a: False)
    code, _, err = run_cli("grow", src, out, "--width", "2", "--overwrite", "--quiet")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["num_local_experts"] == 8
    assert not _leftovers(tmp_path)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_every_output_file_is_durable_before_the_folder_is_committed(tiny, tmp_path, monkeypatch):
    """A crash right after the commit cannot leave OUT with empty files: every file of the grown
    folder (shards, config, card) and the folder itself are synced before the rename, and the
    parent after it."""
    from moegrow.growth.grow import grow
    from moegrow.growth.spec import GrowthSpec

    events: list[tuple[str, str]] = []
    real_fsync, real_commit = os.fsync, atomic.commit

    def fsync(fd: int) -> None:
        events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def commit(tmp: Path, out: Path, **kwargs) -> None:
        events.append(("commit", str(tmp)))
        real_commit(tmp, out, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(atomic, "commit", commit)
    out = tmp_path / "out"
    grow(tiny("mixtral", num_layers=2), out, GrowthSpec(depth=2), progress=False, io="cached")
    at = events.index(next(e for e in events if e[0] == "commit"))
    tmp = events[at][1]
    synced = {path for kind, path in events[:at] if kind == "sync"}
    files = {os.path.join(tmp, p.name) for p in out.iterdir()}
    assert len(files) >= 3 and files <= synced and tmp in synced
    assert ("sync", str(tmp_path)) in events[at + 1 :]


def test_resaving_a_checkpoint_keeps_the_complete_copy_until_the_new_one_is_in(tmp_path):
    import torch

    from moegrow.training.train_state import STATE_FILE, save_checkpoint

    def model_saver(content: bytes, fail: bool = False):
        def save(folder: Path) -> None:
            (folder / "model.safetensors").write_bytes(content)
            if fail:
                raise KeyboardInterrupt  # killed while writing the new copy

        return save

    optim = {"state": {}, "param_groups": [{"lr": 1.0}]}
    first = save_checkpoint(tmp_path, 5, model_saver(b"first"), optim, {"step": 5})
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 5, model_saver(b"second", fail=True), optim, {"step": 5})
    assert (first / "model.safetensors").read_bytes() == b"first" and (first / STATE_FILE).is_file()
    save_checkpoint(tmp_path, 5, model_saver(b"third"), optim, {"step": 5})
    assert (first / "model.safetensors").read_bytes() == b"third"
    assert not _leftovers(tmp_path)
    del torch


def test_resume_skips_an_incomplete_newest_checkpoint_and_says_so(
    base_model, data_dir, tmp_path, run_cli
):
    from moegrow.training.train import TrainOptions, train

    opts = dict(tokens=6 * 64, save_every=2, keep_checkpoints=3, **TRAIN)
    full = tmp_path / "full"
    train(base_model, data_dir, full, TrainOptions(**opts))
    run = tmp_path / "run"
    train(base_model, data_dir, run, TrainOptions(**opts, stop_after=4))
    (run / "checkpoint-0000004" / "optimizer.safetensors").unlink()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')  # a line torn by a kill
    code, _, err = run_cli("train", "--resume", run, "--quiet")
    assert code == 0, err
    assert "checkpoint-0000004 is incomplete" in err and "resuming from checkpoint-0000002" in err
    assert _same(_final_tensors(run), _final_tensors(full))


def test_run_json_records_resolved_paths_and_resumes_from_elsewhere(
    base_model, data_dir, tmp_path, run_cli, monkeypatch
):
    import shutil

    local = tmp_path / "work"
    local.mkdir()
    shutil.copytree(data_dir, local / "data")
    monkeypatch.chdir(local)
    args = ["--tokens", "256", "--batch-size", "4", "--seq-len", "16", "--eval-tokens", "64"]
    code, _, err = run_cli(
        "train", base_model, "--data", "data", "--out", "run", *args, "--stop-after", "2", "--quiet"
    )
    assert code == 0, err
    meta = json.loads((local / "run" / "run.json").read_text())
    assert meta["data"] == str((local / "data").resolve())
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("train", "--resume", local / "run", "--quiet")
    assert code == 0, err


def test_tiny_validation_split_is_refused_before_training(base_model, data_dir, tmp_path, run_cli):
    from moegrow.data.token_shards import TokenData

    val = len(TokenData(data_dir).split("val"))
    assert len(TokenData(data_dir).split("train")) > val + 1
    code, _, err = run_cli(
        "train",
        base_model,
        "--data",
        data_dir,
        "--out",
        tmp_path / "run",
        "--tokens",
        "1",
        "--seq-len",
        str(val),
        "--batch-size",
        "1",
        "--quiet",
    )
    assert "validation split" in _one_line_error(code, err)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# what a checkpoint folder holds
# --------------------------------------------------------------------------------------------
def test_pickles_beside_the_safetensors_are_never_copied(tiny, tmp_path, run_cli):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny("mixtral", num_layers=2), src)
    (src / "pytorch_model.bin").write_bytes(b"pickle")
    (src / "tokenizer_config.json").write_text("{}")
    code, _, err = run_cli("grow", src, tmp_path / "out", "--depth", "2", "--quiet")
    assert code == 0, err
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()
    assert (tmp_path / "out" / "tokenizer_config.json").exists()


def test_nan_in_a_noised_expert_names_the_tensor(tiny, tmp_path, run_cli):
    import shutil

    import torch
    from safetensors.torch import save_file

    src = tmp_path / "src"
    shutil.copytree(tiny("mixtral", num_layers=2), src)
    tensors = load_file(src / "model.safetensors")
    name = "model.layers.1.block_sparse_moe.experts.2.w1.weight"
    tensors[name][0, 0] = float("nan")
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    code, _, err = run_cli("grow", src, tmp_path / "out", "--width", "2", "--quiet")
    line = _one_line_error(code, err)
    assert name in line and "--noise 0" in line, line
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)
    code, _, err = run_cli("grow", src, tmp_path / "out", "--width", "2", "--noise", "0", "--quiet")
    assert code == 0, err
    del torch


def test_demo_checks_matplotlib_first(tmp_path, run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    start = time.perf_counter()
    code, _, err = run_cli("demo", "--out", tmp_path / "demo")
    assert 'pip install "moegrow[plot]"' in _one_line_error(code, err)
    assert time.perf_counter() - start < 5 and not (tmp_path / "demo").exists()


def test_verify_sizes_memory_from_the_config_too(tiny, tmp_path, run_cli):
    """A config that makes transformers allocate far more than the shards hold is refused
    before loading (the headers alone would say the model is tiny)."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny("mixtral", num_layers=2), src)
    config = json.loads((src / "config.json").read_text())
    config["intermediate_size"] = 50_000_000  # 2 x 8 experts x 3 x 64 x 5e7 floats: ~300 GB
    (src / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    code, _, err = run_cli("verify", src, src)
    line = _one_line_error(code, err)
    assert "needs about" in line and "GiB" in line, line
    assert time.perf_counter() - start < 30
