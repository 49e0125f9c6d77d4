"""Routers beyond top-k over one set of experts, each grown exactly and shown to need its rule:
a selection bias added to softmax probabilities (Ernie 4.5's ``[1, E]`` ``moe_statics``,
LongCat's ``e_score_correction_bias``) is scaled by 1/M with them; experts the router scores
after the routed ones (LongCat's identity experts, Inkling's shared experts) are duplicated with
them; hash-routed layers (DeepSeek-V4's ``tid2eid``) list every copy; Ernie's MoE layer range
is solved for anew by depth growth."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import read_tensors

from moegrow.conformance.check import check_model_type
from moegrow.conformance.tiny import build_tiny
from moegrow.errors import GrowthError
from moegrow.growth import routing
from moegrow.growth.grow import grow
from moegrow.growth.hybrid_rules import solve_moe_range
from moegrow.growth.spec import GrowthSpec


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(model_type, **overrides)`` -> folder of a tiny instance (built once)."""
    cache = {}
    root = tmp_path_factory.mktemp("special")

    def get(model_type: str, **overrides):
        key = model_type + json.dumps(overrides, sort_keys=True)
        if key not in cache:
            cache[key] = root / f"m{len(cache)}"
            build_tiny(model_type, **overrides).save_pretrained(cache[key])
        return cache[key]

    return get


def _status(report, growth: str) -> str:
    assert not report.error, report.error
    return report.status(growth)


def test_softmax_selection_bias_is_scaled_with_the_probabilities(saved, tmp_path):
    src = saved("ernie4_5_moe")
    result = grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0), progress=False)
    assert result.plan.exact
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    name = "model.layers.1.mlp.moe_statics.e_score_correction_bias"
    assert before[name].shape == (1, 4) and before[name].abs().max() > 0.05
    assert after[name].equal(torch.cat([before[name] / 2, before[name] / 2], dim=1))


@pytest.mark.parametrize("model_type", ["ernie4_5_moe", "longcat_flash"])
def test_selection_bias_rule_is_needed(model_type, tmp_path, monkeypatch):
    """Exact with the 1/M rule; copying the bias unscaled (the sigmoid rule) changes which
    experts are chosen, and so the logits."""
    assert _status(check_model_type(model_type, tmp_path / "ok", growths=("width",)), "width") == (
        "exact"
    )
    monkeypatch.setitem(routing.SCORE_SCALE, "softmax", lambda m: 1.0)
    wrong = check_model_type(model_type, tmp_path / "wrong", growths=("width",))
    assert _status(wrong, "width") == "delta"


@pytest.mark.parametrize(
    ("model_type", "router", "extra"),
    [
        ("longcat_flash", "mlp.router.classifier.weight", "zero_expert_num"),
        ("inkling_text", "mlp.gate.weight", "n_shared_experts"),
    ],
)
def test_experts_scored_after_the_routed_ones_are_duplicated(
    saved, tmp_path, model_type, router, extra
):
    src = saved(model_type)
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0), progress=False)
    cfg = json.loads((src / "config.json").read_text())
    new_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    e, x = 4, cfg[extra]
    assert x > 0 and new_cfg[extra] == 2 * x
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    name = next(k for k in before if k.endswith(router))
    w = before[name]
    assert w.shape[0] == e + x
    routed, extras = w[:e], w[e:]
    assert after[name].equal(torch.cat([routed, routed, extras, extras]))


def test_identity_experts_refuse_zero_init_unless_there_are_none(tmp_path):
    report = check_model_type("longcat_flash", tmp_path / "z", growths=("depth",))
    assert _status(report, "depth") == "refused"
    assert "identity experts" in report.outcomes[0].detail
    none = check_model_type("longcat_flash", tmp_path / "n", growths=("depth",), zero_expert_num=0)
    assert _status(none, "depth") == "exact"


def test_hash_table_lists_every_copy(saved, tmp_path):
    src = saved("deepseek_v4")
    before = read_tensors(src)
    tables = [k for k in before if k.endswith("tid2eid")]
    assert tables and all(before[k].unique().numel() == 4 for k in tables)  # every expert used
    for order in ("append", "interleave"):
        out = tmp_path / order
        spec = GrowthSpec(width=2, noise=0, expert_order=order)
        grow(src, out, spec, progress=False)
        after = read_tensors(out)
        for name in tables:
            t = before[name]
            want = torch.cat([t, t + 4]) if order == "append" else torch.cat([2 * t, 2 * t + 1])
            assert after[name].equal(
                want.view(2, *t.shape).permute(1, 0, 2).reshape(t.shape[0], -1)
            )


def test_hash_routing_is_exact_and_needs_scaled_top_k(saved, tmp_path):
    report = check_model_type("deepseek_v4", tmp_path, growths=("width",))
    assert _status(report, "width") == "exact"
    with pytest.raises(GrowthError, match="hash-routed"):
        grow(saved("deepseek_v4"), tmp_path / "k", GrowthSpec(width=2, top_k="keep"))
    assert not (tmp_path / "k").exists()


def test_moe_layer_range_is_solved_or_refused(saved, tmp_path):
    assert solve_moe_range([False, False, True, True]) == (2, 3, 1)
    assert solve_moe_range([False, True, False, True]) == (1, 3, 2)
    assert solve_moe_range([False, False]) == (2, 1, 1)
    assert solve_moe_range([True, True, False, True]) is None
    src = saved("ernie4_5_moe")
    grow(src, tmp_path / "out", GrowthSpec(depth=2, zero_init=True), progress=False)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["moe_layer_start_index"], cfg["moe_layer_end_index"]) == (2, 3)
    with pytest.raises(GrowthError, match="moe_layer_interval"):
        grow(src, tmp_path / "bad", GrowthSpec(layer_map=(1, 1, 0, 1)), progress=False)
