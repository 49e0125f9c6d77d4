"""What validate_source accepts and refuses: MTP layers counted from disk, per-kind tensor sets."""

from __future__ import annotations

import json
import re

import pytest
from tiny_models import load, read_tensors

from moegrow.errors import CheckpointError
from moegrow.growth.grow import grow
from moegrow.growth.plan import make_plan
from moegrow.growth.spec import GrowthSpec
from moegrow.io.checkpoint import Checkpoint


@pytest.mark.parametrize(
    "family,overrides",
    [("deepseek_v3", {"num_nextn_predict_layers": 1}), ("bailing_hybrid", {"num_mtp_layers": 1})],
)
def test_mtp_declared_but_not_saved_is_grown(tiny, tmp_path, family, overrides):
    """transformers' save_pretrained keeps the MTP count in config.json but not the MTP layer."""
    src = tiny(family, num_layers=2, **overrides)
    cfg = json.loads((src / "config.json").read_text())
    assert any(cfg.get(k) == 1 for k in ("num_nextn_predict_layers", "num_mtp_layers"))
    assert not any(k.startswith("model.layers.2.") for k in read_tensors(src))
    result = grow(src, tmp_path / "out", GrowthSpec(depth=2, width=2, noise=0), progress=False)
    assert any("multi-token-prediction" in n and "hold 0 " in n for n in result.plan.notes)
    after = read_tensors(tmp_path / "out")
    assert max(int(k.split(".")[2]) for k in after if k.startswith("model.layers.")) == 3
    load(tmp_path / "out")  # transformers loads the grown model


def _without(base, dest, name):
    """A copy of checkpoint ``base`` in ``dest`` lacking tensor ``name``."""
    from safetensors.torch import save_file

    tensors = read_tensors(base)
    del tensors[name]
    dest.mkdir()
    save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    (dest / "config.json").write_text((base / "config.json").read_text())
    return dest


GAPS = [
    # family, layers, overrides, the tensor deleted (others of its layer's kind keep theirs)
    ("qwen3_moe", 2, {}, "model.layers.1.self_attn.q_proj.weight"),
    ("mixtral", 2, {}, "model.layers.0.post_attention_layernorm.weight"),
    ("deepseek_v3", 4, {}, "model.layers.2.mlp.shared_experts.up_proj.weight"),
    ("qwen2_moe", 4, {}, "model.layers.3.mlp.shared_expert_gate.weight"),
    ("jamba", 4, {}, "model.layers.2.mamba.in_proj.weight"),
    ("qwen3_next", 4, {}, "model.layers.0.linear_attn.in_proj_qkvz.weight"),
    ("qwen3_next", 4, {}, "model.layers.3.self_attn.o_proj.weight"),
]


@pytest.mark.parametrize("family,n,overrides,name", GAPS)
def test_a_tensor_missing_from_one_layer_is_refused(tiny, tmp_path, family, n, overrides, name):
    base = tiny(family, num_layers=n, **overrides)
    assert name in read_tensors(base)
    src = _without(base, tmp_path / "src", name)
    with Checkpoint(src) as ckpt, pytest.raises(CheckpointError, match=re.escape(name) + " is "):
        make_plan(ckpt, GrowthSpec(depth=2))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", ["deepseek_v3", "qwen2_moe", "jamba", "qwen3_next"])
def test_layers_of_different_kinds_are_not_compared(tiny, family):
    """Dense prefix vs MoE, Mamba/linear attention vs attention: the untouched tiny models
    (whose layers differ in kind) plan without complaint."""
    with Checkpoint(tiny(family, num_layers=4)) as ckpt:
        plan = make_plan(ckpt, GrowthSpec(width=2))
    assert plan.expert_map is not None
