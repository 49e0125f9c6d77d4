"""Kimi Linear (``kimi_linear``): Kimi delta attention or MLA per layer (``layer_types``, or in
release configs the 1-based ``full_attn_layers`` / ``kda_layers`` of ``linear_attn_config``),
dense or MoE per layer (``mlp_layer_types``, else ``first_k_dense_replace``). Mixtral-style
experts per expert on disk (``w1``/``w3``/``w2``) and shared experts; DeepSeek-V3's sigmoid
router with ``e_score_correction_bias``, group-limited, renormalised per ``moe_renormalize``."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="kimi_linear",
    model_types=("kimi_linear",),
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_token", "num_experts_per_tok"),
        per_expert=("block_sparse_moe.experts.{e}.*",),
        down=("block_sparse_moe.experts.{e}.w2.*",),
    ),
    router=Router(
        weight="block_sparse_moe.gate.weight",
        balance_biases=("block_sparse_moe.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize="moe_renormalize",
        renormalize_default=True,
        group_keys=("num_expert_group", "topk_group"),
    ),
    residual=(
        "self_attn.o_proj.*",
        "block_sparse_moe.experts.{e}.w2.*",
        "block_sparse_moe.shared_experts.down_proj.*",
        "block_sparse_moe.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    index_rules=("linear_attn_config", "mlp_layer_types"),
    dense_ffn=(
        "block_sparse_moe.gate_proj.weight",
        "block_sparse_moe.up_proj.weight",
        "block_sparse_moe.down_proj.weight",
    ),
)
