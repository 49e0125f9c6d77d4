"""LFM2-MoE (``lfm2_moe``): gated short convolution (``conv``) or attention per ``layer_types``;
the first ``num_dense_layers`` layers have a dense MLP, the rest MoE. Experts per expert on disk
(``w1``/``w3``/``w2``; or fused, as transformers holds them in memory); sigmoid scores,
selection steered by ``expert_bias``, renormalised per ``norm_topk_prob``."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="lfm2_moe",
    model_types=("lfm2_moe",),
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("feed_forward.experts.{e}.*",),
        fused=("feed_forward.experts.gate_up_proj*", "feed_forward.experts.down_proj*"),
        down=("feed_forward.experts.{e}.w2.*", "feed_forward.experts.down_proj*"),
    ),
    router=Router(
        weight="feed_forward.gate.weight",
        balance_biases=("feed_forward.expert_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=True,
    ),
    residual=(
        "conv.out_proj.*",
        "self_attn.out_proj.*",
        "feed_forward.experts.{e}.w2.*",
        "feed_forward.experts.down_proj*",
        "feed_forward.w2.*",
    ),
    required_global=("model.embed_tokens.weight", "model.embedding_norm.weight"),
    required_layer=("operator_norm.weight", "ffn_norm.weight"),
    index_rules=("num_dense_layers",),
    dense_ffn=("feed_forward.w1.weight", "feed_forward.w3.weight", "feed_forward.w2.weight"),
)
