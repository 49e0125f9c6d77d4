"""Sarvam-30B (``sarvam_moe``): GLM-4.5's model (DeepSeek-V3's sigmoid router with a selection
bias, group-limited, renormalised iff ``norm_topk_prob``, shared experts, a dense prefix of
``first_k_dense_replace`` layers) stored under the original checkpoint's names, which
``save_pretrained`` writes back: ``model.word_embeddings``, a fused ``attention.query_key_value``,
``attention.dense`` as the attention output projection and ``mlp.gate.expert_bias`` as the
selection bias."""

from dataclasses import replace

from moegrow.families import deepseek_v3

DEEPSEEK_V3_ROUTER = deepseek_v3.FAMILY.router
assert DEEPSEEK_V3_ROUTER is not None

FAMILY = replace(
    deepseek_v3.FAMILY,
    name="sarvam_moe",
    model_types=("sarvam_moe",),
    router=replace(DEEPSEEK_V3_ROUTER, balance_biases=("mlp.gate.expert_bias",)),
    residual=(
        "attention.dense.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    required_global=("model.word_embeddings.weight", "model.norm.weight"),
    required_layer=("input_layernorm.weight", "attention.dense.weight"),
    embedding="model.word_embeddings.weight",
)
