"""``moegrow plan`` / ``moegrow flops`` on a folder holding only config.json: the paper's
17B -> 35B (depth x2) -> 70B (width x2) path sized on paper (PAPER.md, "Sizes")."""

from __future__ import annotations

import json

import pytest

from moegrow.growth.config_only import NOTE, open_for_plan
from moegrow.growth.plan import make_plan
from moegrow.growth.report import plan_summary
from moegrow.growth.spec import GrowthSpec

VOCAB = "151936"  # the preset leaves the vocabulary to the tokenizer; Qwen3-MoE's


@pytest.fixture(scope="module")
def paper_17b(tmp_path_factory):
    from moegrow.cli import main

    folder = tmp_path_factory.mktemp("paper") / "p17b"
    assert (
        main(["init", str(folder), "--preset", "paper-17b", "--config-only", "--vocab", VOCAB]) == 0
    )
    assert not any(folder.glob("*.safetensors"))
    return folder


def _close(actual: float, expected: float, rel: float = 0.07) -> bool:
    return abs(actual - expected) <= rel * expected


def test_paper_path_on_paper(paper_17b, tmp_path, run_cli):
    code, out, _ = run_cli("plan", paper_17b, "--depth", "2", "--json")
    assert code == 0
    deep = json.loads(out)
    (n17, n35), (a17, a35) = deep["params"]["total"], deep["params"]["active"]
    assert _close(n17, 17e9) and _close(n35, 35e9) and _close(a17, 2.1e9)
    assert NOTE in deep["notes"]

    with open_for_plan(paper_17b) as ckpt:
        depth_config = make_plan(ckpt, GrowthSpec(depth=2)).config
    stage2 = tmp_path / "p35b"
    stage2.mkdir()
    (stage2 / "config.json").write_text(json.dumps(depth_config))
    with open_for_plan(stage2) as ckpt:
        wide = plan_summary(make_plan(ckpt, GrowthSpec(width=2)))
    assert wide["params"]["total"][0] == n35 and wide["params"]["active"][0] == a35
    n70, a70 = wide["params"]["total"][1], wide["params"]["active"][1]
    assert _close(n70, 70e9)
    assert wide["counts"]["experts"] == [96, 192] and wide["counts"]["top_k"] == [6, 12]
    # F_c = 6 N_a x 20 N_a, FLOPs/token >= 6 N_a, both growing with the activated parameters
    for s in (deep, wide):
        for na, fc, fpt in zip(s["params"]["active"], s["chinchilla_flops"], s["flops_per_token"]):
            assert fc == pytest.approx(120 * na * na, rel=1e-9)
            assert 6 * na <= fpt <= 8 * na
    assert a70 > a35 > a17
    print(
        f"paper path: {n17:.4g} -> {n35:.4g} -> {n70:.4g} params; activated {a17:.4g} -> "
        f"{a35:.4g} -> {a70:.4g}; F_c {deep['chinchilla_flops'][0]:.4g}"
    )

    code, out, _ = run_cli("plan", paper_17b, "--depth", "2", "--width", "2")
    assert code == 0 and "plan from config.json only (no weights)" in out


def test_flops_on_config_only_folder(paper_17b, run_cli):
    code, out, _ = run_cli("flops", paper_17b)
    assert code == 0
    assert "plan from config.json only (no weights)" in out and "total params      17.8G" in out


def test_grow_still_needs_weights(paper_17b, tmp_path, run_cli):
    code, _, err = run_cli("grow", paper_17b, tmp_path / "out", "--depth", "2")
    assert code == 2 and "no model.safetensors" in err
    assert not (tmp_path / "out").exists()
