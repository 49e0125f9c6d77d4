"""GLM-4.5V (``glm4v_moe``, ``Glm4vMoeForConditionalGeneration``): the text tower under
``model.language_model.`` with its config under ``text_config``; its layers are DeepSeek-V3's
as declared there (attention with q/k/v biases instead of MLA, which the declaration does not
name): a dense prefix of ``first_k_dense_replace`` layers, experts per expert on disk and shared
experts, a sigmoid router with ``e_score_correction_bias``, group-limited, renormalised per
``norm_topk_prob``."""

from dataclasses import replace

from moegrow.families import deepseek_v3
from moegrow.families.base import multimodal

TEXT = replace(
    deepseek_v3.FAMILY,
    name="glm4v_moe_text",
    model_types=(),  # no causal-LM class of its own: grown inside its wrapper
    mtp_key=None,
)

FAMILY = multimodal(
    TEXT, name="glm4v_moe", model_type="glm4v_moe", text_prefix="model.language_model."
)
