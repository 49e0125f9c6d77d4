"""FlexOlmo (``flex_olmo``): OLMo-2's attention and sublayer-output norms (no input norm) with
OLMoE-style per-expert MLPs and a softmax router (``norm_topk_prob``)."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="flex_olmo",
    model_types=("flex_olmo",),
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
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*"),
    required_layer=("post_attention_layernorm.weight", "self_attn.o_proj.weight"),
)
