"""Qwen3-MoE (``qwen3_moe``): per-expert Qwen MLPs with per-head QK norms, no shared expert."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="qwen3_moe",
    model_types=("qwen3_moe",),
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        scoring="softmax",
        renormalize="norm_topk_prob",
        renormalize_default=False,
    ),
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*", "mlp.down_proj.*"),
    layer_index_lists=("mlp_only_layers",),
    index_rules=("decoder_sparse_step", "max_window_layers"),
)
