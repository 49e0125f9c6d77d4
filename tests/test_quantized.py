"""Quantised experts (FP8 with block scales, MXFP4 blocks/scales) are duplicated as they are."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import read_tensors

from moegrow.errors import GrowthError
from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec


def _fp8_deepseek(tiny, tmp_path, **overrides):
    """DeepSeek-V3 with FP8 (e4m3) expert weights and one F32 scale per 128x128 block."""
    base = tiny("deepseek_v3", num_layers=2, **overrides)
    src = tmp_path / "fp8"
    shutil.copytree(base, src)
    tensors = load_file(src / "model.safetensors")
    for name in [k for k in tensors if ".mlp.experts." in k]:
        w = tensors[name]
        tensors[name] = w.to(torch.float8_e4m3fn)
        tensors[name + "_scale_inv"] = torch.full((1, 1), 0.5, dtype=torch.float32)
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    (src / "config.json").write_text(json.dumps(cfg))
    return src


def _mxfp4_gpt_oss(tiny, tmp_path):
    """gpt-oss with MXFP4 experts: U8 blocks [E, rows, cols/32, 16] and exponents [E, rows,
    cols/32], expert axis first, as the released checkpoints store them."""
    base = tiny("gpt_oss", num_layers=2, intermediate_size=64)  # widths divisible by 32
    src = tmp_path / "mxfp4"
    shutil.copytree(base, src)
    tensors = load_file(src / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    for name in [k for k in tensors if k.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        e, cols, rows = tensors.pop(name).shape  # on disk [E, in, out]
        tensors[name + "_blocks"] = torch.randint(
            0, 256, (e, rows, cols // 32, 16), generator=gen
        ).to(torch.uint8)
        tensors[name + "_scales"] = torch.randint(
            120, 130, (e, rows, cols // 32), generator=gen
        ).to(torch.uint8)
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    return src


def test_fp8_experts_and_scales_duplicated(tiny, tmp_path):
    src = _fp8_deepseek(tiny, tmp_path)
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0), progress=False)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    e = json.loads((src / "config.json").read_text())["n_routed_experts"]
    for i in range(e):
        for suffix in ("gate_proj.weight", "down_proj.weight", "down_proj.weight_scale_inv"):
            orig = before[f"model.layers.1.mlp.experts.{i}.{suffix}"]
            copy = after[f"model.layers.1.mlp.experts.{i + e}.{suffix}"]
            assert copy.dtype == orig.dtype
            assert copy.view(torch.uint8).equal(orig.view(torch.uint8))
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "fp8"


def test_fp8_noise_refused_with_advice(tiny, tmp_path, run_cli):
    src = _fp8_deepseek(tiny, tmp_path)
    with pytest.raises(GrowthError, match="--noise 0"):
        grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0.01), progress=False)
    assert not (tmp_path / "out").exists()


def test_fp8_halving_goes_into_the_scale(tiny, tmp_path):
    """Sigmoid router without renormalisation: halve the dequantisation scale, not the bytes."""
    src = _fp8_deepseek(tiny, tmp_path, norm_topk_prob=False)
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0), progress=False)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    for i in (0, 4):
        p = f"model.layers.1.mlp.experts.{i}.down_proj."
        q = "model.layers.1.mlp.experts.0.down_proj."
        assert after[p + "weight_scale_inv"].equal(before[q + "weight_scale_inv"] / 2)
        assert after[p + "weight"].view(torch.uint8).equal(before[q + "weight"].view(torch.uint8))
        gate = f"model.layers.1.mlp.experts.{i}.gate_proj.weight_scale_inv"
        assert after[gate].equal(before["model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv"])


def test_mxfp4_blocks_and_scales_duplicated_on_expert_axis(tiny, tmp_path, run_cli):
    src = _mxfp4_gpt_oss(tiny, tmp_path)
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0), progress=False)
    before, after = read_tensors(src), read_tensors(tmp_path / "out")
    for name in (
        "gate_up_proj_blocks",
        "gate_up_proj_scales",
        "down_proj_blocks",
        "down_proj_bias",
    ):
        full = f"model.layers.0.mlp.experts.{name}"
        assert after[full].equal(torch.cat([before[full], before[full]])), name
    code, out, _ = run_cli("plan", src, "--width", "2", "--noise", "0", "--json")
    summary = json.loads(out)
    # MXFP4 blocks hold two parameters per byte; exponents are not parameters.
    blocks = sum(t.numel() for k, t in before.items() if k.endswith("_blocks"))
    scales = sum(t.numel() for k, t in before.items() if k.endswith("_scales"))
    plain = sum(t.numel() for k, t in before.items() if not k.endswith(("_blocks", "_scales")))
    assert summary["params"]["total"][0] == plain + 2 * blocks
    assert scales > 0


def test_mxfp4_zero_init_and_noise(tiny, tmp_path):
    src = _mxfp4_gpt_oss(tiny, tmp_path)
    grow(src, tmp_path / "out", GrowthSpec(depth=2, zero_init=True), progress=False)
    after = read_tensors(tmp_path / "out")
    assert not after["model.layers.1.mlp.experts.down_proj_blocks"].any()
    assert after["model.layers.0.mlp.experts.down_proj_blocks"].any()
    with pytest.raises(GrowthError, match="quantised"):
        grow(src, tmp_path / "noisy", GrowthSpec(width=2, noise=0.01), progress=False)
