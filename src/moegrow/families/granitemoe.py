"""GraniteMoE (``granitemoe``, ``granitemoeshared``): experts fused on disk, ``input_linear``
``[E, 2I, H]`` (gate rows first) and ``output_linear`` ``[E, H, I]``; top-k of the router logits,
then softmax over the k; the shared variant adds a dense ``shared_mlp``."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="granitemoe",
    model_types=("granitemoe", "granitemoeshared"),
    experts=Experts(
        count_keys=("num_local_experts", "num_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("block_sparse_moe.input_linear.*", "block_sparse_moe.output_linear.*"),
        down=("block_sparse_moe.output_linear.*",),
    ),
    router=Router(weight="block_sparse_moe.router.layer.weight", scoring="softmax_topk"),
    residual=(
        "self_attn.o_proj.*",
        "block_sparse_moe.output_linear.*",
        "shared_mlp.output_linear.*",
    ),
    dense_ffn=("shared_mlp.input_linear.weight", "shared_mlp.output_linear.weight"),
)
