"""Beam (``beam``): per-expert MLPs, no shared expert; DeepSeek-V3's sigmoid router
(``e_score_correction_bias`` steers selection, group-limited by ``n_group`` / ``topk_group``,
renormalised iff ``norm_topk_prob``); gated attention; sliding or full attention and dense or
MoE per layer (``layer_types``, ``mlp_layer_types``); post-norms on both branches and a
depth-scaled residual add whose weights depend on the layer index: after the i-th add the
stream is (embedding + every branch output so far) / sqrt(i). A zero-initialised copy adds
nothing to that sum and only changes the 1/sqrt(i) factor of the layers after it, which every
branch, the router and the final norm read through an RMSNorm: depth growth is exact up to
those norms' eps (a relative effect of about eps / the stream's mean square)."""

from moegrow.families.base import Family, Router
from moegrow.families.layouts import per_expert_mlp

FAMILY = Family(
    name="beam",
    model_types=("beam",),
    experts=per_expert_mlp(),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=True,
        group_keys=("n_group", "topk_group"),
    ),
    residual=("self_attn.o_proj.*", "mlp.experts.{e}.down_proj.*", "mlp.down_proj.*"),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    unlisted_kinds=("layer_types", "mlp_layer_types"),
)
