"""MiniMax-M3's text model (``minimax_m3_vl_text``): pre-norm layers with full or sparse
(lightning-indexer) attention per ``layer_types`` and a dense MLP or an MoE per
``mlp_layer_types``; experts fused on disk (``mlp.experts.gate_up_proj`` ``[E, 2I, H]``,
``down_proj`` ``[E, H, I]``) beside a shared expert; MiniMax-M2's router (sigmoid scores,
selection steered by ``e_score_correction_bias``, copied exactly, always renormalised)."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="minimax_m3_vl_text",
    model_types=("minimax_m3_vl_text",),
    experts=Experts(
        count_keys=("num_local_experts",),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.gate_up_proj*", "mlp.experts.down_proj*"),
        down=("mlp.experts.down_proj*",),
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
        "mlp.shared_experts.down_proj.*",
        "mlp.down_proj.*",
    ),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    ignored_prefixes=("model.mtp.", "mtp."),
    dense_ffn=("mlp.gate_up_proj.weight", "mlp.down_proj.weight"),
)
