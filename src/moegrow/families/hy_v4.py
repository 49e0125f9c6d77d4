"""Hy4 (``hy_v4``): MLA attention with a sparse-attention indexer (``indexer_types``: own or
shared top-k per layer), attention sinks and an output gate; hyper-connections around every
branch; experts fused on disk (``mlp.experts.gate_up_proj`` / ``down_proj``, expert axis 0) and
shared experts; GLM-4.7-Flash's sigmoid router (``e_score_correction_bias`` steers selection,
group-limited, renormalised iff ``norm_topk_prob``); dense or MoE per layer
(``mlp_layer_types``); multi-token-prediction layers stored under ``model.mtp_layers.``."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="hy_v4",
    model_types=("hy_v4",),
    experts=Experts(
        count_keys=("n_routed_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.gate_up_proj*", "mlp.experts.down_proj*"),
        down=("mlp.experts.down_proj*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=True,
        group_keys=("n_group", "topk_group"),
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.down_proj*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types", "indexer_types"),
    unlisted_kinds=("mlp_layer_types",),
    shared_indexer=("indexer_types", "self_attn.indexer."),
    ignored_prefixes=("model.mtp_layers.",),
    dense_ffn=("mlp.linear_gate.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"),
)
