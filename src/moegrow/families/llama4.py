"""Llama 4 text (``llama4_text``): experts fused and transposed on disk (``gate_up_proj``
``[E, H, 2I]``, ``down_proj`` ``[E, I, H]``), a shared expert, a sigmoid router that scales the
chosen experts' *input* (no renormalisation), dense layers where ``moe_layers`` says so."""

from moegrow.families.base import Experts, Family, Router, multimodal

FAMILY = Family(
    name="llama4_text",
    model_types=("llama4_text",),
    experts=Experts(
        count_keys=("num_local_experts",),
        top_k_keys=("num_experts_per_tok",),
        fused=("feed_forward.experts.*",),
        down=("feed_forward.experts.down_proj*",),
    ),
    router=Router(weight="feed_forward.router.weight", scoring="sigmoid", renormalize=False),
    residual=(
        "self_attn.o_proj.*",
        "feed_forward.experts.down_proj*",
        "feed_forward.shared_expert.down_proj.*",
        "feed_forward.down_proj.*",
    ),
    per_layer_lists=("layer_types", "no_rope_layers"),
    layer_index_lists=("moe_layers",),
    index_rules=("interleave_moe_layer_step",),
    dense_ffn=(
        "feed_forward.gate_proj.weight",
        "feed_forward.up_proj.weight",
        "feed_forward.down_proj.weight",
    ),
)

#: ``Llama4ForConditionalGeneration`` (``llama4``), the layout of the released checkpoints: the
#: text tower under ``language_model.``, its config under ``text_config``; vision tensors are
#: copied unchanged.
WRAPPED = multimodal(
    FAMILY, name="llama4", model_type="llama4", text_prefix="language_model.model."
)
