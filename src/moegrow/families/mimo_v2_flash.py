"""MiMo-V2-Flash (``mimo_v2_flash``): DeepSeek-V3's router (sigmoid scores, selection
steered by ``e_score_correction_bias``, group-limited, renormalised iff ``norm_topk_prob``, times
``routed_scaling_factor``), per-expert tensors, shared experts and a dense prefix
(``first_k_dense_replace``)."""

from dataclasses import replace

from moegrow.families import deepseek_v3

FAMILY = replace(
    deepseek_v3.FAMILY,
    name="mimo_v2_flash",
    model_types=("mimo_v2_flash",),
    per_layer_lists=("layer_types", "mlp_layer_types"),
)
