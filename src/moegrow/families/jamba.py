"""Jamba (``jamba``): Mamba and attention layers, MoE every ``expert_layer_period`` layers (dense
MLP in the others). The per-layer kinds exist only as periods (``attn_layer_period/offset``,
``expert_layer_period/offset``), which depth growth solves for anew or refuses. Experts are
stored per expert on disk (transformers fuses them at load time; the fused in-memory layout is
grown too); softmax over all experts,
top-k, not renormalised."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="jamba",
    model_types=("jamba",),
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("feed_forward.experts.{e}.*",),
        fused=("feed_forward.experts.gate_up_proj*", "feed_forward.experts.down_proj*"),
        down=("feed_forward.experts.{e}.down_proj.*", "feed_forward.experts.down_proj*"),
    ),
    router=Router(weight="feed_forward.router.weight", scoring="softmax", renormalize=False),
    residual=(
        "self_attn.o_proj.*",
        "mamba.out_proj.*",
        "feed_forward.experts.{e}.down_proj.*",
        "feed_forward.experts.down_proj*",
        "feed_forward.down_proj.*",
    ),
    required_global=("model.embed_tokens.weight", "model.final_layernorm.weight"),
    required_layer=("input_layernorm.weight", "pre_ff_layernorm.weight"),
    per_layer_lists=(),
    index_rules=("jamba_periods",),
    dense_ffn=(
        "feed_forward.gate_proj.weight",
        "feed_forward.up_proj.weight",
        "feed_forward.down_proj.weight",
    ),
)
