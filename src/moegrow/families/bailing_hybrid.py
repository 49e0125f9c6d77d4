"""Bailing hybrid (``bailing_hybrid``, Ling 3): Kimi delta attention or MLA with a head-wise
output gate per layer (``layer_types``, else every ``layer_group_size``-th layer full), dense or
MoE per layer (``mlp_layer_types``, else ``first_k_dense_replace``); the attention output
projection is ``attention.dense``. Experts per expert on disk and shared experts; sigmoid router
whose selection is steered by ``expert_bias``, group-limited, renormalised per
``moe_renormalize``; multi-token-prediction layers stored after the main layers."""

from moegrow.families.base import Experts, Family, LayerPeriod, Router

FAMILY = Family(
    name="bailing_hybrid",
    model_types=("bailing_hybrid",),
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_token", "num_experts_per_tok"),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.expert_bias",),
        scoring="sigmoid",
        renormalize="moe_renormalize",
        renormalize_default=True,
        group_keys=("num_expert_group", "topk_group"),
    ),
    residual=(
        "attention.dense.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    required_global=("model.word_embeddings.weight", "model.norm.weight"),
    required_layer=("input_layernorm.weight", "attention.dense.weight"),
    embedding="model.word_embeddings.weight",
    per_layer_lists=("layer_types", "mlp_layer_types"),
    index_rules=("mlp_layer_types",),
    layer_types_period=LayerPeriod(
        "layer_group_size", "linear_attention", "full_attention", default=6
    ),
    mtp_key="num_nextn_predict_layers",
)
