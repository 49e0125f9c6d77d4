"""Laguna (``laguna``): per-expert MLPs and a shared expert (``mlp.shared_expert``) in MoE
layers; a sigmoid router (optionally tanh-softcapped) whose selection is steered by
``mlp.experts.e_score_correction_bias`` (copied exactly), always renormalised; dense or MoE per
layer (``mlp_layer_types``), sliding or full attention per layer (``layer_types``) and a
per-layer head count (``num_attention_heads_per_layer``)."""

from moegrow.families.base import Family, Router
from moegrow.families.layouts import per_expert_mlp

FAMILY = Family(
    name="laguna",
    model_types=("laguna",),
    experts=per_expert_mlp(),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.experts.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_expert.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types", "num_attention_heads_per_layer"),
    unlisted_kinds=("mlp_layer_types",),
)
