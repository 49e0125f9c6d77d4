"""Hand-off to torchtitan (expert parallelism past one node), where torchtitan is installed.

For each family that torchtitan has a Hugging Face state-dict adapter for and moegrow grows
(Qwen3-MoE and dense Qwen3), on a base and on a grown checkpoint:

- ``to_hf(from_hf(x))`` gives every tensor of the checkpoint back, bit for bit;
- torchtitan's model, loaded with ``from_hf(x)``, computes transformers' logits. Stock
  torchtitan runs the experts' grouped matmuls in bf16 whatever the weights' dtype; the test
  swaps in a float32 loop over the experts so that the comparison is exact to float32 rounding.

Needs ``torchtitan`` (0.3) importable, which on a CPU machine also needs ``triton`` importable;
skipped otherwise. See README, "Scale-out".
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import read_tensors, sample_ids

pytest.importorskip("triton", reason="torchtitan imports triton")
torchtitan = pytest.importorskip("torchtitan", reason="torchtitan is not installed")

from torchtitan.models import qwen3 as tt_qwen3  # noqa: E402
from torchtitan.models.common import CosSinRoPE, Embedding, Linear  # noqa: E402
from torchtitan.models.common.moe import GroupedExperts  # noqa: E402
from torchtitan.models.qwen3.state_dict_adapter import Qwen3StateDictAdapter  # noqa: E402

from moegrow.growth.grow import grow  # noqa: E402
from moegrow.growth.spec import GrowthSpec  # noqa: E402


def qwen3_config(cfg: dict) -> tt_qwen3.Qwen3Model.Config:
    """torchtitan's Qwen3 model config for a Hugging Face ``config.json`` (every layer sparse,
    or every layer dense)."""
    d, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or d // heads
    common = dict(
        n_layers=cfg["num_hidden_layers"],
        dim=d,
        n_heads=heads,
        n_kv_heads=cfg["num_key_value_heads"],
        head_dim=head_dim,
        fuse_qkv=False,  # the adapter maps q, k and v separately
        attn_backend="flex",
        rope=CosSinRoPE.Config(
            dim=head_dim,
            max_seq_len=cfg["max_position_embeddings"],
            theta=cfg["rope_parameters"]["rope_theta"],
        ),
    )
    if cfg["model_type"] == "qwen3_moe":
        assert not cfg.get("mlp_only_layers") and cfg.get("decoder_sparse_step", 1) == 1
        assert cfg["norm_topk_prob"]  # torchtitan's Qwen3 router renormalises the top k
        layers = tt_qwen3._build_qwen3_moe_layers(
            **common,
            moe_hidden_dim=cfg["moe_intermediate_size"],
            num_experts=cfg.get("num_experts") or cfg["num_local_experts"],
            top_k=cfg["num_experts_per_tok"],
            moe_comm_backend="standard",
        )
    else:
        layers = tt_qwen3._build_qwen3_layers(**common, hidden_dim=cfg["intermediate_size"])
    vocab = cfg["vocab_size"]
    return tt_qwen3.Qwen3Model.Config(
        vocab_size=vocab,
        dim=d,
        norm=tt_qwen3._qwen3_norm(d),
        enable_weight_tying=cfg["tie_word_embeddings"],
        tok_embeddings=Embedding.Config(
            num_embeddings=vocab, embedding_dim=d, param_init=tt_qwen3._EMBEDDING_SKIP_INIT
        ),
        lm_head=Linear.Config(in_features=d, out_features=vocab, param_init=tt_qwen3._LINEAR_INIT),
        layers=layers,
    )


def float32_experts(self, x, tokens_per_expert):
    """GroupedExperts.forward in float32: one plain matmul chain per expert."""
    out, start = [], 0
    for e, n in enumerate(tokens_per_expert.tolist()):
        x_e = x[start : start + n]
        h = torch.nn.functional.silu(x_e @ self.w1_EFD[e].T) * (x_e @ self.w3_EFD[e].T)
        out.append(h @ self.w2_EDF[e].T)
        start += n
    return torch.cat(out).type_as(x)


GROWTHS = {
    "base": None,
    "depth x2, width x2, noise": GrowthSpec(depth=2, width=2, noise=0.01, seed=1),
}
FAMILIES = {
    "qwen3_moe": dict(num_layers=2, mlp_only_layers=[], dtype="bfloat16"),
    "qwen3": dict(num_layers=2, dtype="bfloat16"),
}


@pytest.mark.parametrize("growth", list(GROWTHS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_round_trip_and_logits(tiny, tmp_path, monkeypatch, family, growth):
    folder = tiny(family, **FAMILIES[family])
    spec = GROWTHS[growth]
    if spec is not None:
        if family == "qwen3":
            spec = GrowthSpec(depth=2, seed=1)  # dense: depth only
        folder = grow(folder, tmp_path / "grown", spec, progress=False).out
    cfg = json.loads((folder / "config.json").read_text())
    config = qwen3_config(cfg)
    hf = read_tensors(folder)
    adapter = Qwen3StateDictAdapter(config, None)
    titan = adapter.from_hf(dict(hf))
    back = adapter.to_hf(dict(titan))
    assert back.keys() == hf.keys()
    for name, t in hf.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(back[name].view(-1).view(torch.uint8), t.view(-1).view(torch.uint8))

    model = config.build()
    missing, unexpected = model.load_state_dict(titan, strict=False)
    assert not unexpected and all(k.endswith("expert_bias_E") for k in missing)
    monkeypatch.setattr(GroupedExperts, "forward", float32_experts)
    model = model.float().eval()
    for name in missing:  # load-balancing bias buffers: zero, as after from_pretrained
        model.get_buffer(name).zero_()
    ids = sample_ids(batch=2, seq=12, vocab=cfg["vocab_size"])
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(ids, positions, model.get_attention_masks(positions))
        expected = reference(ids).logits
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
