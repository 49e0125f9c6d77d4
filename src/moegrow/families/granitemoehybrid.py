"""GraniteMoeHybrid (``granitemoehybrid``, Granite 4): Mamba-2 or attention per layer
(``layer_types``), each followed by GraniteMoE's fused experts, router and shared MLP; every
residual branch is scaled by ``residual_multiplier`` (a zero branch stays zero)."""

from dataclasses import replace

from moegrow.families import granitemoe

FAMILY = replace(
    granitemoe.FAMILY,
    name="granitemoehybrid",
    model_types=("granitemoehybrid",),
    residual=(*granitemoe.FAMILY.residual, "mamba.out_proj.*"),
    required_layer=("input_layernorm.weight", "post_attention_layernorm.weight"),
)
