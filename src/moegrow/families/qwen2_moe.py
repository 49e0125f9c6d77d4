"""Qwen2-MoE (``qwen2_moe``): per-expert Qwen MLPs, a sigmoid-gated shared expert (left as it is
by width growth), dense layers listed in ``mlp_only_layers`` or implied by
``decoder_sparse_step``."""

from moegrow.families.base import Family
from moegrow.families.layouts import SOFTMAX_GATE, per_expert_mlp

FAMILY = Family(
    name="qwen2_moe",
    model_types=("qwen2_moe",),
    experts=per_expert_mlp(),
    router=SOFTMAX_GATE,
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_expert.down_proj.*",
        "mlp.down_proj.*",
    ),
    layer_index_lists=("mlp_only_layers",),
    index_rules=("decoder_sparse_step", "max_window_layers"),
)
