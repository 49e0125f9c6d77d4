"""Aria's text model (``aria_text``): every layer MoE, experts fused on disk as
``mlp.experts.fc1.weight`` ``[E, H, 2I]`` and ``fc2.weight`` ``[E, I, H]`` (input-major), a
dense shared-expert MLP beside them; the router takes the top-k logits, then softmax over the k."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="aria_text",
    model_types=("aria_text",),
    experts=Experts(
        count_keys=("moe_num_experts",),
        top_k_keys=("moe_topk",),
        fused=("mlp.experts.fc1.weight", "mlp.experts.fc2.weight"),
        down=("mlp.experts.fc2.weight",),
    ),
    router=Router(weight="mlp.router.weight", scoring="softmax_topk"),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.fc2.weight",
        "mlp.shared_experts.down_proj.*",
    ),
)
