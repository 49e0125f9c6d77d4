"""Width growth: noise statistics, originals untouched, determinism, order independence."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from tiny_models import read_tensors

from moegrow.errors import GrowthError
from moegrow.growth.grow import grow
from moegrow.growth.operators import PartJobs
from moegrow.growth.plan import build_expert_map
from moegrow.growth.spec import GrowthSpec


def _digest(folder) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def test_expert_maps():
    assert build_expert_map(3, 2, "append") == [
        (0, False),
        (1, False),
        (2, False),
        (0, True),
        (1, True),
        (2, True),
    ]
    assert build_expert_map(2, 3, "interleave") == [
        (0, False),
        (0, True),
        (0, True),
        (1, False),
        (1, True),
        (1, True),
    ]


# Per family: per-expert tensor names (with {e}), fused tensors (experts on axis 0), router.
NOISE_CASES = {
    "mixtral": (
        ["block_sparse_moe.experts.{e}.w1.weight", "block_sparse_moe.experts.{e}.w2.weight"],
        [],
        "block_sparse_moe.gate.weight",
    ),
    "granitemoe": (
        [],
        ["block_sparse_moe.input_linear.weight", "block_sparse_moe.output_linear.weight"],
        "block_sparse_moe.router.layer.weight",
    ),
    "gpt_oss": (
        [],
        ["mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.experts.down_proj_bias"],
        "mlp.router.weight",
    ),
}


def _ratio(copy: torch.Tensor, orig: torch.Tensor, alpha: float) -> float:
    return ((copy.float() - orig.float()).std() / (alpha * orig.float().std())).item()


@pytest.mark.parametrize("family", list(NOISE_CASES))
def test_noise_statistics_and_originals(tiny, tmp_path, family):
    """Each copy differs from its original by noise of std ALPHA * sigma (within 10%), sigma the
    std of the copied tensor (that expert's matrix; the whole router); originals untouched."""
    alpha = 0.05
    per_expert, fused, router = NOISE_CASES[family]
    src = tiny(family, num_layers=2, moe_intermediate_size=96, intermediate_size=96)
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=alpha), progress=False)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    num_experts = before[f"model.layers.0.{router}"].shape[0]
    for i in range(2):
        p = f"model.layers.{i}."
        for template in per_expert:
            for e in range(num_experts):
                orig = before[p + template.format(e=e)]
                assert after[p + template.format(e=e)].equal(orig)
                copy = after[p + template.format(e=e + num_experts)]
                assert 0.9 < _ratio(copy, orig, alpha) < 1.1, (template, e)
        for name in fused:
            orig, grown = before[p + name], after[p + name]
            assert grown.shape[0] == 2 * num_experts
            assert grown[:num_experts].equal(orig)
            for e in range(num_experts):
                copy = grown[num_experts + e]
                assert not copy.equal(orig[e])
                if orig[e].numel() >= 1000:  # enough samples for a 10% bound on the std
                    assert 0.9 < _ratio(copy, orig[e], alpha) < 1.1, (name, e)
        orig, grown = before[p + router], after[p + router]
        assert grown[:num_experts].equal(orig)
        assert 0.9 < _ratio(grown[num_experts:], orig, alpha) < 1.1


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    src = tiny("qwen3_moe", num_layers=2)
    spec = GrowthSpec(depth=2, width=2, noise=0.01, seed=7)
    grow(src, tmp_path / "a", spec, progress=False)
    grow(src, tmp_path / "b", spec, progress=False, max_shard_size="30KB")  # other order/shards
    grow(src, tmp_path / "c", GrowthSpec(depth=2, width=2, noise=0.01, seed=8), progress=False)
    a, b, c = (
        read_tensors(tmp_path / "a"),
        read_tensors(tmp_path / "b"),
        read_tensors(tmp_path / "c"),
    )
    assert a.keys() == b.keys() == c.keys()
    assert all(a[k].equal(b[k]) for k in a)
    assert not all(a[k].equal(c[k]) for k in a)
    grow(src, tmp_path / "d", spec, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "d")  # byte-identical files


def test_depth_and_width_commute_without_noise(tiny, tmp_path):
    src = tiny("olmoe", num_layers=2)
    depth, width = GrowthSpec(depth=2), GrowthSpec(width=2, noise=0)
    grow(src, tmp_path / "d", depth, progress=False)
    grow(tmp_path / "d", tmp_path / "dw", width, progress=False)
    grow(src, tmp_path / "w", width, progress=False)
    grow(tmp_path / "w", tmp_path / "wd", depth, progress=False)
    grow(src, tmp_path / "both", GrowthSpec(depth=2, width=2, noise=0), progress=False)
    dw, wd, both = (read_tensors(tmp_path / n) for n in ("dw", "wd", "both"))
    assert dw.keys() == wd.keys() == both.keys()
    assert all(dw[k].equal(wd[k]) and dw[k].equal(both[k]) for k in dw)
    cfgs = [json.loads((tmp_path / n / "config.json").read_text()) for n in ("dw", "wd", "both")]
    assert cfgs[0] == cfgs[1] == cfgs[2]


