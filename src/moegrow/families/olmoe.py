"""OLMoE (``olmoe``): per-expert MLPs, QK norms over the whole projection, every layer MoE."""

from moegrow.families.base import Family
from moegrow.families.layouts import SOFTMAX_GATE, per_expert_mlp

FAMILY = Family(
    name="olmoe",
    model_types=("olmoe",),
    experts=per_expert_mlp(),
    router=SOFTMAX_GATE,
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*"),
)
