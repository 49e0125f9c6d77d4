"""Qwen3-VL-MoE (``qwen3_vl_moe``, ``Qwen3VLMoeForConditionalGeneration``): the text tower under
``model.language_model.`` with its config under ``text_config``; experts fused on disk with the
expert axis first (``gate_up_proj``, ``down_proj``; transformers transposes the released
``[E, H, 2I]`` layout at load time, either is grown as it is); softmax, top-k, renormalised;
dense layers per ``mlp_only_layers`` / ``decoder_sparse_step``. The vision tower adds its
deepstack features after the first ``len(deepstack_visual_indexes)`` text layers by index, so
depth growth keeps images exact only with ``--keep-first`` that many layers."""

from dataclasses import replace

from moegrow.families.base import Experts, Family, Router, multimodal

TEXT = Family(
    name="qwen3_vl_moe_text",
    model_types=(),  # no causal-LM class of its own: grown inside its wrapper
    experts=Experts(
        count_keys=("num_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.*",),
        down=("mlp.experts.down_proj*",),
    ),
    router=Router(weight="mlp.gate.weight", scoring="softmax", renormalize=True),
    residual=("self_attn.o_proj.*", "mlp.experts.down_proj*", "mlp.down_proj.*"),
    layer_index_lists=("mlp_only_layers",),
    index_rules=("decoder_sparse_step",),
)

FAMILY = replace(
    multimodal(
        TEXT, name="qwen3_vl_moe", model_type="qwen3_vl_moe", text_prefix="model.language_model."
    ),
    injected_layers=("vision_config", "deepstack_visual_indexes"),
)
