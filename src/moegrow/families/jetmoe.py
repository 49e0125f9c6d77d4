"""JetMoE (``jetmoe``): a mixture of MLP experts and a mixture of attention experts in every
layer, both counted by ``num_local_experts`` and ``num_experts_per_tok``, both routed by top-k of
the logits then softmax over the k, each with its own router (``mlp.router.layer``,
``self_attention.experts.router.layer``). Attention experts are query / output projection pairs
(``input_linear`` ``[E, heads_kv x d, H]``, ``output_linear`` ``[E, H, heads_kv x d]``) sharing
one ``kv_proj``; each of the k chosen experts gets its own slot of query heads, so duplicated
attention experts compute the same attention output and share their original's weight, like
duplicated MLP experts. Both expert mixtures add an ``[H]`` output bias, zeroed with the output
projections in a zero-initialised layer copy. ``num_attention_heads``, which the config class
derives as ``num_key_value_heads x num_experts_per_tok``, is rescaled with top-k (a width growth
multiplies the query heads, and the attention cost, by the top-k factor)."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="jetmoe",
    model_types=("jetmoe",),
    experts=Experts(
        count_keys=("num_local_experts",),
        top_k_keys=("num_experts_per_tok",),
        per_top_k_keys=("num_attention_heads",),
        fused=(
            "mlp.input_linear.weight",
            "mlp.output_linear.weight",
            "self_attention.experts.input_linear.weight",
            "self_attention.experts.output_linear.weight",
        ),
        down=("mlp.output_linear.weight", "self_attention.experts.output_linear.weight"),
    ),
    router=Router(
        weight="mlp.router.layer.weight",
        more_weights=("self_attention.experts.router.layer.weight",),
        scoring="softmax_topk",
    ),
    residual=(
        "self_attention.experts.output_linear.weight",
        "self_attention.experts.bias",
        "mlp.output_linear.weight",
        "mlp.bias",
    ),
    required_layer=("input_layernorm.weight", "self_attention.kv_proj.weight"),
)
