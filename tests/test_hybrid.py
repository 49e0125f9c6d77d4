"""Hybrid stacks (linear attention / Mamba / short convolution / attention, dense / MoE layers)
and multimodal wrappers: exact growths, zero-initialised output projections of every layer kind,
and per-layer kinds that stay those of the source layer under depth growth (on-disk layouts:
``test_layouts.py``)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from tiny_models import (
    HYBRID_FAMILIES,
    WRAPPED_FAMILIES,
    load_with_info,
    logits,
    model_logits,
    read_tensors,
    sample_ids,
)

from moegrow.errors import GrowthError
from moegrow.growth.grow import grow
from moegrow.growth.hybrid_rules import solve_period
from moegrow.growth.report import plan_summary
from moegrow.growth.spec import GrowthSpec

TOL = 1e-5
ALL = [*HYBRID_FAMILIES, *WRAPPED_FAMILIES]

SPECS = {
    "width": GrowthSpec(width=2, noise=0.0),
    "depth": GrowthSpec(depth=2, zero_init=True),
    "both": GrowthSpec(depth=2, zero_init=True, width=2, noise=0.0),
}
#: Depth options some families need to be exact: Jamba's periods cannot describe an interposed
#: stack (refused, tested below) but survive stacking; Qwen3-VL adds visual features after its
#: first two layers by index (tested with images below).
DEPTH_OPTIONS = {"jamba": dict(depth_method="stack"), "qwen3_vl_moe": dict(keep_first=2)}
#: Families whose depth growth (with ``--zero-init``) is refused, and a word the error must carry.
REFUSED_DEPTH = {"inkling2_text": "attention-residual", "minimax": "input norm"}
#: Families whose plain depth growth is planned as not exact, and a word the reason must carry.
NOT_EXACT_DEPTH = {"minimax": "input norm"}

#: Residual-branch output projections of every layer kind, by the last part of their module name:
#: attention o_proj / out_proj / dense, Mamba and gated-delta-net / short-conv out_proj, MoE,
#: shared and dense down-projections (down_proj, w2, output_linear), a latent up-projection.
OUTPUT_PROJECTIONS = ("o_proj", "out_proj", "dense", "down_proj", "w2", "output_linear")
OUTPUT_PROJECTIONS += ("fc2_latent_proj",)


def _spec(family: str, kind: str) -> GrowthSpec:
    spec = SPECS[kind]
    if spec.grows_depth and family in DEPTH_OPTIONS:
        spec = replace(spec, **DEPTH_OPTIONS[family])
    return spec


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("family", ALL)
def test_hybrid_growth_is_exact(tiny, tmp_path, family, kind):
    src = tiny(family)
    if family in REFUSED_DEPTH and kind != "width":
        with pytest.raises(GrowthError, match=REFUSED_DEPTH[family]):
            grow(src, tmp_path / "out", _spec(family, kind), progress=False)
        assert not (tmp_path / "out").exists()
        return
    result = grow(src, tmp_path / "out", _spec(family, kind), progress=False)
    ids = sample_ids()
    ref = logits(src, ids)
    model, info = load_with_info(tmp_path / "out")
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    diff = (model_logits(model, ids) - ref).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    planned = plan_summary(result.plan)["params"]["total"][1]
    assert sum(p.numel() for p in model.parameters()) == planned
    assert result.plan.exact, result.plan.not_exact
    assert diff <= TOL * scale


@pytest.mark.parametrize("family", list(NOT_EXACT_DEPTH))
def test_plain_depth_growth_is_planned_not_exact(tiny, tmp_path, family):
    """Where ``--zero-init`` is refused, plain interposition is still allowed and its plan says
    why it is not function-preserving: a reason that is real (the logits differ)."""
    src = tiny(family)
    result = grow(src, tmp_path / "out", GrowthSpec(depth=2), progress=False)
    assert not result.plan.exact
    assert NOT_EXACT_DEPTH[family] in " ".join(result.plan.not_exact)
    ids = sample_ids()
    ref = logits(src, ids)
    diff = (logits(tmp_path / "out", ids) - ref).abs().max().item()
    assert diff > TOL * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize(
    "family,overrides",
    [
        ("nemotron_h", {"norm_topk_prob": False, "n_group": 2, "topk_group": 1}),
        ("lfm2_moe", {"norm_topk_prob": False, "use_expert_bias": False}),
        ("kimi_linear", {"norm_topk_prob": False}),
        ("bailing_hybrid", {"norm_topk_prob": False}),
        ("qwen3_next", {"norm_topk_prob": False}),
    ],
)
def test_router_variants_are_exact(tiny, tmp_path, family, overrides):
    """Sigmoid routers without renormalisation halve each copy's down-projection; softmax
    routers without it need nothing; group-limited routing doubles the groups."""
    src = tiny(family, **overrides)
    result = grow(src, tmp_path / "out", SPECS["both"], progress=False)
    assert result.plan.exact, result.plan.not_exact
    halved = any("1/2" in note for note in result.plan.notes)
    assert halved == (family != "qwen3_next")  # sigmoid scores are not shared by the copies
    ids = sample_ids()
    assert (logits(tmp_path / "out", ids) - logits(src, ids)).abs().max().item() <= TOL


def _output_projection(rest: str) -> bool:
    parts = rest.split(".")
    module = parts[-2] if parts[-1] in ("weight", "bias") else parts[-1]
    return module in OUTPUT_PROJECTIONS


@pytest.mark.parametrize("family", [f for f in ALL if f not in REFUSED_DEPTH])
def test_zero_init_zeroes_exactly_the_output_projections(tiny, tmp_path, family):
    """In every copied layer, each residual-branch output projection of its kind (and nothing
    else) is zero; first occurrences are bitwise the source."""
    src = tiny(family)
    result = grow(src, tmp_path / "out", _spec(family, "depth"), progress=False)
    plan = result.plan
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    prefix = plan.family.layer_prefix
    seen: set[int] = set()
    checked = 0
    for j, s in enumerate(plan.layer_map):
        is_copy = s in seen
        seen.add(s)
        for name, t in before.items():
            if not name.startswith(f"{prefix}{s}."):
                continue
            rest = name[len(f"{prefix}{s}.") :]
            out = after[f"{prefix}{j}.{rest}"]
            if is_copy and _output_projection(rest):
                assert not out.any(), f"{prefix}{j}.{rest} should be zero"
                checked += 1
            else:
                assert out.equal(t), f"{prefix}{j}.{rest} should equal {name}"
    assert checked > 0


# --- per-layer kinds -----------------------------------------------------------------------


def _release_config(src, dst, *, drop=(), add=None):
    """A copy of ``src`` whose config.json describes the layer kinds the way released configs
    do (periods, patterns, nested lists) instead of transformers' explicit lists."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for key in drop:
        cfg.pop(key, None)
    cfg.update(add or {})
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _kinds(path) -> list[tuple]:
    """Every layer's kind as transformers' config class derives it from config.json."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(path)
    n = c.num_hidden_layers
    cols = []
    for attr in ("layer_types", "mlp_layer_types", "layers_block_type", "layers_num_experts"):
        value = getattr(c, attr, None)
        if isinstance(value, list):
            cols.append(value)
    if hasattr(c, "decoder_sparse_step"):  # Qwen: MoE iff not mlp-only and on the step
        step, dense = c.decoder_sparse_step, set(c.mlp_only_layers or [])
        cols.append([i not in dense and (i + 1) % step == 0 for i in range(n)])
    if hasattr(c, "num_dense_layers"):
        cols.append([i < c.num_dense_layers for i in range(n)])
    assert cols and all(len(col) == n for col in cols)
    return list(zip(*cols, strict=True))


RELEASE_CONFIGS = {
    "qwen3_next": dict(
        overrides=dict(
            layer_types=None, full_attention_interval=2, decoder_sparse_step=2, mlp_only_layers=[]
        ),
        drop=("layer_types",),
        add=dict(full_attention_interval=2),
    ),
    "qwen3_5_moe_text": dict(drop=("layer_types",), add=dict(full_attention_interval=2)),
    "bailing_hybrid": dict(drop=("layer_types", "mlp_layer_types")),
    "kimi_linear": dict(
        drop=("layer_types", "mlp_layer_types"),
        add=dict(
            first_k_dense_replace=1,
            linear_attn_config=dict(
                full_attn_layers=[2, 4], kda_layers=[1, 3], head_dim=8, num_heads=4
            ),
        ),
    ),
    "nemotron_h": dict(
        drop=("layers_block_type",),
        add=dict(hybrid_override_pattern="ME*-", num_hidden_layers=4),
    ),
    "jamba": dict(),
    "lfm2_moe": dict(),
    "lara_mini": dict(drop=("layer_types",)),
}
MAPS = {
    "interpose": GrowthSpec(depth=2, zero_init=True),
    "stack": GrowthSpec(depth=2, depth_method="stack", zero_init=True),
    "keep": GrowthSpec(depth=3, keep_first=1, keep_last=1, zero_init=True),
}
#: (family, layer map) pairs whose config cannot express the grown kinds: refused, naming the key.
REFUSED = {
    ("jamba", "interpose"): "attn_layer_period",
    ("jamba", "keep"): "attn_layer_period",
    ("lfm2_moe", "stack"): "num_dense_layers",
    ("kimi_linear", "stack"): None,
    ("bailing_hybrid", "stack"): None,
}


@pytest.mark.parametrize("how", list(MAPS))
@pytest.mark.parametrize("family", list(RELEASE_CONFIGS))
def test_depth_keeps_every_layer_kind(tiny, tmp_path, family, how):
    """Grown layer j has the kind (attention / linear / Mamba / conv, dense / MoE) of the source
    layer it copies, as transformers derives it from the grown config.json, and the growth stays
    exact; a map the config cannot describe is refused with an error naming the key."""
    rc = RELEASE_CONFIGS[family]
    built = tiny(family, **rc.get("overrides", {}))
    src = _release_config(built, tmp_path / "src", drop=rc.get("drop", ()), add=rc.get("add"))
    assert _kinds(src) == _kinds(built)  # the release spelling describes the same model
    ids = sample_ids()
    ref = logits(src, ids)
    spec = MAPS[how]
    refused = REFUSED.get((family, how), False)
    if refused is not False and refused is not None:
        with pytest.raises(GrowthError, match=refused):
            grow(src, tmp_path / "out", spec, progress=False)
        assert not (tmp_path / "out").exists()
        return
    result = grow(src, tmp_path / "out", spec, progress=False)
    before, after = _kinds(src), _kinds(tmp_path / "out")
    assert after == [before[s] for s in result.plan.layer_map]
    assert len(set(before)) > 1  # a real mix of kinds
    assert (logits(tmp_path / "out", ids) - ref).abs().max().item() <= TOL


def test_period_rules_rewrite_the_config(tiny, tmp_path):
    """The release spellings are made explicit or remapped, never left stale."""
    rc = RELEASE_CONFIGS["nemotron_h"]
    src = _release_config(tiny("nemotron_h"), tmp_path / "n", drop=rc["drop"], add=rc["add"])
    plan = grow(src, tmp_path / "n_out", MAPS["interpose"], progress=False).plan
    assert plan.config["hybrid_override_pattern"] == "MMEE**--"
    assert plan.config["num_hidden_layers"] == 8

    rc = RELEASE_CONFIGS["qwen3_next"]
    src = tiny("qwen3_next", **rc["overrides"])
    src = _release_config(src, tmp_path / "q", drop=rc["drop"], add=rc["add"])
    plan = grow(src, tmp_path / "q_out", MAPS["interpose"], progress=False).plan
    assert "full_attention_interval" not in plan.config
    pair = ["linear_attention"] * 2 + ["full_attention"] * 2
    assert plan.config["layer_types"] == pair * 2
    assert plan.config["decoder_sparse_step"] == 1
    assert plan.config["mlp_only_layers"] == [0, 1, 4, 5]

    rc = RELEASE_CONFIGS["kimi_linear"]
    src = _release_config(tiny("kimi_linear"), tmp_path / "k", drop=rc["drop"], add=rc["add"])
    plan = grow(src, tmp_path / "k_out", MAPS["stack"], progress=False).plan
    lac = plan.config["linear_attn_config"]
    assert lac["full_attn_layers"] == [2, 4, 6, 8] and lac["kda_layers"] == [1, 3, 5, 7]
    assert plan.config["mlp_layer_types"] == ["dense", "sparse", "sparse", "sparse"] * 2

    src = tiny("jamba")
    plan = grow(src, tmp_path / "j_out", GrowthSpec(layer_map=(0, 1, 2, 3, 2, 3)), progress=False)
    cfg = plan.plan.config
    assert (cfg["attn_layer_period"], cfg["attn_layer_offset"]) == (2, 1)
    assert (cfg["expert_layer_period"], cfg["expert_layer_offset"]) == (2, 0)


def test_solve_period():
    assert solve_period([False, True, False, True]) == (2, 1)
    assert solve_period([True] * 3) == (1, 0)
    assert solve_period([False] * 3) == (4, 3)
    assert solve_period([False, False, True, True]) is None
    assert solve_period([False] * 4 + [True] + [False] * 7 + [True]) == (8, 4)


def test_refusal_is_one_line_exit_2(tiny, tmp_path, run_cli):
    code, out, err = run_cli("grow", tiny("jamba"), tmp_path / "out", "--depth", "2")
    assert code == 2 and "attn_layer_period" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
