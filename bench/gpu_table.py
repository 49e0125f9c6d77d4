"""The table of ``bench/gpu_check.sh``: one row per check, from the files it left in WORKDIR.

Reads ``results.tsv`` (step, status, seconds), the CUDA tests' log, ``train/train_bench_cuda.json``
(bench/train.py) and the ``metrics.jsonl`` of each ``run-*`` folder (median tokens/s and MFU of
the steps after the first :data:`WARMUP`).

    python bench/gpu_table.py WORKDIR
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from moegrow.training.run_dir import METRICS_FILE, RunDir

WARMUP = 5
RUNS = {
    "train-eager": ("run-eager", "train, bf16 autocast, eager"),
    "train-compile": ("run-compile", "train, bf16 autocast, --compile"),
    "train-fsdp2": ("run-fsdp2", "train under FSDP2, 1 GPU (MOEGROW_FSDP=1)"),
}


def read_results(work: Path) -> dict[str, tuple[str, str]]:
    path = work / "results.tsv"
    if not path.is_file():
        return {}
    rows = (line.split("\t") for line in path.read_text().splitlines() if line.strip())
    return {name: (status, seconds) for name, status, seconds in rows}


def test_summary(log: Path) -> str:
    """pytest's closing counts (``5 passed, 1 skipped``), or what is missing."""
    if not log.is_file():
        return "no log"
    counts = re.findall(r"(\d+) (passed|failed|skipped|error)", log.read_text()[-2000:])
    return ", ".join(f"{n} {what}" for n, what in counts) or "no pytest summary"


def run_summary(folder: Path) -> str:
    """Median tokens/s and MFU after the warm-up, the model's size and the fused-loss state."""
    run = RunDir(folder)
    if not run.metrics_file.is_file():
        return f"no {METRICS_FILE}"
    steps = [s for s in run.read_metrics() if "tokens_per_s" in s][WARMUP:]
    if not steps:
        return f"fewer than {WARMUP + 1} steps logged"
    tok_s = statistics.median(s["tokens_per_s"] for s in steps)
    mfu = statistics.median(s["mfu"] for s in steps)
    loss = {True: "fused loss", False: "loss from logits"}.get(steps[-1].get("fused_loss"), "")
    return (
        f"{tok_s:,.0f} tok/s, MFU {100 * mfu:.1f} % (median of {len(steps)} steps) {loss}".strip()
    )


def bench_summary(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return [("train.py", "no train_bench_cuda.json")]
    report = json.loads(path.read_text())
    rows = []
    for row in report["presets"]:
        loops = row["loops"]
        rows.append(
            (
                f"bench/train.py {row['preset']}",
                f"moegrow {loops['moegrow']['tokens_per_s']:,.0f} tok/s "
                f"(MFU {100 * loops['moegrow']['mfu']:.1f} %), "
                f"x {row['ratio_vs_plain']:.2f} plain, x {row['ratio_vs_plain_eager']:.2f} "
                "plain-eager",
            )
        )
    return rows


def table(work: Path) -> str:
    results = read_results(work)
    lines = ["| check | status | s | result |", "|---|---|---|---|"]

    def row(step: str, label: str, result: str) -> None:
        status, seconds = results.get(step, ("not run", "-"))
        lines.append(f"| {label} | {status} | {seconds} | {result} |")

    row("cuda-tests", "tests/test_cuda.py", test_summary(work / "logs" / "cuda-tests.log"))
    for label, result in bench_summary(work / "train" / "train_bench_cuda.json"):
        row("train-bench", label, result)
    for step, (folder, label) in RUNS.items():
        row(step, label, run_summary(work / folder))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python bench/gpu_table.py WORKDIR")
    print(table(Path(args[0])))


if __name__ == "__main__":
    main()
