"""Dots 3 Note text (``dots3_note_text``): MLA attention with a per-head sigmoid output gate,
indexed (sparse) attention or sliding-window attention per ``layer_types``, the sliding layers'
own head counts and ranks in ``per_layer_config`` (keyed by layer index, remapped with the
layers); dense or MoE feed-forward per ``mlp_layer_types``. DeepSeek-V3's router (sigmoid
scores, selection steered by ``e_score_correction_bias``, group-limited, renormalised iff
``norm_topk_prob``, times ``routed_scaling_factor``), experts per expert on disk (or fused, as
transformers holds them in memory), shared experts. Multi-token-prediction modules
(``model.mtp.``) are not loaded by transformers and copied unchanged."""

from dataclasses import replace

from moegrow.families import deepseek_v3

_EXPERTS = deepseek_v3.FAMILY.experts
assert _EXPERTS is not None

FAMILY = replace(
    deepseek_v3.FAMILY,
    name="dots3_note_text",
    model_types=("dots3_note_text",),
    experts=replace(
        _EXPERTS,
        fused=("mlp.experts.gate_up_proj*", "mlp.experts.down_proj*"),  # the in-memory layout
        down=(*_EXPERTS.down, "mlp.experts.down_proj*"),
    ),
    residual=(*deepseek_v3.FAMILY.residual, "mlp.experts.down_proj*"),
    index_rules=("per_layer_config",),
    mtp_key=None,
    ignored_prefixes=("model.mtp.",),
)
