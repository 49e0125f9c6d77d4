"""GLM-5 (``glm_moe_dsa``): MLA attention with a sparse-attention indexer;
DeepSeek-V3's router (sigmoid scores, selection steered by ``e_score_correction_bias``,
group-limited, renormalised iff ``norm_topk_prob``, times ``routed_scaling_factor``),
per-expert tensors, shared experts and a dense prefix
(``first_k_dense_replace``)."""

from dataclasses import replace

from moegrow.families import deepseek_v3

FAMILY = replace(
    deepseek_v3.FAMILY,
    name="glm_moe_dsa",
    model_types=("glm_moe_dsa",),
    per_layer_lists=("layer_types", "mlp_layer_types", "indexer_types"),
    shared_indexer=("indexer_types", "self_attn.indexer."),
)
