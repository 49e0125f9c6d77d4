"""A.X K2 (``axk2``): DeepSeek-V3.2's sparse-attention indexer and router (sigmoid scores,
selection steered by ``e_score_correction_bias``, group-limited only where ``n_group`` is set,
renormalised iff ``norm_topk_prob``); a fused query/gate projection stored as
``self_attn.q_b_proj``; input norms (and post-attention norms of MoE layers) gated by a low-rank
MLP (``input_layernorm.norm``, ``.W_down``, ``.W_up``); dense or MoE per layer
(``mlp_layer_types``, else ``first_k_dense_replace`` / ``moe_layer_freq``)."""

from dataclasses import replace

from moegrow.families import deepseek_v32

FAMILY = replace(
    deepseek_v32.FAMILY,
    name="axk2",
    model_types=("axk2",),
    required_layer=("input_layernorm.norm.weight", "self_attn.o_proj.weight"),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    index_rules=("mlp_layer_types",),
    ffn_kind_modules=("post_attention_layernorm",),
)
