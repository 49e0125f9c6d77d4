"""DeepSeek-V3 (``deepseek_v3``): as V2, with a sigmoid router, group-limited selection steered
by ``e_score_correction_bias`` (copied exactly), optional renormalisation (``norm_topk_prob``)
and multi-token-prediction layers stored after the main layers."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="deepseek_v3",
    model_types=("deepseek_v3",),
    experts=Experts(
        count_keys=("n_routed_experts", "num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
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
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    index_rules=("first_k_dense_replace",),
    mtp_key="num_nextn_predict_layers",
)
