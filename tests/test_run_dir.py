"""A training run folder's layout (``moegrow.training.run_dir``): names, checkpoint order, the
newest complete checkpoint, metrics with a torn last line, run.json, the optimizer state file.

Folders are written by hand with the literal names ``moegrow train`` has always used, so that a
run folder written by an earlier version keeps being read; no model is trained here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from moegrow.errors import MoegrowError
from moegrow.training.run_dir import (
    RunDir,
    checkpoint_step,
    optimizer_entries,
    optimizer_moments,
    optimizer_tensors,
)


def _checkpoint(run: Path, name: str, *, skip: str | None = None) -> Path:
    """A complete checkpoint folder as ``moegrow train`` writes it, less the file ``skip``."""
    folder = run / name
    folder.mkdir(parents=True)
    files = {
        "config.json": lambda p: p.write_text("{}"),
        "model.safetensors": lambda p: save_file({"w": torch.zeros(2)}, p),
        "trainer_state.json": lambda p: p.write_text(json.dumps({"step": 0, "param_groups": []})),
        "optimizer.safetensors": lambda p: save_file(
            {
                "model.layers.0.w::exp_avg": torch.full((2, 3), 0.5),
                "model.layers.0.w::exp_avg_sq": torch.ones(2, 3),
                "model.layers.0.w::step": torch.tensor(4.0),
                "lm_head.weight::exp_avg": torch.ones(3),
            },
            p,
        ),
        "rng.safetensors": lambda p: save_file({"cpu": torch.get_rng_state()}, p),
    }
    for file, write in files.items():
        if file != skip:
            write(folder / file)
    return folder


def test_a_run_folder_written_before_is_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps({"model": "/m", "data": "/d", "options": {"lr": 0.1, "seq_len": 16}})
    )
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5, "val_loss": 2.7}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    old, new = _checkpoint(run, "checkpoint-0000001"), _checkpoint(run, "checkpoint-0000002")
    folder = RunDir(run)
    assert folder.is_run() and folder.run_file == run / "run.json"
    assert folder.read_metrics() == rows and folder.logged_steps() == 2
    assert folder.checkpoints() == [old, new] and folder.last_step() == 2
    assert folder.newest_complete() == new == folder.checkpoint(2)
    moments = optimizer_moments(new)
    assert sorted(moments) == ["lm_head.weight", "model.layers.0.w"]
    assert torch.equal(moments["model.layers.0.w"], torch.full((2, 3), 0.5))
    assert float(optimizer_moments(new, "step")["model.layers.0.w"]) == 4.0


def test_checkpoints_are_ordered_by_step_and_only_finished_ones_count(tmp_path):
    for name in ("checkpoint-10000000", "checkpoint-9999999", "checkpoint-0000003"):
        _checkpoint(tmp_path, name)
    (tmp_path / "checkpoint-0000004").mkdir()  # no progress file: never finished
    _checkpoint(tmp_path, ".checkpoint-0000005.moegrow-partial-1")  # being written
    folder = RunDir(tmp_path)
    assert [p.name for p in folder.checkpoints()] == [
        "checkpoint-0000003",
        "checkpoint-9999999",
        "checkpoint-10000000",
    ]
    assert folder.last_step() == 10_000_000
    # a folder whose name is not a step sorts as the newest: resuming refuses it, naming it
    _checkpoint(tmp_path, "checkpoint-renamed")
    assert folder.checkpoints()[-1].name == "checkpoint-renamed"
    assert RunDir(tmp_path / "nothing").checkpoints() == [] and RunDir(tmp_path).is_run() is False


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("checkpoint-0000004", 4),
        ("checkpoint-12345678", 12345678),
        ("checkpoint-", None),
        ("checkpoint-4a", None),
        ("checkpoint-\u00b2", None),  # a digit to str.isdigit, not to int()
        ("branch-0000004", None),
    ],
)
def test_checkpoint_step_reads_the_name(name, step):
    assert checkpoint_step(Path("/run") / name) == step
    if step is not None:
        assert checkpoint_step(RunDir("/run").checkpoint(step)) == step


def test_newest_complete_skips_incomplete_checkpoints_and_says_which(tmp_path):
    assert RunDir(tmp_path).newest_complete() is None  # starts from its model
    _checkpoint(tmp_path, "checkpoint-0000002")
    _checkpoint(tmp_path, "checkpoint-0000004", skip="optimizer.safetensors")
    _checkpoint(tmp_path, "checkpoint-0000006", skip="model.safetensors")
    lines: list[str] = []
    assert RunDir(tmp_path).newest_complete(report=lines.append).name == "checkpoint-0000002"
    assert lines == [
        "checkpoint-0000006 is incomplete (no model weights); resuming from checkpoint-0000002, "
        "the newest complete checkpoint",
        "checkpoint-0000004 is incomplete (no optimizer.safetensors); resuming from "
        "checkpoint-0000002, the newest complete checkpoint",
    ]
    (tmp_path / "checkpoint-0000002" / "rng.safetensors").unlink()
    with pytest.raises(MoegrowError, match="no complete checkpoint to resume .*no rng.safetensors"):
        RunDir(tmp_path).newest_complete(report=lines.append)


def test_metrics_drop_a_torn_last_line_and_name_a_damaged_one(tmp_path):
    folder = RunDir(tmp_path)
    assert folder.read_metrics() == [] and folder.logged_steps() is None
    rows = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)]
    folder.write_metrics(rows[:2])
    folder.append_metrics(rows[2])
    assert folder.read_metrics() == rows and folder.read_metrics(upto=2) == rows[:2]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no partial file left
    with folder.metrics_file.open("a") as f:
        f.write('{"step": 4, "lo')  # killed while writing
    assert folder.read_metrics() == rows and folder.logged_steps() == 3
    lines = folder.metrics_file.read_text().splitlines()
    for bad in ("garbage", '{"step": true}', "[1]", '{"loss": 1}'):
        folder.metrics_file.write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n")
        with pytest.raises(MoegrowError, match=r"metrics.jsonl:2: not a metrics record"):
            folder.read_metrics()
    folder.write_metrics([])
    assert folder.logged_steps() == 0


@dataclass
class _Options:
    lr: float = 0.1
    seq_len: int = 8


def test_run_json_is_checked_and_keeps_known_options(tmp_path):
    folder = RunDir(tmp_path)
    with pytest.raises(MoegrowError, match="not a training run \\(no run.json\\)"):
        folder.read_run(_Options)
    folder.write_run({"model": "/m", "data": "/d", "options": {"lr": 0.5, "retired": 1}})
    assert folder.read_run(_Options) == {"model": "/m", "data": "/d", "options": {"lr": 0.5}}
    for meta, message in [
        ({"model": 3, "data": "/d", "options": {}}, "'model' must be a folder path"),
        ({"model": "/m", "options": {}}, "'data' must be a folder path"),
        ({"model": "/m", "data": "/d", "options": []}, "'options' must be an object"),
    ]:
        folder.write_run(meta)
        with pytest.raises(MoegrowError, match=message):
            folder.read_run(_Options)
    folder.run_file.write_text("[]")
    with pytest.raises(MoegrowError, match="expected a JSON object"):
        folder.read_run(_Options)


def test_optimizer_state_round_trips_through_its_file(tmp_path):
    state = {
        "model.embed.weight": {"exp_avg": torch.randn(4, 2), "step": 7.0},
        "model.norm.weight": {"exp_avg": torch.randn(2), "exp_avg_sq": torch.rand(2)},
    }
    save_file(optimizer_tensors(state), tmp_path / "optimizer.safetensors")
    tensors = load_file(tmp_path / "optimizer.safetensors")
    assert sorted(tensors) == [
        "model.embed.weight::exp_avg",
        "model.embed.weight::step",
        "model.norm.weight::exp_avg",
        "model.norm.weight::exp_avg_sq",
    ]
    back = optimizer_entries(tensors)
    assert back.keys() == state.keys() and float(back["model.embed.weight"]["step"]) == 7.0
    assert torch.equal(
        back["model.norm.weight"]["exp_avg_sq"], state["model.norm.weight"]["exp_avg_sq"]
    )
    assert optimizer_moments(tmp_path, "exp_avg_sq").keys() == {"model.norm.weight"}
