"""GLM-4.5 / 4.6 (``glm4_moe``): DeepSeek-V3's router (sigmoid scores, selection
steered by ``e_score_correction_bias``, group-limited, renormalised iff ``norm_topk_prob``, times
``routed_scaling_factor``), per-expert tensors, shared experts and a dense prefix
(``first_k_dense_replace``)."""

from dataclasses import replace

from moegrow.families import deepseek_v3

FAMILY = replace(deepseek_v3.FAMILY, name="glm4_moe", model_types=("glm4_moe",))
