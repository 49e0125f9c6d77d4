"""Growth rules that single families need, each tested where it could go wrong: DBRX's p-norm
router (copies' down-projections scaled by M^(1/p - 1)) and its experts concatenated on axis 0,
``--zero-init`` refused where no zero-initialised copy is an identity (MiniMax), ZAYA's width
refusal, and Qwen4-Exp's copies built without per-layer n-gram embeddings."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import read_tensors

from moegrow.conformance.check import check_model_type


@pytest.mark.parametrize("p", [2.0, None])
def test_dbrx_p_norm_router_is_exact(tmp_path, p):
    """p = 2: the two copies of an expert would weigh 2^(1 - 1/2) times the original; each
    copy's down-projection (rows e*I..(e+1)*I of ``w2``) is scaled by 2^(1/2 - 1) instead.
    null: no renormalisation, the softmax halves each copy's weight by itself."""
    report = check_model_type(
        "dbrx", tmp_path, growths=("width",), ffn_config={"moe_normalize_expert_weights": p}
    )
    assert not report.error, report.error
    [outcome] = report.outcomes
    assert outcome.status == "exact", outcome.line()
    before, after = read_tensors(tmp_path / "dbrx"), read_tensors(tmp_path / "dbrx-width")
    name = "transformer.blocks.1.ffn.experts.mlp.w2"
    scale = 2 ** (1 / p - 1) if p else 1.0
    assert after[name].shape[0] == 2 * before[name].shape[0]
    torch.testing.assert_close(after[name], torch.cat([before[name], before[name]]) * scale)


def test_minimax_zero_init_refused_plain_copies_allowed(tiny, tmp_path, run_cli):
    src = tiny("minimax", num_layers=2)
    for command, *out in (("plan",), ("grow", tmp_path / "out")):
        code, _, err = run_cli(command, src, *out, "--depth", "2", "--zero-init")
        assert code == 2, err
        assert "--zero-init: minimax:" in err and "grow without --zero-init" in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    code, out, _ = run_cli("plan", src, "--depth", "2", "--json")
    assert code == 0
    assert "input norm" in " ".join(json.loads(out)["not_exact"])


def test_zaya_width_refused_depth_fills_identity_tensors(tmp_path):
    """Width: refused in one line. Depth: the copy of layer 0 placed at index 1 gets the router
    state scale (1) that transformers builds only after the first layer; residual scales 1."""
    report = check_model_type("zaya", tmp_path, growths=("width", "depth"))
    assert not report.error, report.error
    width, depth = report.outcomes
    assert width.status == "refused" and "num_experts_per_tok" in width.detail
    assert depth.status == "exact", depth.line()
    src, out = read_tensors(tmp_path / "zaya"), read_tensors(tmp_path / "zaya-depth")
    assert "model.layers.0.mlp.gate.router_states_scale" not in src
    assert out["model.layers.1.mlp.gate.router_states_scale"].eq(1).all()
    scale = "model.layers.3.post_mlp_residual_scale."
    assert out[scale + "residual_scale"].eq(1).all() and not out[scale + "residual_bias"].any()
    assert not out[scale + "hidden_states_scale"].any()


def test_qwen4_exp_copies_are_built_without_per_layer_ngram_embeddings(tmp_path):
    """PLE layers are hashed by their rank among the PLE layers: copies are built without one
    (ple_layer_ids keeps first occurrences, 1-based), so layer 2 keeps rank 1 and every growth
    stays exact (depth and width at once); a copy with its own PLE would shift that rank."""
    report = check_model_type(
        "qwen4_exp_text",
        tmp_path,
        growths=("both",),
        num_layers=4,  # linear, linear, linear, indexed attention
        ple_layer_ids=[1, 3],  # 1-based: layers 0 and 2
        ple_embed_dim=32,
        heads_per_ngram=2,
        ngram_vocab_size_base=64,
        split_ngram_parts=1,
    )
    assert not report.error, report.error
    [outcome] = report.outcomes
    assert outcome.status == "exact", outcome.line()
    grown = json.loads((tmp_path / "qwen4_exp_text-both" / "config.json").read_text())
    assert grown["ple_layer_ids"] == [1, 5]
    names = read_tensors(tmp_path / "qwen4_exp_text-both")
    assert any(k.startswith("model.layers.4.ple.") for k in names)
    assert not any(k.startswith(("model.layers.1.ple.", "model.layers.5.ple.")) for k in names)


def test_dbrx_expert_rows_checked_against_the_config(tmp_path, run_cli):
    """The fused tensors must hold E * ffn_hidden_size rows; a config that says otherwise is
    refused naming the tensor, before anything is written."""
    from moegrow.conformance.tiny import build_tiny

    build_tiny("dbrx").save_pretrained(tmp_path / "src")
    config = json.loads((tmp_path / "src" / "config.json").read_text())
    config["ffn_config"]["ffn_hidden_size"] //= 2
    (tmp_path / "src" / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli("grow", tmp_path / "src", tmp_path / "out", "--depth", "2")
    assert code == 2 and "ffn.experts.mlp." in err and "expected 112: the 4 experts x 28" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
