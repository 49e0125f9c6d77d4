"""Kolibri-1 (``kolibri1``): per-expert Qwen MLPs and a shared expert; sigmoid scores of the
top-k chosen by logits plus a selection-only bias (``moe.router.expert_bias`` on disk, copied
exactly), renormalised iff ``norm_topk_prob``; sandwich norms after attention and MLP (a zero
branch stays zero through them); sliding/full ``layer_types``, every 5th layer full when absent."""

from moegrow.families.base import Family, Router
from moegrow.families.layouts import per_expert_mlp

FAMILY = Family(
    name="kolibri1",
    model_types=("kolibri1",),
    experts=per_expert_mlp(("num_local_experts", "num_experts")),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("moe.router.expert_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=False,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.{e}.down_proj.*",
        "mlp.shared_experts.down_proj.*",
    ),
    layer_types_cycle=("sliding_attention",) * 4 + ("full_attention",),
)
