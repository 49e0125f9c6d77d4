"""GraniteMoeHybrid (``granitemoehybrid``, Granite 4): Mamba-2 or attention per layer
(``layer_types``), each followed by GraniteMoE's fused experts and a shared MLP; every residual
branch is scaled by ``residual_multiplier`` (a zero branch stays zero)."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="granitemoehybrid",
    model_types=("granitemoehybrid",),
    experts=Experts(
        count_keys=("num_local_experts", "num_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("block_sparse_moe.input_linear.*", "block_sparse_moe.output_linear.*"),
        down=("block_sparse_moe.output_linear.*",),
    ),
    router=Router(weight="block_sparse_moe.router.layer.weight", scoring="softmax_topk"),
    residual=(
        "self_attn.o_proj.*",
        "mamba.out_proj.*",
        "block_sparse_moe.output_linear.*",
        "shared_mlp.output_linear.*",
    ),
    required_layer=("input_layernorm.weight", "post_attention_layernorm.weight"),
    dense_ffn=("shared_mlp.input_linear.weight", "shared_mlp.output_linear.weight"),
)
