"""Layer kinds read from config.json: layers of one kind carry the same tensors, and a depth
growth that would change a layer's kind is refused."""

from __future__ import annotations

import json

import pytest
from tiny_models import FAMILIES

from moegrow.errors import GrowthError
from moegrow.families import family_for
from moegrow.families.kinds import layer_kinds
from moegrow.growth.config_edit import num_layers
from moegrow.growth.hybrid_rules import check_depth_kinds
from moegrow.io.checkpoint import Checkpoint


def _tensor_sets(ckpt: Checkpoint, family) -> dict[int, frozenset[str]]:
    """Each layer's tensor names, with expert indices replaced by ``{e}``."""
    sets: dict[int, set[str]] = {}
    for name in ckpt.tensors:
        m = family.layer_regex.match(name)
        if m:
            rest = m.group("rest")
            role, e = family.classify(rest)
            if role == "expert":
                rest = family.expert_name(rest, e, 0)
            sets.setdefault(int(m.group("i")), set()).add(rest)
    return {i: frozenset(s) for i, s in sets.items()}


@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_layers_of_one_kind_carry_the_same_tensors(tiny, family_name):
    """Kinds are at least as fine as transformers' own layer structure: two layers given one kind
    have the same tensor names (so a gap in one of them can be named)."""
    with Checkpoint(tiny(family_name)) as ckpt:
        family = family_for(ckpt.config)
        n = num_layers(ckpt.config, family)
        kinds = layer_kinds(ckpt.config, family, n)
        sets = _tensor_sets(ckpt, family)
    by_kind: dict[tuple, set[frozenset[str]]] = {}
    for i in range(n):
        by_kind.setdefault(kinds[i], set()).add(sets[i])
    assert all(len(s) == 1 for s in by_kind.values()), by_kind
    if len(set(sets.values())) > 1:  # a mixed stack: the kinds tell its layers apart
        assert len(by_kind) > 1


def test_a_kind_changed_by_the_edit_is_refused(tiny):
    with Checkpoint(tiny("granitemoehybrid")) as ckpt:
        src = ckpt.config
    family = family_for(src)
    grown = json.loads(json.dumps(src))
    grown["layer_types"] = [src["layer_types"][i % 4] for i in range(8)]  # a stacked list
    with pytest.raises(GrowthError, match="layer 1 would be built as"):
        check_depth_kinds(src, grown, family, [0, 0, 1, 1, 2, 2, 3, 3], 4)
    check_depth_kinds(src, grown, family, [0, 1, 2, 3, 0, 1, 2, 3], 4)


@pytest.mark.parametrize(
    "family_name,expected",
    [("jamba", 2), ("nemotron_h", 1), ("minimax", 2), ("lfm2_moe", 2), ("kimi_linear", 2)],
)
def test_flops_count_attention_only_where_layers_attend(tiny, family_name, expected):
    """The sequence-length term of FLOPs/token counts softmax-attention layers only; the counts
    agree with the layers that transformers builds with an attention module."""
    from transformers import AutoModelForCausalLM

    from moegrow.flops import param_stats

    path = tiny(family_name)
    with Checkpoint(path) as ckpt:
        family = family_for(ckpt.config)
        tensors = [(i.name, i.dtype, i.shape) for i in ckpt.tensors.values()]
        stats = param_stats(tensors, family, ckpt.config)
    model = AutoModelForCausalLM.from_pretrained(path)
    mixers = [
        type(getattr(layer, "self_attn", None) or getattr(layer, "mixer", None)).__name__
        for layer in model.model.layers
    ]
    # softmax attention modules; recurrent ones are named *DeltaAttention, *LightningAttention
    built = sum(
        m.endswith("Attention") and not m.endswith(("DeltaAttention", "LightningAttention"))
        for m in mixers
    )
    assert stats.attention_layers == expected == built
    assert stats.num_layers == 4
    width_term = 6.0 * 4096 * stats.attention_width
    without = stats.flops_per_token(4096) - expected * width_term
    assert stats.flops_per_token(8192) - stats.flops_per_token(4096) == expected * width_term
    assert without > 0


def test_a_declared_period_becomes_an_explicit_list():
    """A sliding-window period given as data (as ``global_attn_every_n_layers`` would be) is
    written as the explicit ``layer_types`` before depth growth, and each layer keeps its kind."""
    from moegrow.families.base import Family, LayerPeriod
    from moegrow.growth.config_edit import ConfigEditor, edit_depth

    family = Family(
        name="periodic",
        model_types=(),
        residual=("self_attn.o_proj.*",),
        layer_types_period=LayerPeriod(
            "global_attn_every_n_layers", "sliding_attention", "full_attention", default=4
        ),
    )
    source = {"num_hidden_layers": 4, "global_attn_every_n_layers": 2}
    ed = ConfigEditor(source)
    layer_map = [0, 0, 1, 1, 2, 2, 3, 3]
    edit_depth(ed, family, layer_map)
    s, f = "sliding_attention", "full_attention"
    assert ed.config["layer_types"] == [s, s, f, f, s, s, f, f]
    assert ed.config["global_attn_every_n_layers"] == 2  # a field of the class, overridden
    check_depth_kinds(source, ed.config, family, layer_map, 4)
    before = layer_kinds({"num_hidden_layers": 4}, family, 4)  # the class's default period 4
    assert [dict(k)["layer_types"] for k in before] == [s, s, s, f]


def test_legacy_dense_prefix_and_moe_frequency_become_mlp_layer_types():
    """A.X K2's config class derives ``mlp_layer_types`` from ``first_k_dense_replace`` and
    ``moe_layer_freq`` (layer i >= k is MoE iff i % freq == 0); depth growth writes that list
    and remaps it, so each interposed copy keeps its source's dense or MoE kind."""
    from moegrow.families import BY_MODEL_TYPE
    from moegrow.growth.config_edit import ConfigEditor, edit_depth

    family = BY_MODEL_TYPE["axk2"]
    source = {"num_hidden_layers": 5, "first_k_dense_replace": 1, "moe_layer_freq": 2}
    d, s = "dense", "sparse"
    before = layer_kinds(source, family, 5)
    assert [dict(k)["mlp_layer_types"] for k in before] == [d, d, s, d, s]
    ed = ConfigEditor(source)
    layer_map = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    edit_depth(ed, family, layer_map)
    assert ed.config["mlp_layer_types"] == [d, d, d, d, s, s, d, d, s, s]
    check_depth_kinds(source, ed.config, family, layer_map, 5)
    with pytest.raises(GrowthError, match="moe_layer_freq must be a positive integer"):
        layer_kinds({**source, "moe_layer_freq": 0}, family, 5)


@pytest.mark.parametrize("missing", ["layer_types", "mlp_layer_types"])
def test_a_list_derived_by_an_undeclared_rule_must_be_written_out(missing):
    """Beam's config class puts full attention at every sixth layer and at the last one, and
    three dense layers first: without the lists, a deeper config would move those kinds, so depth
    growth refuses (width growth does not read them)."""
    from moegrow.families import BY_MODEL_TYPE
    from moegrow.growth.config_edit import ConfigEditor, edit_depth

    family = BY_MODEL_TYPE["beam"]
    source = {
        "num_hidden_layers": 2,
        "layer_types": ["sliding_attention", "full_attention"],
        "mlp_layer_types": ["dense", "sparse"],
    }
    del source[missing]
    with pytest.raises(GrowthError, match=f"beam has no {missing}, which transformers then"):
        edit_depth(ConfigEditor(source), family, [0, 0, 1, 1])
