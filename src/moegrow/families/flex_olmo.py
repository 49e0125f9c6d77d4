"""FlexOlmo (``flex_olmo``): OLMo-2's attention and sublayer-output norms (no input norm) with
OLMoE-style per-expert MLPs and a softmax router (``norm_topk_prob``)."""

from dataclasses import replace

from moegrow.families import olmoe

FAMILY = replace(
    olmoe.FAMILY,
    name="flex_olmo",
    model_types=("flex_olmo",),
    required_layer=("post_attention_layernorm.weight", "self_attn.o_proj.weight"),
)
