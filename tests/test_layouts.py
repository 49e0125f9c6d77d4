"""On-disk layouts grown as they are: multimodal wrappers (text tower under a prefix, vision
tensors untouched, Qwen3-VL's deepstack layers), fused experts, and modules transformers does
not load (``mtp.``)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_hybrid import SPECS, TOL, _spec
from tiny_models import (
    WRAPPED_FAMILIES,
    load_with_info,
    logits,
    model_logits,
    read_tensors,
    sample_ids,
)

from moegrow.growth.grow import grow


@pytest.mark.parametrize("family", list(WRAPPED_FAMILIES))
def test_wrapper_layout_is_kept(tiny, tmp_path, family):
    """A multimodal wrapper grows its text tower under the prefix it has on disk, edits only
    text_config, and leaves every other tensor bitwise."""
    src = tiny(family)
    result = grow(src, tmp_path / "out", SPECS["both"], progress=False)
    prefix = result.plan.family.layer_prefix
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    others = {n for n in before if not n.startswith(prefix)}
    assert others and others <= set(after)
    assert all(after[n].equal(before[n]) for n in others)
    assert all(n.startswith(prefix) for n in set(after) - others)
    src_cfg = json.loads((src / "config.json").read_text())
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    n = src_cfg["text_config"]["num_hidden_layers"]
    assert cfg["text_config"]["num_hidden_layers"] == 2 * n
    assert {k: v for k, v in cfg.items() if k != "text_config"} == {
        k: v for k, v in src_cfg.items() if k != "text_config"
    }
    assert all(e.startswith("text_config.") for e in result.plan.config_edits)


def test_deepstack_layers_must_stay_first(tiny, tmp_path):
    """Qwen3-VL adds visual features after text layers 0 and 1: interposing copies there changes
    image inputs (said by the plan, and measured), --keep-first 2 keeps them exact."""
    from tiny_models import load

    src = tiny("qwen3_vl_moe")
    ids = torch.tensor([[1, 2, 7, 5, 5, 5, 5, 8, 9, 10, 11, 12]])  # 4 merged image tokens
    image = dict(
        pixel_values=torch.randn(16, 96, generator=torch.Generator().manual_seed(0)),
        image_grid_thw=torch.tensor([[1, 4, 4]]),
        mm_token_type_ids=(ids == 5).long(),
    )

    def run(path, **inputs):
        with torch.no_grad():
            return load(path)(input_ids=ids, **inputs).logits

    ref_text, ref_image = run(src), run(src, **image)
    assert (ref_image - ref_text).abs().max() > 0.1  # the image matters

    plain = grow(src, tmp_path / "plain", SPECS["depth"], progress=False).plan
    assert not plain.exact and "--keep-first 2" in " ".join(plain.not_exact)
    assert (run(tmp_path / "plain") - ref_text).abs().max() <= TOL
    assert (run(tmp_path / "plain", **image) - ref_image).abs().max() > TOL

    kept = grow(src, tmp_path / "kept", _spec("qwen3_vl_moe", "depth"), progress=False).plan
    assert kept.exact and kept.layer_map[:2] == [0, 1]
    assert (run(tmp_path / "kept", **image) - ref_image).abs().max() <= TOL


@pytest.mark.parametrize("family", ["glm4v_moe", "qwen3_5_moe"])
def test_verify_builds_wrappers(tiny, tmp_path, family):
    """``moegrow verify`` builds wrappers that have no causal-LM class of their own."""
    from moegrow.growth.verify import verify

    src = tiny(family)
    grow(src, tmp_path / "out", SPECS["both"], progress=False)
    r = verify(src, tmp_path / "out")
    assert r.expected_exact is True and r.ok and r.max_abs_diff <= r.tolerance


#: Families whose fused in-memory expert layout transformers also loads from disk unchanged.
FUSED_LAYOUT = ["jamba", "lfm2_moe", "qwen3_next", "qwen3_5_moe_text", "qwen3_5_moe"]


@pytest.mark.parametrize("family", FUSED_LAYOUT)
def test_fused_layout_on_disk_is_grown_as_it_is(tiny, tmp_path, family):
    """A checkpoint holding the experts fused (as transformers holds them in memory, and as some
    releases store them) grows exactly and stays fused."""
    from safetensors.torch import save_file
    from tiny_models import build_model

    per_expert = tiny(family)
    fused = tmp_path / "fused"
    fused.mkdir()
    shutil.copy(per_expert / "config.json", fused / "config.json")
    state = {k: v.contiguous() for k, v in build_model(family).state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in state)
    save_file(state, fused / "model.safetensors", metadata={"format": "pt"})
    ids = sample_ids()
    ref = logits(per_expert, ids)
    model, info = load_with_info(fused)
    assert not any(info.values()), info
    assert (model_logits(model, ids) - ref).abs().max().item() == 0.0
    out = tmp_path / "out"
    result = grow(fused, out, _spec(family, "both"), progress=False)
    assert result.plan.exact, result.plan.not_exact
    assert not any(".experts.0." in n for n in read_tensors(out))
    model, info = load_with_info(out)
    assert not any(info.values()), info
    assert (model_logits(model, ids) - ref).abs().max().item() <= TOL


def test_ignored_mtp_module_is_copied_and_said(tiny, tmp_path):
    """Qwen3-Next's multi-token-prediction weights (``mtp.*``, which transformers does not load)
    are copied byte for byte, and the plan says they are not grown with the model."""
    from safetensors.torch import save_file

    src = tmp_path / "src"
    shutil.copytree(tiny("qwen3_next"), src)
    tensors = read_tensors(src)
    mtp = {
        "mtp." + k.removeprefix("model."): v.clone()
        for k, v in tensors.items()
        if k.startswith("model.layers.0.")
    }
    save_file({**tensors, **mtp}, src / "model.safetensors", metadata={"format": "pt"})
    result = grow(src, tmp_path / "out", SPECS["both"], progress=False)
    assert result.plan.exact
    assert any("under mtp." in note and "not widened" in note for note in result.plan.notes)
    after = read_tensors(tmp_path / "out")
    assert all(after[k].equal(v) for k, v in mtp.items())
    ids = sample_ids()
    assert (logits(tmp_path / "out", ids) - logits(src, ids)).abs().max().item() <= TOL
