"""DeepSeek-V3 (``deepseek_v3``): as V2, with a sigmoid router, group-limited selection steered
by ``e_score_correction_bias`` (copied exactly), optional renormalisation (``norm_topk_prob``)
and multi-token-prediction layers stored after the main layers."""

from dataclasses import replace

from moegrow.families import deepseek_v2
from moegrow.families.base import Router

FAMILY = replace(
    deepseek_v2.FAMILY,
    name="deepseek_v3",
    model_types=("deepseek_v3",),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=True,
        group_keys=("n_group", "topk_group"),
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    mtp_key="num_nextn_predict_layers",
)
