"""Growths that must leave transformers' logits unchanged (float32, max |delta| <= 1e-5)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import DENSE_FAMILIES, MOE_FAMILIES, load, logits, sample_ids

from moegrow.growth.grow import grow
from moegrow.growth.report import plan_summary
from moegrow.growth.spec import GrowthSpec
from moegrow.growth.verify import verify

TOL = 1e-5
WIDTH_FAMILIES = [f for f in MOE_FAMILIES if f != "phimoe"]

SPECS = {
    "width": GrowthSpec(width=2, noise=0.0),
    "depth": GrowthSpec(depth=2, zero_init=True),
    "both": GrowthSpec(depth=2, zero_init=True, width=2, noise=0.0),
}


def _max_diff(src, out) -> float:
    ids = sample_ids()
    return (logits(out, ids) - logits(src, ids)).abs().max().item()


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("family", WIDTH_FAMILIES)
def test_moe_growth_is_exact(tiny, tmp_path, family, kind):
    src = tiny(family)
    result = grow(src, tmp_path / "out", SPECS[kind], progress=False)
    assert result.plan.exact, result.plan.not_exact
    assert _max_diff(src, tmp_path / "out") <= TOL
    planned = plan_summary(result.plan)["params"]["total"][1]
    assert sum(p.numel() for p in load(tmp_path / "out").parameters()) == planned


@pytest.mark.parametrize(
    "family,overrides",
    [
        ("qwen3_moe", {"norm_topk_prob": False}),
        ("deepseek_v3", {"norm_topk_prob": False}),
        ("deepseek_v2", {"topk_method": "group_limited_greedy", "n_group": 2, "topk_group": 1}),
    ],
)
def test_router_variants_are_exact(tiny, tmp_path, family, overrides):
    src = tiny(family, **overrides)
    grow(src, tmp_path / "out", SPECS["both"], progress=False)
    assert _max_diff(src, tmp_path / "out") <= TOL


@pytest.mark.parametrize("family", [*DENSE_FAMILIES, "phimoe"])
def test_depth_zero_init_is_exact(tiny, tmp_path, family):
    src = tiny(family)
    grow(src, tmp_path / "out", SPECS["depth"], progress=False)
    assert _max_diff(src, tmp_path / "out") <= TOL


@pytest.mark.parametrize("method", ["interpose", "stack"])
def test_zero_init_exact_with_keep_and_k3(tiny, tmp_path, method):
    src = tiny("qwen2_moe")
    spec = GrowthSpec(depth=3, depth_method=method, keep_first=1, keep_last=1, zero_init=True)
    grow(src, tmp_path / "out", spec, progress=False)
    assert _max_diff(src, tmp_path / "out") <= TOL


def test_noisy_growth_changes_function_slightly(tiny, tmp_path):
    src = tiny("mixtral")
    result = grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0.01), progress=False)
    assert not result.plan.exact
    diff = _max_diff(src, tmp_path / "out")
    assert 0 < diff < 0.5


@pytest.mark.parametrize("family", ["mixtral", "deepseek_v3", "llama4_text"])
def test_verify_agrees(tiny, tmp_path, family, run_cli):
    src = tiny(family)
    grow(src, tmp_path / "exact", SPECS["both"], progress=False)
    r = verify(src, tmp_path / "exact")
    assert r.expected_exact is True and r.ok and r.max_abs_diff <= TOL
    assert abs(r.kl) < 1e-6
    code, out, _ = run_cli("verify", src, tmp_path / "exact")
    assert code == 0 and "result               exact" in out

    grow(src, tmp_path / "plain", GrowthSpec(depth=2, width=2), progress=False)
    r = verify(src, tmp_path / "plain")
    assert r.expected_exact is False and r.ok and r.max_abs_diff > TOL and r.kl > 0


def test_verify_fails_when_exact_growth_is_not(tiny, tmp_path, run_cli):
    """Tamper with an expected-exact growth: verify must exit 1."""
    from safetensors.torch import load_file, save_file

    src = tiny("olmoe")
    out = tmp_path / "out"
    grow(src, out, SPECS["width"], progress=False)
    tensors = load_file(out / "model.safetensors")
    name = "model.layers.0.mlp.experts.5.down_proj.weight"
    tensors[name] = tensors[name] + 0.05 * torch.randn_like(tensors[name])
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    code, out_text, _ = run_cli("verify", src, out)
    assert code == 1 and "NOT exact" in out_text
