"""Hy3 (``hy_v3``): per-expert MLPs and a dense ``mlp.shared_mlp`` in MoE layers; a sigmoid
router at ``mlp.router.gate`` whose selection is steered by ``mlp.expert_bias`` (copied
exactly), always renormalised, times ``router_scaling_factor``; dense or MoE per layer
(``mlp_layer_types``). The release stores a multi-token-prediction layer after the main ones
(``model.layers.80``, which transformers does not load): re-indexed after depth growth where
config.json counts it in ``num_nextn_predict_layers``."""

from moegrow.families.base import Family, Router
from moegrow.families.layouts import per_expert_mlp

FAMILY = Family(
    name="hy_v3",
    model_types=("hy_v3",),
    experts=per_expert_mlp(),
    router=Router(
        weight="mlp.router.gate.weight",
        balance_biases=("mlp.expert_bias",),
        scoring="sigmoid",
        renormalize=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_mlp.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    unlisted_kinds=("mlp_layer_types",),
    mtp_key="num_nextn_predict_layers",
)
