"""moegrow's own ``moegrow_moe`` (:mod:`moegrow.modeling.variants`): the Qwen3-MoE on-disk layout
(per-expert
tensors, as transformers' registered conversion writes them), a router whose scoring the config
chooses (``router_scoring``: softmax, or the paper's sigmoid with ``e_score_correction_bias``)
and pre- or post-norm layers (``norm_position``)."""

from dataclasses import replace

from moegrow.families.base import Family
from moegrow.families.layouts import SOFTMAX_GATE, per_expert_mlp

FAMILY = Family(
    name="moegrow_moe",
    model_types=("moegrow_moe",),
    experts=per_expert_mlp(),
    router=replace(
        SOFTMAX_GATE,
        balance_biases=("mlp.gate.e_score_correction_bias",),
        scoring_key="router_scoring",
    ),
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*", "mlp.down_proj.*"),
    layer_index_lists=("mlp_only_layers",),
    index_rules=("decoder_sparse_step", "max_window_layers"),
    post_norm_key=("norm_position", "post"),
)
