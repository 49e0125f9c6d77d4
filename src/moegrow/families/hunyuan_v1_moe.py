"""Hunyuan-A13B (``hunyuan_v1_moe``): per-expert MLPs, a dense ``shared_mlp`` in every layer, a
router at ``mlp.gate.wg`` scoring softmax over all experts, top-k, renormalised."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="hunyuan_v1_moe",
    model_types=("hunyuan_v1_moe",),
    experts=Experts(
        count_keys=("num_experts",),
        top_k_keys=("moe_topk",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    ),
    router=Router(weight="mlp.gate.wg.weight", scoring="softmax", renormalize=True),
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*", "mlp.shared_mlp.down_proj.*"),
)
