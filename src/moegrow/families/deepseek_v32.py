"""DeepSeek-V3.2 (``deepseek_v32``): V3 with a sparse-attention indexer;
DeepSeek-V3's router (sigmoid scores, selection steered by ``e_score_correction_bias``,
group-limited, renormalised iff ``norm_topk_prob``, times ``routed_scaling_factor``),
per-expert tensors, shared experts and a dense prefix
(``first_k_dense_replace``)."""

from dataclasses import replace

from moegrow.families import deepseek_v3

FAMILY = replace(deepseek_v3.FAMILY, name="deepseek_v32", model_types=("deepseek_v32",))
