"""OLMoE (``olmoe``): per-expert MLPs, QK norms over the whole projection, every layer MoE."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="olmoe",
    model_types=("olmoe",),
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
)
