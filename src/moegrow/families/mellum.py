"""Mellum (``mellum``): per-expert Qwen MLPs under ``mlp.experts.{e}``, softmax over all experts
then top-k, renormalised iff ``norm_topk_prob``; dense/sparse ``mlp_layer_types`` and
sliding/full ``layer_types`` per layer; multi-token-prediction layers under ``mtp.``, which
transformers does not load."""

from moegrow.families.base import Family
from moegrow.families.layouts import SOFTMAX_GATE, per_expert_mlp

FAMILY = Family(
    name="mellum",
    model_types=("mellum",),
    experts=per_expert_mlp(("num_local_experts", "num_experts")),
    router=SOFTMAX_GATE,
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*", "mlp.down_proj.*"),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    ignored_prefixes=("mtp.",),
)
