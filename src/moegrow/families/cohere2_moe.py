"""Cohere2-MoE (``cohere2_moe``): per-expert MLPs under ``mlp.experts.{e}``, an optional shared
expert summed or averaged with them; the router takes the top-k logits, then scores them by
softmax over the k or, with ``expert_selection_fn="sigmoid"``, by sigmoid renormalised iff
``norm_topk_prob``; dense/sparse ``mlp_layer_types`` and sliding/full ``layer_types`` per layer,
derived from ``first_k_dense_replace`` and two sliding-window periods when config.json has
neither (made explicit before depth growth)."""

from moegrow.families.base import Family, Router
from moegrow.families.layouts import per_expert_mlp

FAMILY = Family(
    name="cohere2_moe",
    model_types=("cohere2_moe",),
    experts=per_expert_mlp(("num_experts", "num_local_experts")),
    router=Router(
        weight="mlp.gate.weight",
        scoring="softmax_topk",
        scoring_key="expert_selection_fn",
        scoring_values=(("softmax", "softmax_topk"),),
        renormalize="norm_topk_prob",
        renormalize_default=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    index_rules=("mlp_layer_types", "dense_prefix_windows"),
)
