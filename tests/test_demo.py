"""``moegrow demo`` end to end on a shortened configuration, and the curve arithmetic."""

from __future__ import annotations

import json

import pytest

from moegrow.experiments.curves import (
    compute_multiplier,
    describe_multiplier,
    flops_to_reach,
    loss_at,
)


def test_curve_arithmetic_on_synthetic_curves():
    scratch = [(0.0, 5.0), (10.0, 4.0), (20.0, 3.0), (30.0, 2.5)]
    assert flops_to_reach(scratch, 3.5) == pytest.approx(15.0)
    assert flops_to_reach(scratch, 5.5) == 0.0
    assert flops_to_reach(scratch, 2.0) is None
    assert loss_at(scratch, 25.0) == pytest.approx(2.75)
    assert loss_at(scratch, 40.0) is None
    # the grown run reached 3.0 with 8 extra FLOPs; scratch needs 20: 2.5x
    assert compute_multiplier(scratch, 3.0, 8.0) == pytest.approx(2.5)
    assert compute_multiplier(scratch, 2.0, 8.0) is None
    assert describe_multiplier(None, 30.0, 30.0).startswith("> 1.00")


def test_shortened_demo_end_to_end(tmp_path):
    import pydoc_data.topics

    from moegrow.experiments.demo import DemoConfig, run_demo

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, (_, text) in enumerate(sorted(pydoc_data.topics.topics.items())):
        (corpus / f"{i:03d}.txt").write_text(text)
    cfg = DemoConfig(
        texts=[str(corpus / "*.txt")],
        vocab=300,
        seq_len=32,
        batch_size=8,
        base_chinchilla=0.01,
        eval_points=2,
        eval_tokens=1024,
    )
    summary = run_demo(tmp_path / "demo", cfg)
    saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert saved["compute_multiplier_text"] == summary["compute_multiplier_text"]
    for run in ("base", "grown", "scratch"):
        assert summary[run]["val_loss"] > 0
    # scratch is compared at the grown run's extra FLOPs and runs on to 3x that budget
    assert summary["scratch"]["extra_flops"] == summary["grown"]["extra_flops"]
    assert summary["scratch"]["end_flops"] == pytest.approx(
        3 * summary["grown"]["extra_flops"], rel=0.05
    )
    assert summary["grown"]["extra_flops"] == pytest.approx(summary["base"]["flops"], rel=0.05)
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 1000
    assert "compute multiplier" in (tmp_path / "demo" / "demo.md").read_text()
