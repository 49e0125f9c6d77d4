"""Qwen3-MoE (``qwen3_moe``): per-expert Qwen MLPs with per-head QK norms, no shared expert."""

from moegrow.families.base import Family
from moegrow.families.layouts import SOFTMAX_GATE, per_expert_mlp

FAMILY = Family(
    name="qwen3_moe",
    model_types=("qwen3_moe",),
    experts=per_expert_mlp(),
    router=SOFTMAX_GATE,
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*", "mlp.down_proj.*"),
    layer_index_lists=("mlp_only_layers",),
    index_rules=("decoder_sparse_step", "max_window_layers"),
)
