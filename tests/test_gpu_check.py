"""bench/gpu_check.sh's argument handling (``--dry-run`` runs nothing) and its table, on CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "bench"))

import gpu_table  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_dry_run_prints_every_step_and_runs_nothing(tmp_path):
    work = tmp_path / "gpu"
    r = run("--dry-run", "--workdir", str(work), "--python", "PY", "--layers", "4", "--steps", "20")
    assert r.returncode == 0, r.stderr
    steps = [line.split(",")[0].strip("[") for line in r.stdout.splitlines() if line[0] == "["]
    assert steps == [
        "cuda-tests", "train-bench", "data", "init", "train-eager", "train-compile", "train-fsdp2"
    ]  # fmt: skip
    out = r.stdout
    assert "PY -m pytest -q -p no:cacheprovider tests/test_cuda.py" in out
    assert "PY bench/train.py --device cuda --presets tiny small" in out
    assert "--preset paper-3b" in out and "--set num_hidden_layers=4" in out
    assert "--tokens 327680 " in out  # 20 steps x 8 x 2048
    assert out.count("--device cuda --quiet") == 3 and out.count("--compile") == 1
    assert "env MOEGROW_FSDP=1 PY -m torch.distributed.run --standalone --nproc_per_node 1" in out
    assert f"PY bench/gpu_table.py {work}" in out
    assert not work.exists()


def test_skips_and_bad_arguments(tmp_path):
    r = run("--dry-run", "--skip-tests", "--skip-bench")
    assert r.returncode == 0 and "cuda-tests" not in r.stdout and "train-bench" not in r.stdout
    for args, message in [
        (["--layers", "x"], "--layers must be a positive integer, got 'x'"),
        (["--steps", "5"], "--steps must be more than the 5 warm-up steps, got 5"),
        (["--seq-len"], "--seq-len needs a value"),
        (["--bogus"], "unknown option '--bogus'"),
    ]:
        r = run("--dry-run", *args)
        assert r.returncode == 2 and message in r.stderr and not r.stdout, args
    assert run("--help").returncode == 0


def test_table_from_the_files_a_check_leaves(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "results.tsv").write_text(
        "cuda-tests\tok\t41\ntrain-bench\tok\t90\ntrain-eager\tok\t30\ntrain-compile\tTIMEOUT\t110\n"
    )
    (tmp_path / "logs" / "cuda-tests.log").write_text("....\n9 passed, 1 skipped in 40.1s\n")
    loops = {k: {"tokens_per_s": 1000.0, "mfu": 0.2} for k in ("moegrow", "plain", "plain-eager")}
    bench = {"presets": [{"preset": "tiny", "loops": loops, "ratio_vs_plain": 1.25,
                          "ratio_vs_plain_eager": 1.5}]}  # fmt: skip
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train_bench_cuda.json").write_text(json.dumps(bench))
    (tmp_path / "run-eager").mkdir()
    steps = [
        {"step": i, "tokens_per_s": 100.0 * i, "mfu": 0.01 * i, "fused_loss": True}
        for i in range(1, 10)
    ]
    (tmp_path / "run-eager" / "metrics.jsonl").write_text(
        "\n".join(json.dumps(s) for s in [{"step": 0, "val_loss": 5.0}, *steps])
    )
    text = gpu_table.table(tmp_path)
    assert "| tests/test_cuda.py | ok | 41 | 9 passed, 1 skipped |" in text
    assert "x 1.25 plain, x 1.50 plain-eager" in text
    assert "750 tok/s, MFU 7.5 % (median of 4 steps) fused loss" in text  # steps 6..9 (warm-up 5)
    assert "| train, bf16 autocast, --compile | TIMEOUT | 110 | no metrics.jsonl |" in text
    assert "| train under FSDP2, 1 GPU (MOEGROW_FSDP=1) | not run | - |" in text
