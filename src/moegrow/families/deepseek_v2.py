"""DeepSeek-V2 (``deepseek_v2``): MLA attention, shared experts, a dense prefix of
``first_k_dense_replace`` layers, softmax routing (optionally group-limited), no renormalisation."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="deepseek_v2",
    model_types=("deepseek_v2",),
    experts=Experts(
        count_keys=("n_routed_experts", "num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        scoring="softmax",
        renormalize=False,
        group_keys=("n_group", "topk_group"),
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    index_rules=("first_k_dense_replace",),
)
