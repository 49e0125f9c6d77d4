"""Ernie 4.5 MoE (``ernie4_5_moe``): the Qwen-MoE on-disk layout (per-expert MLPs, shared experts,
dense MLPs outside the MoE range), a softmax router that chooses by ``softmax + moe_statics``
(a selection-only bias stored as one row ``[1, E]``, scaled by 1/M with the probabilities it is
added to) and always renormalises. MoE layers are ``moe_layer_start_index`` ..
``moe_layer_end_index`` every ``moe_layer_interval``, solved for anew by depth growth."""

from dataclasses import replace

from moegrow.families.base import Family
from moegrow.families.layouts import SOFTMAX_GATE, per_expert_mlp

FAMILY = Family(
    name="ernie4_5_moe",
    model_types=("ernie4_5_moe",),
    experts=replace(
        per_expert_mlp(("moe_num_experts", "num_experts")),
        top_k_keys=("moe_k", "num_experts_per_tok"),
    ),
    router=replace(
        SOFTMAX_GATE,
        renormalize=True,
        balance_biases=("mlp.moe_statics.e_score_correction_bias",),
        balance_bias_row=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    index_rules=("moe_layer_range",),
)
