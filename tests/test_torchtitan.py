"""Hand-off to torchtitan (expert parallelism past one node), where torchtitan is installed.

torchtitan 0.3.0 has Hugging Face state-dict adapters for Qwen3 (MoE and dense), Llama 3,
DeepSeek-V3, gpt-oss, Qwen3.5 and Kimi K2.5 (``kimi_k2_7``). Each family that moegrow also grows
is checked on a base tiny checkpoint and on a grown one (depth x2, width x2 with noise for the
MoE families; depth x2 for the dense ones):

- Qwen3-MoE, dense Qwen3, Llama (``llama``, torchtitan's Llama 3 adapter) and DeepSeek-V3:
  ``to_hf(from_hf(x))`` gives every tensor of the checkpoint back, bit for bit, and torchtitan's
  model, built from a config matching ``config.json`` and loaded with ``from_hf(x)``, computes
  transformers' float32 logits within 1e-5 (measured 1.8e-7 to 2.8e-7, on logits of magnitude
  0.78-0.99). Stock torchtitan runs the experts' grouped matmuls in bf16 whatever the weights'
  dtype (the logits then differ by 2-3e-4 for Qwen3-MoE, 7e-4 for DeepSeek-V3); the test swaps
  in a float32 loop over the experts so that the comparison is exact to float32 rounding. The
  DeepSeek-V3 case covers q-LoRA, MLA with interleaved RoPE, a dense first layer (two after
  depth growth), a shared expert, sigmoid scores with group-limited top-k (``n_group`` 2 -> 4
  after width growth), the selection bias ``e_score_correction_bias`` and
  ``routed_scaling_factor``; zeroing that bias in torchtitan's model moves its logits by 0.23
  (0.33 grown).
- gpt-oss: the adapter cannot load the experts of an unquantized checkpoint (what transformers
  writes and moegrow grows). It maps only MXFP4 names (``gate_up_proj_blocks``), so from_hf drops
  ``mlp.experts.gate_up_proj`` / ``down_proj``, and it maps the expert biases and ``*_blocks`` to
  ``mlp1_bias`` / ``mlp1_weight`` ..., names that torchtitan's ``GptOssGroupedExperts`` does not
  have (``mlp1_weight_EGD``, ``mlp1_bias_EG`` ...): ``to_hf`` of the model's own state dict names
  no expert tensor, so torchtitan's HF loader, which reads the keys ``to_hf`` names and loads
  with ``strict=False`` (``components/checkpointer``), leaves the experts at their
  initialisation, from an unquantized or an MXFP4 checkpoint alike. The test pins that gap
  (every other tensor round-trips bit for bit), and then checks torchtitan's gpt-oss model
  itself: with the expert tensors converted by hand (transposed to ``[E, out, in]``; the gate/up
  interleave is the same on both sides) it computes transformers' logits within 1e-5 (measured
  2.4e-7 base, 3.6e-7 grown), sliding-window layers (``layer_types``), attention sinks, biases
  and the clamped SwiGLU included.
- Qwen3.5-MoE (``qwen3_5_moe``, the multimodal layout ``model.language_model.*`` that torchtitan's
  adapter reads, tiny vision tower included): the adapter knows the routed experts only fused
  (``mlp.experts.gate_up_proj`` / ``down_proj``), in a layout ``[E, H, 2I]`` / ``[E, I, H]``
  that is not transformers' (``[E, 2I, H]`` / ``[E, H, I]``). Per-expert checkpoints (what
  transformers writes and moegrow grows) lose their routed experts in ``from_hf``; fused ones
  round-trip bit for bit but ``from_hf`` splits ``gate_up_proj`` along the wrong axis, so the
  expert tensors do not fit the model's parameters. The test pins both, with every other tensor
  (linear-attention, full attention, shared expert, vision tower) round-tripping bit for bit.
  Logits are not compared: besides the experts, torchtitan's Qwen3.5 forward runs its Gated
  DeltaNet layers through flash-linear-attention's Triton kernels and, on a single CPU process,
  stops earlier in ``spmd_types`` ("no current mesh is set").
- Kimi K2.5 (``kimi_k2_7``): not covered; its adapter is for the ``kimi_k25`` multimodal wrapper,
  a model type moegrow does not grow.

Needs ``torchtitan`` (0.3) importable, which on a CPU machine also needs ``triton`` importable;
skipped otherwise. The Qwen3.5 test also needs ``fla`` (the ``fla-core`` package), which
torchtitan's Qwen3.5 model imports. See README, "Scale-out".
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_models import build_model, read_tensors, sample_ids

pytest.importorskip("triton", reason="torchtitan imports triton")
torchtitan = pytest.importorskip("torchtitan", reason="torchtitan is not installed")

from torch.nn.attention.flex_attention import flex_attention  # noqa: E402
from torchtitan.models import deepseek_v3 as tt_deepseek_v3  # noqa: E402
from torchtitan.models import gpt_oss as tt_gpt_oss  # noqa: E402
from torchtitan.models import llama3 as tt_llama3  # noqa: E402
from torchtitan.models import qwen3 as tt_qwen3  # noqa: E402
from torchtitan.models.common import (  # noqa: E402
    ComplexRoPE,
    CosSinRoPE,
    Embedding,
    Linear,
    RMSNorm,
)
from torchtitan.models.common.attention import FlexAttention  # noqa: E402
from torchtitan.models.common.moe import GroupedExperts, TokenChoiceTopKRouter  # noqa: E402
from torchtitan.models.deepseek_v3.state_dict_adapter import (  # noqa: E402
    DeepSeekV3StateDictAdapter,
)
from torchtitan.models.gpt_oss.moe import GptOssGroupedExperts, GptOssMoE, swiglu  # noqa: E402
from torchtitan.models.gpt_oss.state_dict_adapter import GptOssStateDictAdapter  # noqa: E402
from torchtitan.models.llama3.state_dict_adapter import Llama3StateDictAdapter  # noqa: E402
from torchtitan.models.qwen3.state_dict_adapter import Qwen3StateDictAdapter  # noqa: E402

from moegrow.growth.grow import grow  # noqa: E402
from moegrow.growth.spec import GrowthSpec  # noqa: E402

# --- torchtitan model configs matching a Hugging Face config.json ---------------------------


def rope_theta(cfg: dict) -> float:
    """The RoPE base of a config without RoPE scaling (the tiny checkpoints have none; the
    configs below would need torchtitan's YaRN / Llama scaling fields otherwise)."""
    rope = cfg["rope_parameters"]
    assert rope.get("rope_type", "default") == "default", rope
    return rope["rope_theta"]


def with_rms_norm_eps(config, eps: float):
    """``config`` with ``eps`` on every RMSNorm of its tree: torchtitan's builders leave
    nn.RMSNorm's 1e-5 or their own constant, transformers reads ``rms_norm_eps``."""
    if isinstance(config, RMSNorm.Config):
        config.eps = eps
    if isinstance(config, list):
        for item in config:
            with_rms_norm_eps(item, eps)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        for field in dataclasses.fields(config):
            with_rms_norm_eps(getattr(config, field.name), eps)
    return config


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
            dim=head_dim, max_seq_len=cfg["max_position_embeddings"], theta=rope_theta(cfg)
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
    config = tt_qwen3.Qwen3Model.Config(
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
    return with_rms_norm_eps(config, cfg["rms_norm_eps"])


def embeddings_and_head(module, d: int, vocab: int, tied: bool) -> dict:
    """The model-config fields shared by torchtitan's decoders: vocabulary, width, weight tying,
    token embeddings and output head, with ``module``'s own initialisers."""
    return dict(
        vocab_size=vocab,
        dim=d,
        enable_weight_tying=tied,
        tok_embeddings=Embedding.Config(
            num_embeddings=vocab, embedding_dim=d, param_init=module._EMBEDDING_INIT
        ),
        lm_head=Linear.Config(
            in_features=d, out_features=vocab, param_init=module._output_linear_init(d)
        ),
    )


def llama3_config(cfg: dict) -> tt_llama3.Llama3Model.Config:
    """torchtitan's Llama 3 model config for a Hugging Face ``llama`` ``config.json``."""
    d, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    assert cfg.get("head_dim", d // heads) == d // heads  # torchtitan derives it from dim
    assert not cfg.get("attention_bias") and not cfg.get("mlp_bias")
    vocab = cfg["vocab_size"]
    config = tt_llama3.Llama3Model.Config(
        **embeddings_and_head(tt_llama3, d, vocab, cfg["tie_word_embeddings"]),
        norm=RMSNorm.Config(normalized_shape=d, param_init=tt_llama3._NORM_INIT),
        layers=tt_llama3._build_llama3_layers(
            n_layers=cfg["num_hidden_layers"],
            dim=d,
            n_heads=heads,
            n_kv_heads=cfg["num_key_value_heads"],
            hidden_dim=cfg["intermediate_size"],
            fuse_qkv=False,  # the adapter maps q, k and v separately
            attn_backend="flex",
            # complex pairs of adjacent dimensions: the adapter permutes q and k from
            # transformers' rotate-half order
            rope=ComplexRoPE.Config(
                dim=d // heads, max_seq_len=cfg["max_position_embeddings"], theta=rope_theta(cfg)
            ),
        ),
    )
    return with_rms_norm_eps(config, cfg["rms_norm_eps"])


def deepseek_v3_config(cfg: dict) -> tt_deepseek_v3.DeepSeekV3Model.Config:
    """torchtitan's DeepSeek-V3 model config for a Hugging Face ``deepseek_v3`` ``config.json``
    (no multi-token-prediction layers: transformers does not load them either)."""
    assert cfg["rope_interleave"]  # transformers then pairs adjacent dims, as ComplexRoPE does
    d, vocab = cfg["hidden_size"], cfg["vocab_size"]
    layers = tt_deepseek_v3._build_dsv3_layers(
        n_layers=cfg["num_hidden_layers"],
        n_dense_layers=cfg["first_k_dense_replace"],
        dim=d,
        n_heads=cfg["num_attention_heads"],
        q_lora_rank=cfg["q_lora_rank"] or 0,
        kv_lora_rank=cfg["kv_lora_rank"],
        qk_nope_head_dim=cfg["qk_nope_head_dim"],
        qk_rope_head_dim=cfg["qk_rope_head_dim"],
        v_head_dim=cfg["v_head_dim"],
        mscale=1.0,  # only used with YaRN
        dense_hidden_dim=cfg["intermediate_size"],
        moe_hidden_dim=cfg["moe_intermediate_size"],
        num_experts=cfg["n_routed_experts"],
        num_shared_experts=cfg["n_shared_experts"],
        router_top_k=cfg["num_experts_per_tok"],
        router_score_func="sigmoid",
        router_num_expert_groups=cfg["n_group"],
        router_num_limited_groups=cfg["topk_group"],
        router_route_scale=cfg["routed_scaling_factor"],
        router_route_norm=cfg["norm_topk_prob"],
        attn_backend="flex",
        moe_comm_backend="standard",
        non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(
            dim=cfg["qk_rope_head_dim"],
            max_seq_len=cfg["max_position_embeddings"],
            theta=rope_theta(cfg),
        ),
    )
    config = tt_deepseek_v3.DeepSeekV3Model.Config(
        **embeddings_and_head(tt_deepseek_v3, d, vocab, cfg["tie_word_embeddings"]),
        norm=RMSNorm.Config(normalized_shape=d, param_init=tt_deepseek_v3._NORM_INIT),
        layers=layers,
    )
    return with_rms_norm_eps(config, cfg["rms_norm_eps"])


def gpt_oss_config(cfg: dict) -> tt_gpt_oss.GptOssModel.Config:
    """torchtitan's gpt-oss model config for a Hugging Face ``gpt_oss`` ``config.json``: layers
    as torchtitan's ``_build_gptoss_layers`` makes them, but with the sliding window of
    ``sliding_window`` on the layers ``layer_types`` says (torchtitan's own flavours put a
    128-token window on the even layers)."""
    assert cfg["attention_bias"] and cfg["swiglu_limit"] == 7.0  # torchtitan's fixed choices
    d, vocab, head_dim = cfg["hidden_size"], cfg["vocab_size"], cfg["head_dim"]
    experts, top_k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    rope = CosSinRoPE.Config(
        dim=head_dim, max_seq_len=cfg["max_position_embeddings"], theta=rope_theta(cfg)
    )
    layers = []
    for layer_id, kind in enumerate(cfg["layer_types"]):
        attention = tt_gpt_oss._make_gptoss_attn_config(
            dim=d,
            layer_id=layer_id,
            attn_backend="flex",
            n_heads=cfg["num_attention_heads"],
            n_kv_heads=cfg["num_key_value_heads"],
            head_dim=head_dim,
            sliding_window_size=cfg["sliding_window"] if kind == "sliding_attention" else None,
            fuse_qkv=False,  # the adapter maps q, k and v separately
            rope=rope,
        )
        moe = GptOssMoE.Config(
            num_experts=experts,
            load_balance_coeff=1e-3,
            routed_experts=tt_gpt_oss._make_gptoss_experts_config(
                dim=d,
                hidden_dim=cfg["intermediate_size"],
                num_experts=experts,
                layer_id=layer_id,
                top_k=top_k,
                moe_comm_backend="standard",
            ),
            # softmax over all experts, top k, renormalised = transformers' softmax over the
            # top k logits
            router=TokenChoiceTopKRouter.Config(
                num_experts=experts,
                score_func="softmax",
                route_norm=True,
                gate=Linear.Config(in_features=d, out_features=experts, bias=True),
                top_k=top_k,
            ),
        )
        layers.append(
            tt_gpt_oss.GptOssTransformerBlock.Config(
                attention=attention,
                attention_norm=RMSNorm.Config(normalized_shape=d),
                ffn_norm=RMSNorm.Config(normalized_shape=d),
                moe=moe,
            )
        )
    config = tt_gpt_oss.GptOssModel.Config(
        **embeddings_and_head(tt_gpt_oss, d, vocab, cfg["tie_word_embeddings"]),
        norm=RMSNorm.Config(normalized_shape=d),
        layers=layers,
    )
    return with_rms_norm_eps(config, cfg["rms_norm_eps"])


def qwen3_5_config(cfg: dict):
    """torchtitan's Qwen3.5 model config (text stack and vision tower) for a Hugging Face
    ``qwen3_5_moe`` ``config.json``: layers as torchtitan's ``_build_qwen35_moe_layers`` makes
    them, full or linear attention per ``layer_types`` (torchtitan's own flavours put full
    attention on every fourth layer)."""
    from torchtitan.models import qwen3_5 as tt_qwen3_5
    from torchtitan.models.qwen3_5.rope import MRoPE

    text, vision = cfg["text_config"], cfg["vision_config"]
    d, vocab, n = text["hidden_size"], text["vocab_size"], text["num_hidden_layers"]
    rotary_dim = int(text["head_dim"] * text["rope_parameters"]["partial_rotary_factor"])
    common = dict(
        n_layers=n,
        dim=d,
        n_heads=text["num_attention_heads"],
        n_kv_heads=text["num_key_value_heads"],
        head_dim=text["head_dim"],
        rotary_dim=rotary_dim,
        # text positions use the plain RoPE; the sections matter for images only
        rope=MRoPE.Config(
            dim=rotary_dim,
            max_seq_len=text["max_position_embeddings"],
            theta=rope_theta(text),
            mrope_section=text["rope_parameters"].get("mrope_section", [rotary_dim // 2, 0, 0]),
        ),
        moe_hidden_dim=text["moe_intermediate_size"],
        num_experts=text["num_experts"],
        top_k=text["num_experts_per_tok"],
        shared_expert_hidden_dim=text["shared_expert_intermediate_size"],
        n_key_heads=text["linear_num_key_heads"],
        n_value_heads=text["linear_num_value_heads"],
        key_head_dim=text["linear_key_head_dim"],
        value_head_dim=text["linear_value_head_dim"],
        attn_backend="flex",
    )
    full = tt_qwen3_5._build_qwen35_moe_layers(**common, full_attention_interval=1)
    linear = tt_qwen3_5._build_qwen35_moe_layers(**common, full_attention_interval=n + 1)
    kinds = text["layer_types"]
    assert set(kinds) <= {"full_attention", "linear_attention"}, kinds
    return tt_qwen3_5.Qwen35Model.Config(
        **embeddings_and_head(tt_qwen3_5, d, vocab, cfg["tie_word_embeddings"]),
        norm=tt_qwen3_5._offset_norm(d),
        layers=[full[i] if kind == "full_attention" else linear[i] for i, kind in enumerate(kinds)],
        vision_encoder=tt_qwen3_5._qwen35_vision_encoder_config(
            dim=vision["hidden_size"],
            ffn_dim=vision["intermediate_size"],
            num_layers=vision["depth"],
            num_heads=vision["num_heads"],
            patch_size=vision["patch_size"],
            temporal_patch_size=vision["temporal_patch_size"],
            spatial_merge_size=vision["spatial_merge_size"],
            out_hidden_size=vision["out_hidden_size"],
            num_position_embeddings=vision["num_position_embeddings"],
            in_channels=vision["in_channels"],
        ),
    )


# --- float32 experts and the comparison with transformers ----------------------------------


def float32_experts(self, x, tokens_per_expert):
    """GroupedExperts.forward in float32: one plain matmul chain per expert."""
    out, start = [], 0
    for e, n in enumerate(tokens_per_expert.tolist()):
        x_e = x[start : start + n]
        h = torch.nn.functional.silu(x_e @ self.w1_EFD[e].T) * (x_e @ self.w3_EFD[e].T)
        out.append(h @ self.w2_EDF[e].T)
        start += n
    return torch.cat(out).type_as(x)


def float32_gpt_oss_experts(self, x, tokens_per_expert):
    """GptOssGroupedExperts.forward in float32: one plain matmul chain per expert."""
    out, start = [], 0
    for e, n in enumerate(tokens_per_expert.tolist()):
        x_e = x[start : start + n]
        h = swiglu(x_e @ self.mlp1_weight_EGD[e].T + self.mlp1_bias_EG[e], limit=self.swiglu_limit)
        out.append(h @ self.mlp2_weight_EDF[e].T + self.mlp2_bias_ED[e])
        start += n
    return torch.cat(out).type_as(x)


def assert_bit_for_bit(hf: dict, back: dict, *, dropped: set[str] = frozenset()) -> None:
    """``back`` holds every tensor of ``hf`` but ``dropped``, each with the same dtype, shape and
    bytes."""
    assert back.keys() == hf.keys() - dropped
    for name, t in back.items():
        assert t.dtype == hf[name].dtype and t.shape == hf[name].shape, name
        assert torch.equal(t.reshape(-1).view(torch.uint8), hf[name].reshape(-1).view(torch.uint8))


def assert_logits_match_transformers(model, folder: Path, vocab: int) -> None:
    """torchtitan's ``model`` (loaded, float32 experts patched in) computes transformers' float32
    logits of ``folder`` within 1e-5."""
    from transformers import AutoModelForCausalLM

    ids = sample_ids(batch=2, seq=12, vocab=vocab)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(ids, positions, model.get_attention_masks(positions))
        expected = reference(ids).logits
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def load_for_comparison(config, state: dict):
    """torchtitan's model built from ``config`` in float32 with ``state`` loaded; the
    load-balancing bias buffers that ``state`` lacks are zero, as after from_pretrained."""
    model = config.build()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("expert_bias_E") for k in missing), (
        missing,
        unexpected,
    )
    model = model.float().eval()
    for name in missing:
        model.get_buffer(name).zero_()
    return model


# --- checkpoints ----------------------------------------------------------------------------

GROWTHS = ("base", "grown")
MOE_GROWTH = GrowthSpec(depth=2, width=2, noise=0.01, seed=1)
DENSE_GROWTH = GrowthSpec(depth=2, seed=1)
TINY = dict(num_layers=2, dtype="bfloat16")
DENSE_FAMILIES = {"qwen3", "llama"}


def checkpoint(tiny, tmp_path: Path, family: str, growth: str, **overrides) -> Path:
    """The tiny ``family`` checkpoint, grown when ``growth`` is "grown"."""
    folder = tiny(family, **TINY, **overrides)
    return maybe_grown(folder, tmp_path, growth, dense=family in DENSE_FAMILIES)


def maybe_grown(folder: Path, tmp_path: Path, growth: str, *, dense: bool = False) -> Path:
    """``folder``, or when ``growth`` is "grown" ``folder`` grown by depth x2, width x2 with noise
    (MoE) or by depth x2 (dense)."""
    if growth == "base":
        return folder
    spec = DENSE_GROWTH if dense else MOE_GROWTH
    return grow(folder, tmp_path / "grown", spec, progress=False).out


@dataclasses.dataclass(frozen=True)
class Handoff:
    """A family whose checkpoints torchtitan's adapter loads."""

    config: Callable[[dict], object]  # torchtitan's model config for a config.json
    adapter: type
    tiny: dict = dataclasses.field(default_factory=dict)  # overrides of the tiny checkpoint


HANDOFFS = {
    "qwen3_moe": Handoff(qwen3_config, Qwen3StateDictAdapter, dict(mlp_only_layers=[])),
    "qwen3": Handoff(qwen3_config, Qwen3StateDictAdapter),
    "llama": Handoff(llama3_config, Llama3StateDictAdapter),
    "deepseek_v3": Handoff(deepseek_v3_config, DeepSeekV3StateDictAdapter),
}


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("family", list(HANDOFFS))
def test_round_trip_and_logits(tiny, tmp_path, monkeypatch, family, growth):
    """``to_hf(from_hf(x))`` is ``x`` bit for bit, and torchtitan's model loaded with
    ``from_hf(x)`` computes transformers' float32 logits."""
    handoff = HANDOFFS[family]
    folder = checkpoint(tiny, tmp_path, family, growth, **handoff.tiny)
    cfg = json.loads((folder / "config.json").read_text())
    config = handoff.config(cfg)
    hf = read_tensors(folder)
    adapter = handoff.adapter(config, None)
    titan = adapter.from_hf(dict(hf))
    assert_bit_for_bit(hf, adapter.to_hf(dict(titan)))

    model = load_for_comparison(config, titan)
    monkeypatch.setattr(GroupedExperts, "forward", float32_experts)
    assert_logits_match_transformers(model, folder, cfg["vocab_size"])


def gpt_oss_expert_tensors(layers: int) -> set[str]:
    """The unquantized expert weights of a gpt-oss checkpoint (biases aside)."""
    return {
        f"model.layers.{i}.mlp.experts.{name}"
        for i in range(layers)
        for name in ("gate_up_proj", "down_proj")
    }


@pytest.mark.parametrize("growth", GROWTHS)
def test_gpt_oss_adapter_drops_the_unquantized_experts(tiny, tmp_path, growth):
    """torchtitan 0.3.0's gpt-oss adapter keeps every tensor but the expert weights, and gives the
    expert biases it keeps names that torchtitan's model does not have: a fixed adapter fails
    this test, and gpt-oss then belongs in ``HANDOFFS``."""
    folder = checkpoint(tiny, tmp_path, "gpt_oss", growth)
    cfg = json.loads((folder / "config.json").read_text())
    n = cfg["num_hidden_layers"]
    config = gpt_oss_config(cfg)
    hf = read_tensors(folder)
    adapter = GptOssStateDictAdapter(config, None)
    titan = adapter.from_hf(dict(hf))
    assert_bit_for_bit(hf, adapter.to_hf(dict(titan)), dropped=gpt_oss_expert_tensors(n))

    model = config.build()
    experts = [f"layers.{i}.moe.routed_experts.inner_experts." for i in range(n)]
    missing, unexpected = model.load_state_dict(titan, strict=False)
    assert set(unexpected) == {p + b for p in experts for b in ("mlp1_bias", "mlp2_bias")}
    params = ("mlp1_weight_EGD", "mlp1_bias_EG", "mlp2_weight_EDF", "mlp2_bias_ED")
    load_balancing = {f"layers.{i}.moe.expert_bias_E" for i in range(n)}
    assert set(missing) == {p + w for p in experts for w in params} | load_balancing
    # torchtitan's HF loader reads the tensors to_hf names for the model's state dict: no expert
    assert not any(".mlp.experts." in k for k in adapter.to_hf(model.state_dict()))


@pytest.mark.parametrize("growth", GROWTHS)
def test_gpt_oss_logits_with_the_experts_converted_by_hand(tiny, tmp_path, monkeypatch, growth):
    """torchtitan's gpt-oss model computes transformers' logits once the expert tensors that its
    adapter cannot map are put in by hand: transformers' ``gate_up_proj`` ``[E, H, 2I]`` and
    ``down_proj`` ``[E, I, H]`` transposed to torchtitan's ``[E, 2I, H]`` / ``[E, H, I]``."""
    folder = checkpoint(tiny, tmp_path, "gpt_oss", growth)
    cfg = json.loads((folder / "config.json").read_text())
    config = gpt_oss_config(cfg)
    hf = read_tensors(folder)
    state = {
        k: v
        for k, v in GptOssStateDictAdapter(config, None).from_hf(dict(hf)).items()
        if ".inner_experts." not in k
    }
    for i in range(cfg["num_hidden_layers"]):
        src, dst = f"model.layers.{i}.mlp.experts.", f"layers.{i}.moe.routed_experts.inner_experts."
        state[dst + "mlp1_weight_EGD"] = hf[src + "gate_up_proj"].transpose(-2, -1)
        state[dst + "mlp1_bias_EG"] = hf[src + "gate_up_proj_bias"]
        state[dst + "mlp2_weight_EDF"] = hf[src + "down_proj"].transpose(-2, -1)
        state[dst + "mlp2_bias_ED"] = hf[src + "down_proj_bias"]

    model = load_for_comparison(config, state)
    monkeypatch.setattr(GptOssGroupedExperts, "forward", float32_gpt_oss_experts)
    # The attention sinks need flex attention's log-sum-exp, which compiled flex attention on a
    # CPU does not return ("return_lse is not supported yet"); eager flex attention does.
    monkeypatch.setattr(FlexAttention, "_compiled_flex_attn", flex_attention)
    assert_logits_match_transformers(model, folder, cfg["vocab_size"])


def fused_qwen3_5_checkpoint(per_expert: Path, out: Path) -> Path:
    """A ``qwen3_5_moe`` checkpoint holding its routed experts fused, as transformers holds them
    in memory (``gate_up_proj`` ``[E, 2I, H]``, ``down_proj`` ``[E, H, I]``) and as some
    releases store them; moegrow grows it fused."""
    from safetensors.torch import save_file

    config = json.loads((per_expert / "config.json").read_text())
    out.mkdir()
    shutil.copy(per_expert / "config.json", out / "config.json")
    model = build_model("qwen3_5_moe", num_layers=config["text_config"]["num_hidden_layers"])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("layout", ["per expert", "fused"])
def test_qwen3_5_adapter_cannot_load_the_routed_experts(tiny, tmp_path, layout, growth):
    """torchtitan 0.3.0's Qwen3.5 adapter round-trips every tensor but the routed experts: per
    expert (as transformers writes them) it drops them; fused (as transformers holds them) it
    keeps them, bit for bit, but splits ``gate_up_proj`` along the hidden axis, so they do not
    fit the model. A fixed adapter fails this test, and Qwen3.5 then belongs in ``HANDOFFS``."""
    pytest.importorskip("fla", reason="torchtitan's Qwen3.5 model imports fla (fla-core)")
    from torchtitan.models.qwen3_5.state_dict_adapter import Qwen35StateDictAdapter

    folder = tiny("qwen3_5_moe", **TINY)
    if layout == "fused":
        folder = fused_qwen3_5_checkpoint(folder, tmp_path / "fused")
    folder = maybe_grown(folder, tmp_path, growth)
    cfg = json.loads((folder / "config.json").read_text())
    text = cfg["text_config"]
    experts, hidden, inner = text["num_experts"], text["hidden_size"], text["moe_intermediate_size"]
    config = qwen3_5_config(cfg)
    hf = read_tensors(folder)
    routed = {k for k in hf if ".mlp.experts." in k}
    adapter = Qwen35StateDictAdapter(config, None)
    titan = adapter.from_hf(dict(hf))
    back = adapter.to_hf(dict(titan))
    loaded = {k: tuple(v.shape) for k, v in titan.items() if ".inner_experts." in k}

    layers = range(text["num_hidden_layers"])
    if layout == "per expert":
        per_expert = (
            r"model\.language_model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj\.weight"
        )
        assert len(routed) == 3 * experts * len(layers)
        assert all(re.fullmatch(per_expert, k) for k in routed)
        assert_bit_for_bit(hf, back, dropped=routed)
        assert loaded == {}
    else:
        assert len(routed) == 2 * len(layers)
        assert_bit_for_bit(hf, back)
        shapes = {k: tuple(v.shape) for k, v in config.build().state_dict().items()}
        for i in layers:
            p = f"layers.{i}.moe.routed_experts.inner_experts."
            for w in ("w1_EFD", "w3_EFD"):
                assert shapes[p + w] == (experts, inner, hidden)
                assert loaded[p + w] == (experts, hidden // 2, 2 * inner)
            assert shapes[p + "w2_EDF"] == (experts, hidden, inner)
            assert loaded[p + "w2_EDF"] == (experts, inner, hidden)
