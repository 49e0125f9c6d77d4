"""LaRA-mini (``lara_mini``): gated-delta-net linear attention, sliding-window and full attention
per ``layer_types`` (absent: the config class repeats a period-5 cycle, made explicit before
depth growth); experts fused on disk (``gate_up_proj`` ``[E, 2I, H]``, ``down_proj``
``[E, H, I]``) with an ungated shared expert; softmax, top-k, renormalised per
``norm_topk_prob``."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="lara_mini",
    model_types=("lara_mini",),
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.*",),
        down=("mlp.experts.down_proj*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        scoring="softmax",
        renormalize="norm_topk_prob",
        renormalize_default=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "linear_attn.out_proj.*",
        "mlp.experts.down_proj*",
        "mlp.shared_expert.down_proj.*",
    ),
    required_layer=("input_layernorm.weight", "post_attention_layernorm.weight"),
    layer_types_cycle=(
        "linear_attention",
        "sliding_attention",
        "linear_attention",
        "full_attention",
        "sliding_attention",
    ),
)