@pytest.mark.parametrize("family", ["mixtral", "gpt_oss"])
def test_with_noise_both_at_once_is_width_then_depth(tiny, tmp_path, family, monkeypatch):
    """Noise is seeded by a tensor's name in the width growth of the source, so growing both at
    once gives the bytes of width, then depth (in any sharding): a layer's copies are identical,
    noise included, and are copied from the output rather than computed again."""
    noised = []
    draw = PartJobs._noised
    monkeypatch.setattr(PartJobs, "_noised", lambda *a: noised.append(1) or draw(*a))
    src = tiny(family, num_layers=2)
    both = GrowthSpec(depth=2, width=2, noise=0.01, seed=3)
    grow(src, tmp_path / "w", GrowthSpec(width=2, noise=0.01, seed=3), progress=False)
    width_chunks = len(noised)
    grow(tmp_path / "w", tmp_path / "wd", GrowthSpec(depth=2), progress=False)
    grow(src, tmp_path / "both", both, progress=False)
    assert len(noised) == 2 * width_chunks > 0  # each noised chunk computed once
    grow(src, tmp_path / "sharded", both, progress=False, max_shard_size="30KB")
    wd, b, sharded = (read_tensors(tmp_path / n) for n in ("wd", "both", "sharded"))
    assert wd.keys() == b.keys() == sharded.keys()
    assert all(wd[k].equal(b[k]) and b[k].equal(sharded[k]) for k in b)
    copies = [k for k in b if k.startswith("model.layers.1.")]
    assert copies and all(b[k].equal(b[k.replace(".1.", ".0.", 1)]) for k in copies)


def test_random_router_and_keep_top_k(tiny, tmp_path):
    src = tiny("gpt_oss", num_layers=2)
    spec = GrowthSpec(width=2, router="random", top_k="keep", noise=0)
    result = grow(src, tmp_path / "out", spec, progress=False)
    assert not result.plan.exact
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    w = after["model.layers.0.mlp.router.weight"]
    e = before["model.layers.0.mlp.router.weight"].shape[0]
    assert w[:e].equal(before["model.layers.0.mlp.router.weight"])
    assert 0.015 < w[e:].float().std() < 0.025
    assert not after["model.layers.0.mlp.router.bias"][e:].any()
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    src_cfg = json.loads((src / "config.json").read_text())
    assert cfg["num_experts_per_tok"] == src_cfg["num_experts_per_tok"]


@pytest.mark.parametrize("family", ["mixtral", "gpt_oss"])
def test_random_experts_are_freshly_initialised(tiny, tmp_path, family):
    """--experts random: originals untouched, new experts N(0, initializer_range^2), biases 0."""
    per_expert, fused, router = NOISE_CASES[family]
    src = tiny(family, num_layers=2, moe_intermediate_size=96, intermediate_size=96)
    result = grow(src, tmp_path / "out", GrowthSpec(width=2, experts="random"), progress=False)
    assert not result.plan.exact
    init_std = json.loads((src / "config.json").read_text()).get("initializer_range", 0.02)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    e = before[f"model.layers.0.{router}"].shape[0]
    p = "model.layers.1."
    new = [after[p + t.format(e=k + e)] for t in per_expert for k in range(e)]
    for t in per_expert:
        assert all(after[p + t.format(e=k)].equal(before[p + t.format(e=k)]) for k in range(e))
    for name in fused:
        assert after[p + name][:e].equal(before[p + name])
        if name.endswith("bias"):
            assert not after[p + name][e:].any()
        else:
            new.append(after[p + name][e:])
    values = torch.cat([t.float().flatten() for t in new])
    assert abs(values.mean().item()) < 0.1 * init_std
    assert 0.95 < values.std().item() / init_std < 1.05
    # the router rows are still copies (with the default noise): --router is separate
    assert after[p + router][:e].equal(before[p + router])


def test_top_k_alone_changes_only_the_config(tiny, tmp_path, run_cli):
    src = tiny("qwen3_moe", num_layers=2)
    code, out, _ = run_cli("grow", str(src), str(tmp_path / "out"), "--top-k", "4", "--quiet")
    assert code == 0
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    src_cfg = json.loads((src / "config.json").read_text())
    assert cfg["num_experts_per_tok"] == 4 != src_cfg["num_experts_per_tok"]
    assert cfg.get("num_experts") == src_cfg.get("num_experts")


def test_balance_bias_copied_exactly_and_groups_scaled(tiny, tmp_path):
    src = tiny("deepseek_v3", num_layers=2)
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0.01), progress=False)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    name = "model.layers.1.mlp.gate.e_score_correction_bias"
    assert after[name].equal(torch.cat([before[name], before[name]]))
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    src_cfg = json.loads((src / "config.json").read_text())
    assert cfg["n_group"] == 2 * src_cfg["n_group"]
    assert cfg["topk_group"] == 2 * src_cfg["topk_group"]


def test_sigmoid_without_renorm_halves_both_copies(tiny, tmp_path):
    src = tiny("llama4_text", num_layers=2)
    result = grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0), progress=False)
    assert result.plan.exact and result.plan.notes
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    name = next(k for k in before if k.endswith("feed_forward.experts.down_proj"))
    assert after[name].equal(torch.cat([before[name] / 2, before[name] / 2]))


def test_phimoe_width_refused(tiny, tmp_path, run_cli):
    src = tiny("phimoe", num_layers=2)
    with pytest.raises(GrowthError, match="sparsemixer"):
        grow(src, tmp_path / "out", GrowthSpec(width=2), progress=False)
    code, _, err = run_cli("grow", src, tmp_path / "out", "--width", "2")
    assert code == 2 and "sparsemixer" in err and not (tmp_path / "out").exists()


def test_dense_width_refused(tiny, tmp_path):
    with pytest.raises(GrowthError, match="dense"):
        grow(tiny("llama", num_layers=2), tmp_path / "o", GrowthSpec(width=2), progress=False)
