"""Router declarations beyond one weight and one fixed scoring: a config value that names the
scoring in its own words (Cohere2-MoE's ``expert_selection_fn``), a second router per layer
(JetMoE's mixture-of-attention experts), and layer-kind cycles of sliding-window families whose
config.json may leave ``layer_types`` out (GraniteMoE-SWA, Kolibri-1). Models are built tiny with
transformers' own config classes (:mod:`moegrow.conformance.tiny`)."""

from __future__ import annotations

import json

import pytest
import torch

from moegrow.conformance.check import check_model_type
from moegrow.conformance.tiny import build_tiny
from moegrow.families import BY_MODEL_TYPE
from moegrow.families.kinds import derived_layer_types
from moegrow.growth.grow import grow
from moegrow.growth.routing import scoring, width_rules
from moegrow.growth.spec import GrowthSpec

TOL = 1e-5


def _logits(path, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize(
    ("fn", "renorm", "expected", "down_scale"),
    [
        ("softmax", False, "softmax_topk", 1.0),
        ("sigmoid", True, "sigmoid", 1.0),
        ("sigmoid", False, "sigmoid", 0.5),
    ],
)
def test_cohere2_scoring_follows_expert_selection_fn(fn, renorm, expected, down_scale):
    family = BY_MODEL_TYPE["cohere2_moe"]
    config = {
        "expert_selection_fn": fn,
        "norm_topk_prob": renorm,
        "num_experts": 4,
        "num_experts_per_tok": 2,
    }
    assert scoring(family, config) == expected
    rules = width_rules(family, config, GrowthSpec(width=2, noise=0.0))
    assert (rules.down_scale, rules.new_top_k, rules.exact) == (down_scale, 4, True)


def test_cohere2_sigmoid_without_renormalisation_grows_exactly(tmp_path):
    """Two copies of an expert, each with the full sigmoid score, add up to the original only
    because their down-projections are halved: without the rule the MoE output doubles."""
    report = check_model_type(
        "cohere2_moe",
        tmp_path,
        growths=("width",),
        expert_selection_fn="sigmoid",
        norm_topk_prob=False,
    )
    assert not report.error
    [outcome] = report.outcomes
    assert outcome.status == "exact", outcome.line()


def test_jetmoe_attention_router_grows_with_its_experts(tmp_path):
    """The attention experts' router is a router of the layer: its rows are duplicated like the
    attention experts (every copy of expert e gets row e), so copies tie and share e's weight."""
    family = BY_MODEL_TYPE["jetmoe"]
    attention_router = "self_attention.experts.router.layer.weight"
    assert family.classify(attention_router) == ("router", None)
    src, out = tmp_path / "src", tmp_path / "out"
    build_tiny("jetmoe").save_pretrained(src)
    result = grow(src, out, GrowthSpec(width=2, noise=0.0), progress=False)
    from safetensors.torch import load_file

    before, after = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    name = f"model.layers.0.{attention_router}"
    expected = torch.cat([before[name][s : s + 1] for s, _ in result.plan.expert_map])
    assert after[name].shape[0] == 2 * before[name].shape[0]
    assert torch.equal(after[name], expected)
    grown = json.loads((out / "config.json").read_text())
    source = json.loads((src / "config.json").read_text())
    assert grown["num_experts_per_tok"] == 2 * source["num_experts_per_tok"]
    # derived by the config class as num_key_value_heads x num_experts_per_tok: kept consistent
    assert grown["num_attention_heads"] == grown["num_key_value_heads"] * 4
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    assert (_logits(out, ids) - _logits(src, ids)).abs().max().item() <= TOL


@pytest.mark.parametrize("model_type", ["granitemoe_swa", "kolibri1"])
def test_layer_types_cycle_is_the_config_class_default(model_type):
    from transformers import CONFIG_MAPPING

    family = BY_MODEL_TYPE[model_type]
    for n in range(1, 12):
        expected = CONFIG_MAPPING[model_type](num_hidden_layers=n).layer_types
        assert derived_layer_types({}, family, n) == expected, n


def test_granitemoe_swa_depth_keeps_each_layer_schedule(tmp_path):
    """A config.json without ``layer_types`` gets the derived schedule made explicit before
    interposition; ``layer_rope_theta`` (per layer, 0 = no RoPE) follows the layer map."""
    thetas = [10000.0, 0, 500000.0, 10000.0]
    src, out = tmp_path / "src", tmp_path / "out"
    build_tiny("granitemoe_swa", num_layers=4, layer_rope_theta=thetas).save_pretrained(src)
    cfg = json.loads((src / "config.json").read_text())
    assert cfg.pop("layer_types") == ["full_attention"] + ["sliding_attention"] * 3
    (src / "config.json").write_text(json.dumps(cfg))
    result = grow(src, out, GrowthSpec(depth=2, zero_init=True), progress=False)
    grown = json.loads((out / "config.json").read_text())
    layer_map = result.plan.layer_map
    assert layer_map == [0, 0, 1, 1, 2, 2, 3, 3]
    assert grown["layer_types"] == [
        "full_attention" if s == 0 else "sliding_attention" for s in layer_map
    ]
    assert grown["layer_rope_theta"] == [thetas[s] for s in layer_map]
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    assert (_logits(out, ids) - _logits(src, ids)).abs().max().item() <= TOL


def test_cohere2_depth_makes_derived_layer_kinds_explicit(tmp_path):
    """A config.json that derives both kinds from ``first_k_dense_replace`` and the two
    sliding-window periods gets them as explicit lists that follow the layer map."""
    from transformers import AutoConfig

    knobs = {
        "first_k_dense_replace": 1,
        "prefix_dense_sliding_window_pattern": 1,
        "sliding_window_pattern": 2,
    }
    src, out = tmp_path / "src", tmp_path / "out"
    model = build_tiny(
        "cohere2_moe",
        num_layers=3,
        layer_types=None,
        mlp_layer_types=None,
        prefix_dense_intermediate_size=56,
        **knobs,
    )
    model.save_pretrained(src)
    source_kinds = list(zip(model.config.layer_types, model.config.mlp_layer_types, strict=True))
    assert source_kinds == [
        ("full_attention", "dense"),
        ("sliding_attention", "sparse"),
        ("full_attention", "sparse"),
    ]
    cfg = json.loads((src / "config.json").read_text())
    del cfg["layer_types"], cfg["mlp_layer_types"]
    (src / "config.json").write_text(json.dumps({**cfg, **knobs}))
    result = grow(src, out, GrowthSpec(depth=2, zero_init=True), progress=False)
    grown = AutoConfig.from_pretrained(out)
    kinds = list(zip(grown.layer_types, grown.mlp_layer_types, strict=True))
    assert kinds == [source_kinds[s] for s in result.plan.layer_map]
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    assert (_logits(out, ids) - _logits(src, ids)).abs().max().item() <= TOL
