"""FlexOlmo (``flex_olmo``): OLMoE's layout and router (softmax over all experts, top-k,
renormalised iff ``norm_topk_prob``), with
Olmo 2's norms after each sublayer instead of before."""

from dataclasses import replace

from moegrow.families import olmoe

FAMILY = replace(
    olmoe.FAMILY,
    name="flex_olmo",
    model_types=("flex_olmo",),
    # Olmo 2 layers: x + norm(f(x)), no input norm; a zeroed f still adds nothing
    required_layer=("post_attention_layernorm.weight", "self_attn.o_proj.weight"),
)
