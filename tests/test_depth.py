"""Depth growth: the layer maps, bitwise copies at mapped positions, config consistency."""

from __future__ import annotations

import json

import pytest
from tiny_models import load, read_tensors

from moegrow.errors import GrowthError
from moegrow.growth.grow import grow
from moegrow.growth.layer_map import build_layer_map, copy_flags
from moegrow.growth.report import plan_summary
from moegrow.growth.spec import GrowthSpec
from moegrow.io.checkpoint import Checkpoint


def test_layer_maps():
    assert build_layer_map(4, GrowthSpec(depth=2)) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert build_layer_map(4, GrowthSpec(depth=2, depth_method="stack")) == [0, 1, 2, 3] * 2
    assert build_layer_map(3, GrowthSpec(depth=3)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    spec = GrowthSpec(depth=2, keep_first=1, keep_last=1)
    assert build_layer_map(4, spec) == [0, 1, 1, 2, 2, 3]
    spec = GrowthSpec(depth=3, depth_method="stack", keep_first=1, keep_last=1)
    assert build_layer_map(4, spec) == [0, 1, 2, 1, 2, 1, 2, 3]
    assert build_layer_map(4, GrowthSpec(layer_map=(0, 1, 2, 1, 2, 3))) == [0, 1, 2, 1, 2, 3]
    assert copy_flags([0, 0, 1, 1]) == [False, True, False, True]
    with pytest.raises(GrowthError, match="layer-map"):
        build_layer_map(4, GrowthSpec(layer_map=(0, 4)))


CASES = [
    ("interpose", 2, 0, 0),
    ("interpose", 3, 1, 1),
    ("stack", 2, 0, 0),
    ("stack", 3, 1, 1),
]


@pytest.mark.parametrize("method,k,first,last", CASES)
@pytest.mark.parametrize("family", ["qwen2_moe", "llama4_text", "gpt_oss"])
def test_copies_are_bitwise_at_mapped_positions(tiny, tmp_path, family, method, k, first, last):
    src = tiny(family, num_layers=4)
    spec = GrowthSpec(depth=k, depth_method=method, keep_first=first, keep_last=last)
    result = grow(src, tmp_path / "out", spec, progress=False, max_shard_size="60KB")
    layer_map = result.plan.layer_map
    assert layer_map == build_layer_map(4, spec)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    prefix = "model.layers."
    expected = {}
    for name, t in before.items():
        if not name.startswith(prefix):
            expected[name] = t
            continue
        i, rest = name[len(prefix) :].split(".", 1)
        for j, s in enumerate(layer_map):
            if s == int(i):
                expected[f"{prefix}{j}.{rest}"] = t
    assert set(after) == set(expected)
    for name, t in expected.items():
        assert after[name].dtype == t.dtype and after[name].equal(t), name

    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    src_cfg = json.loads((src / "config.json").read_text())
    n = len(layer_map)
    assert cfg["num_hidden_layers"] == n
    for key in ("layer_types", "no_rope_layers"):
        if key in src_cfg:
            assert cfg[key] == [src_cfg[key][s] for s in layer_map]
    for key in ("mlp_only_layers", "moe_layers"):
        if key in src_cfg:
            assert cfg[key] == [j for j, s in enumerate(layer_map) if s in src_cfg[key]]

    # Reload in transformers: copies must not share storage; parameter count as planned.
    model = load(tmp_path / "out")
    ptrs = [p.data_ptr() for p in model.parameters()]
    assert len(ptrs) == len(set(ptrs))
    with Checkpoint(src) as ckpt:
        from moegrow.growth.plan import make_plan

        planned = plan_summary(make_plan(ckpt, spec))["params"]["total"][1]
    assert sum(p.numel() for p in model.parameters()) == planned


def test_explicit_layer_map_solar_style(tiny, tmp_path):
    src = tiny("llama", num_layers=4)
    spec = GrowthSpec(layer_map=(0, 1, 2, 1, 2, 3), zero_init=False)
    result = grow(src, tmp_path / "out", spec, progress=False)
    assert result.plan.layer_map == [0, 1, 2, 1, 2, 3]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 6
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    for j, s in enumerate(result.plan.layer_map):
        copied = {k: v for k, v in after.items() if k.startswith(f"model.layers.{j}.")}
        assert copied, f"no tensors for output layer {j}"
        for name, t in copied.items():
            original = before[name.replace(f"layers.{j}.", f"layers.{s}.", 1)]
            assert t.dtype == original.dtype and t.equal(original), name
    assert {k for k in after if ".layers." not in k} == {k for k in before if ".layers." not in k}


def test_zero_init_zeroes_only_copies_residual_outputs(tiny, tmp_path):
    src = tiny("deepseek_v2", num_layers=2)
    grow(src, tmp_path / "out", GrowthSpec(depth=2, zero_init=True), progress=False)
    after = read_tensors(tmp_path / "out")
    before = read_tensors(src)
    for name, t in after.items():
        zero_expected = name.startswith(("model.layers.1.", "model.layers.3.")) and (
            "o_proj" in name or "down_proj" in name
        )
        if zero_expected:
            assert not t.any(), name
        elif name.startswith("model.layers."):
            i, rest = name[len("model.layers.") :].split(".", 1)
            assert t.equal(before[f"model.layers.{int(i) // 2}.{rest}"]), name


def test_first_k_dense_replace_follows_layer_map(tiny, tmp_path):
    src = tiny("deepseek_v3", num_layers=3)  # layer 0 dense
    grow(src, tmp_path / "a", GrowthSpec(depth=2), progress=False)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["first_k_dense_replace"] == 2
    with pytest.raises(GrowthError, match="first_k_dense_replace"):
        grow(src, tmp_path / "b", GrowthSpec(depth=2, depth_method="stack"), progress=False)
    assert not (tmp_path / "b").exists()
    spec = GrowthSpec(depth=2, depth_method="stack", keep_first=1)
    grow(src, tmp_path / "c", spec, progress=False)
    assert json.loads((tmp_path / "c" / "config.json").read_text())["first_k_dense_replace"] == 1


def test_decoder_sparse_step_made_explicit(tiny, tmp_path):
    src = tiny("qwen2_moe", num_layers=4, decoder_sparse_step=2, mlp_only_layers=[])
    grow(src, tmp_path / "out", GrowthSpec(depth=2, zero_init=True), progress=False)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    # source: layers 1 and 3 sparse ((i + 1) % 2 == 0); grown: their copies 2, 3, 6, 7
    assert cfg["decoder_sparse_step"] == 1
    assert cfg["mlp_only_layers"] == [0, 1, 4, 5]


def test_deepseek_v3_mtp_layer_is_reindexed_not_duplicated(tiny, tmp_path):
    """Real DeepSeek-V3 checkpoints store the multi-token-prediction layer after the main
    layers (model.layers.{num_hidden_layers}.*); growth must move it, never copy it."""
    from safetensors.torch import save_file

    base = tiny("deepseek_v3", num_layers=2)
    src = tmp_path / "src"
    src.mkdir()
    tensors = read_tensors(base)
    mtp = {
        k.replace("model.layers.1.", "model.layers.2."): v.clone()
        for k, v in tensors.items()
        if k.startswith("model.layers.1.")
    }
    hidden = tensors["model.norm.weight"].shape[0]
    mtp["model.layers.2.enorm.weight"] = tensors["model.norm.weight"].clone()
    mtp["model.layers.2.hnorm.weight"] = tensors["model.norm.weight"].clone()
    mtp["model.layers.2.eh_proj.weight"] = tensors["model.layers.0.self_attn.o_proj.weight"][
        :, :hidden
    ].repeat(1, 2)
    save_file({**tensors, **mtp}, src / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((base / "config.json").read_text())
    cfg["num_nextn_predict_layers"] = 1
    (src / "config.json").write_text(json.dumps(cfg))

    result = grow(src, tmp_path / "out", GrowthSpec(depth=2, width=2, noise=0), progress=False)
    assert result.plan.layer_map == [0, 0, 1, 1]
    after = read_tensors(tmp_path / "out")
    assert after["model.layers.4.eh_proj.weight"].equal(mtp["model.layers.2.eh_proj.weight"])
    assert not any(k.startswith("model.layers.5.") for k in after)
    # the MTP layer's MoE is widened like every other MoE layer
    assert after["model.layers.4.mlp.gate.weight"].shape[0] == 2 * cfg["n_routed_experts"]
    assert "model.layers.4.mlp.experts.7.down_proj.weight" in after
