"""Inkling (``inkling_text``): sliding / full attention layers (``layer_types``) with short
convolutions on keys, values and both sublayer outputs, dense or MoE MLPs (``mlp_layer_types``);
experts fused on disk (``mlp.experts.gate_up_proj`` ``[E, 2I, H]``, ``down_proj``
``[E, H, I]``). The router chooses by sigmoid + ``e_score_correction_bias`` (copied exactly) and
normalises the chosen experts' sigmoids together with those of the ``n_shared_experts`` shared
experts, whose rows follow the routed ones in ``mlp.gate.weight``: width growth duplicates the
shared experts too (``mlp.shared_experts.*``, ``[S, ...]``), so the normaliser doubles with the
chosen set and every expert keeps its weight. The output short convolutions have no bias, so a
copy whose out-projections are zero adds nothing."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="inkling_text",
    model_types=("inkling_text",),
    experts=Experts(
        count_keys=("n_routed_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.gate_up_proj*", "mlp.experts.down_proj*"),
        down=("mlp.experts.down_proj*",),
        extra_count_keys=("n_shared_experts",),
        extra=("mlp.shared_experts.*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize=True,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.down_proj*",
        "mlp.shared_experts.down_proj*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    layer_index_lists=("local_layer_ids",),
    ignored_prefixes=("model.mtp.",),
)
