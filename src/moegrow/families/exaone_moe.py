"""EXAONE MoE (``exaone_moe``): DeepSeek-V3's router with its selection bias at
``mlp.e_score_correction_bias``; sliding/full ``layer_types`` and dense/sparse
``mlp_layer_types`` per layer."""

from dataclasses import replace

from moegrow.families import deepseek_v3

DEEPSEEK_V3_ROUTER = deepseek_v3.FAMILY.router
assert DEEPSEEK_V3_ROUTER is not None

FAMILY = replace(
    deepseek_v3.FAMILY,
    name="exaone_moe",
    model_types=("exaone_moe",),
    router=replace(DEEPSEEK_V3_ROUTER, balance_biases=("mlp.e_score_correction_bias",)),
)
