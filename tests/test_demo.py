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


def test_log_flops_interpolation():
    # loss linear in log-FLOPs: 4.0 at 10, 3.0 at 1000 -> 3.5 at 100 (linear in FLOPs: ~505)
    curve = [(0.0, 6.0), (10.0, 4.0), (1000.0, 3.0)]
    assert flops_to_reach(curve, 3.5, log=True) == pytest.approx(100.0)
    assert flops_to_reach(curve, 3.5) == pytest.approx(505.0)
    assert loss_at(curve, 100.0, log=True) == pytest.approx(3.5)
    # a segment starting at 0 FLOPs stays linear (log 0 is undefined)
    assert loss_at(curve, 5.0, log=True) == pytest.approx(5.0)
    assert compute_multiplier(curve, 3.5, 50.0, log=True) == pytest.approx(2.0)


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
    for run in ("base", "continued", "grown", "scratch"):
        assert summary[run]["val_loss"] > 0
    extra, sunk = summary["grown"]["extra_flops"], summary["base"]["flops"]
    # scratch and the continued base are compared at the grown run's extra FLOPs; scratch runs
    # on to 2.5x that budget, the continued base to that budget (within one step)
    assert summary["scratch"]["extra_flops"] == summary["continued"]["extra_flops"] == extra
    assert summary["scratch"]["end_flops"] == pytest.approx(2.5 * extra, rel=0.05)
    assert summary["continued"]["end_flops"] == pytest.approx(extra, rel=0.05)
    assert extra == pytest.approx(sunk, rel=0.05)
    # the multiplier at two budgets; the total-compute ratio charges the base too
    assert [m["extra_flops"] for m in summary["multipliers"]] == [0.5 * extra, extra]
    if summary["compute_multiplier"] is not None:
        assert summary["total_compute_ratio"] == pytest.approx(
            summary["compute_multiplier"] * extra / (sunk + extra)
        )
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 1000
    md = (tmp_path / "demo" / "demo.md").read_text()
    assert "compute multiplier" in md and "total-compute ratio" in md
    assert "base continued" in md
