"""GLM-4.7-Flash (``glm4_moe_lite``): MLA attention: DeepSeek-V3's router (sigmoid scores, selection
steered by ``e_score_correction_bias``, group-limited, renormalised iff ``norm_topk_prob``, times
``routed_scaling_factor``), per-expert tensors, shared experts and a dense prefix
(``first_k_dense_replace``)."""

from dataclasses import replace

from moegrow.families import deepseek_v3

FAMILY = replace(deepseek_v3.FAMILY, name="glm4_moe_lite", model_types=("glm4_moe_lite",))
