"""Inkling 2 (``inkling2_text``, ``inkling2_loop_text``): sliding / full attention layers whose
inputs are attention-weighted mixtures of earlier block states ("attention residuals"), under
``model.llm.``; experts fused on disk (``w13_weight`` ``[E, 2I, H]``, ``w2_weight``
``[E, H, I]``); sigmoid scores, selection steered by ``gate.bias``, always renormalised. Width
growth is exact. Depth growth is refused: the attention-residual queries of every layer are
stored outside the layers (``model.llm.attn_res.*_queries.{i}``) and the block boundaries follow
the layer index, so no copy of a layer is an identity."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="inkling2",
    model_types=("inkling2_text", "inkling2_loop_text"),
    experts=Experts(
        count_keys=("n_routed_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.w13_weight*", "mlp.experts.w2_weight*"),
        down=("mlp.experts.w2_weight*",),
    ),
    router=Router(
        weight="mlp.gate.weight",
        balance_biases=("mlp.gate.bias",),
        scoring="sigmoid",
        renormalize=True,
    ),
    residual=("attn.wo_ud.*", "mlp.experts.w2_weight*"),
    layer_prefix="model.llm.layers.",
    required_global=("model.llm.embed.weight", "model.llm.norm.weight"),
    required_layer=("mlp_norm.weight", "attn.wo_ud.weight"),
    embedding="model.llm.embed.weight",
    depth_refused=(
        "each layer's attention-residual queries are stored outside the layers "
        "(model.llm.attn_res.*_queries.{i}) and block boundaries follow the layer index, so a "
        "copied layer cannot be built, let alone be an identity; only width growth is supported"
    ),
)
