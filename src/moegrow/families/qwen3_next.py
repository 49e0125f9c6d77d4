"""Qwen3-Next (``qwen3_next``) and Qwen3.5-MoE (``qwen3_5_moe_text``; the multimodal
``qwen3_5_moe`` wrapper keeps the text tower under ``model.language_model.`` and its config
under ``text_config``): gated-delta-net linear attention (``linear_attn.out_proj``) and gated
full attention per ``layer_types`` (release configs give ``full_attention_interval`` instead,
made explicit before depth growth); Qwen2-MoE experts per expert on disk with a
sigmoid-gated shared expert (or fused, as transformers holds them in memory); softmax, top-k,
renormalised (Qwen3-Next per
``norm_topk_prob``)."""

from dataclasses import replace

from moegrow.families.base import Experts, Family, LayerPeriod, Router, multimodal

_EXPERTS = Experts(
    count_keys=("num_experts", "num_local_experts"),
    top_k_keys=("num_experts_per_tok",),
    per_expert=("mlp.experts.{e}.*",),
    fused=("mlp.experts.gate_up_proj*", "mlp.experts.down_proj*"),  # the in-memory layout
    down=("mlp.experts.{e}.down_proj.*", "mlp.experts.down_proj*"),
)
_RESIDUAL = (
    "self_attn.o_proj.*",
    "linear_attn.out_proj.*",
    "mlp.experts.{e}.down_proj.*",
    "mlp.experts.down_proj*",
    "mlp.shared_expert.down_proj.*",
    "mlp.down_proj.*",
)

QWEN3_NEXT = Family(
    name="qwen3_next",
    model_types=("qwen3_next",),
    experts=_EXPERTS,
    router=Router(
        weight="mlp.gate.weight",
        scoring="softmax",
        renormalize="norm_topk_prob",
        renormalize_default=True,
    ),
    residual=_RESIDUAL,
    required_layer=("input_layernorm.weight", "post_attention_layernorm.weight"),
    layer_index_lists=("mlp_only_layers",),
    index_rules=("decoder_sparse_step",),
    layer_types_period=LayerPeriod(
        "full_attention_interval", "linear_attention", "full_attention", default=4, drop=True
    ),
    ignored_prefixes=("mtp.",),
)

QWEN3_5_MOE_TEXT = replace(
    QWEN3_NEXT,
    name="qwen3_5_moe_text",
    model_types=("qwen3_5_moe_text",),
    router=Router(weight="mlp.gate.weight", scoring="softmax", renormalize=True),
    layer_index_lists=(),
    index_rules=(),
)

QWEN3_5_MOE = multimodal(
    QWEN3_5_MOE_TEXT,
    name="qwen3_5_moe",
    model_type="qwen3_5_moe",
    text_prefix="model.language_model.",
)
