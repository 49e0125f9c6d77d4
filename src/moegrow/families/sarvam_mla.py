"""Sarvam-105B (``sarvam_mla``): built by transformers as DeepSeek-V3 (MLA attention, sigmoid
router with ``e_score_correction_bias``, group-limited, renormalised iff ``norm_topk_prob``,
shared experts, a dense prefix of ``first_k_dense_replace`` layers), with the same tensors on
disk."""

from dataclasses import replace

from moegrow.families import deepseek_v3

FAMILY = replace(deepseek_v3.FAMILY, name="sarvam_mla", model_types=("sarvam_mla",))
