"""DeepSeek-V2 (``deepseek_v2``): MLA attention, shared experts, a dense prefix of
``first_k_dense_replace`` layers, softmax routing (optionally group-limited), no renormalisation."""

from moegrow.families.base import Family, Router
from moegrow.families.layouts import DEEPSEEK_COUNT_KEYS, per_expert_mlp

FAMILY = Family(
    name="deepseek_v2",
    model_types=("deepseek_v2",),
    experts=per_expert_mlp(DEEPSEEK_COUNT_KEYS),
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
