"""AFMoE (``afmoe``, Arcee Trinity): per-expert MLPs and shared experts, a dense prefix of
``num_dense_layers``, sandwich norms, a sigmoid router whose selection is steered by
``mlp.expert_bias`` (copied exactly), renormalised, times ``route_scale``."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="afmoe",
    model_types=("afmoe",),
    experts=Experts(
        count_keys=("num_experts",),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    ),
    router=Router(
        weight="mlp.router.gate.weight",
        balance_biases=("mlp.expert_bias",),
        scoring="sigmoid",
        renormalize=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    index_rules=("num_dense_layers",),
)
