"""Qwen4-Exp text (``qwen4_exp_text``): Qwen3.5-MoE's layout (gated-delta-net linear attention or
full attention with a sparse-attention indexer per ``layer_types``, Qwen2-MoE experts per expert
on disk, a sigmoid-gated shared expert, softmax router renormalised per ``norm_topk_prob``)
between hyper-connections: the residual stream is ``hc_count`` streams, each layer reads a gated
mix of them and adds its output to every stream, so a zero-initialised copy adds nothing and
depth growth is exact. Per-layer n-gram embeddings (``ple_layer_ids``, 1-based) are hashed by
their rank among the PLE layers: copies are built without one, so the ranks stay."""

from dataclasses import replace

from moegrow.families.base import LayerPeriod, Router
from moegrow.families.qwen3_next import QWEN3_5_MOE_TEXT

FAMILY = replace(
    QWEN3_5_MOE_TEXT,
    name="qwen4_exp_text",
    model_types=("qwen4_exp_text",),
    router=Router(
        weight="mlp.gate.weight",
        scoring="softmax",
        renormalize="norm_topk_prob",
        renormalize_default=True,
    ),
    required_global=("model.embed_tokens.weight", "model.hyper_connection_mixer.hc_norm.weight"),
    required_layer=("attn_hyper_connection.hc_norm.weight", "mlp_hyper_connection.hc_norm.weight"),
    layer_types_period=LayerPeriod(
        "full_attention_interval", "linear_attention", "indexed_attention", default=4, drop=True
    ),
    first_occurrence_modules=(("ple_layer_ids", "ple."),),
)
