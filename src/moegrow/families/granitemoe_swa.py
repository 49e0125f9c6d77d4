"""GraniteMoE-SWA (``granitemoe_swa``): GraniteMoE-shared's router, experts and scalings, stored
in transformers' own layout (fused ``block_sparse_moe.experts.gate_up_proj`` ``[E, 2I, H]`` and
``down_proj`` ``[E, H, I]``, router ``block_sparse_moe.router.weight``), with per-head attention
sinks, sliding/full ``layer_types`` (every 4th layer from layer 0 full when absent) and a
per-layer RoPE base ``layer_rope_theta``."""

from dataclasses import replace

from moegrow.families import granitemoe

GRANITEMOE_ROUTER = granitemoe.FAMILY.router
assert GRANITEMOE_ROUTER is not None and granitemoe.FAMILY.experts is not None

FAMILY = replace(
    granitemoe.FAMILY,
    name="granitemoe_swa",
    model_types=("granitemoe_swa",),
    experts=replace(
        granitemoe.FAMILY.experts,
        fused=("block_sparse_moe.experts.gate_up_proj", "block_sparse_moe.experts.down_proj"),
        down=("block_sparse_moe.experts.down_proj",),
    ),
    router=replace(GRANITEMOE_ROUTER, weight="block_sparse_moe.router.weight"),
    residual=(
        "self_attn.o_proj.*",
        "block_sparse_moe.experts.down_proj",
        "shared_mlp.output_linear.*",
    ),
    per_layer_lists=("layer_types", "layer_rope_theta"),
    layer_types_cycle=("full_attention",) + ("sliding_attention",) * 3,
)
