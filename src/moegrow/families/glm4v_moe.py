"""GLM-4.5V (``glm4v_moe``, ``Glm4vMoeForConditionalGeneration``): the text tower under
``model.language_model.`` with its config under ``text_config``; GLM-4.5-style layers: attention
with q/k/v biases, a dense prefix of ``first_k_dense_replace`` layers, experts per expert on
disk and shared experts, DeepSeek-V3's sigmoid router with ``e_score_correction_bias``,
group-limited, renormalised per ``norm_topk_prob``."""

from moegrow.families.base import Experts, Family, Router, multimodal

TEXT = Family(
    name="glm4v_moe_text",
    model_types=(),  # no causal-LM class of its own: grown inside its wrapper
    experts=Experts(
        count_keys=("n_routed_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=True,
        group_keys=("n_group", "topk_group"),
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    index_rules=("first_k_dense_replace",),
)

FAMILY = multimodal(
    TEXT, name="glm4v_moe", model_type="glm4v_moe", text_prefix="model.language_model."
)
