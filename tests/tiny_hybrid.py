"""Tiny configs of hybrid stacks and multimodal wrappers for ``tiny_models.make_tiny``.

Hybrid stacks alternate their layer kinds (Mamba / linear attention / short convolution /
sliding / full attention, dense / MoE) so that every kind meets every other in 4 layers;
wrappers get a tiny vision tower and token ids inside the tiny vocabulary.
"""

from __future__ import annotations

from tiny_models import (
    DENSE_FFN,
    EXPERT_FFN,
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    NUM_EXPERTS,
    SHARED_FFN,
    TOP_K,
    VOCAB,
)

#: Multimodal wrappers: family -> (text family, tiny vision config, wrapper config, class).
WRAPPERS: dict[str, tuple[str, dict, dict, str]] = {
    "qwen3_5_moe": (
        "qwen3_5_moe_text",
        dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=64),
        {},
        "Qwen3_5MoeForConditionalGeneration",
    ),
    "llama4": (
        "llama4_text",
        dict(
            num_hidden_layers=1,
            hidden_size=32,
            intermediate_size=32,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
            vision_output_dim=32,
            projector_input_dim=32,
            projector_output_dim=64,
        ),
        {},
        "Llama4ForConditionalGeneration",
    ),
    "qwen3_vl_moe": (  # deepstack features are added after text layers 0 and 1
        "qwen3_vl_moe_text",
        dict(
            depth=2,
            hidden_size=32,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=64,
            deepstack_visual_indexes=[0, 1],
            patch_size=4,
            num_position_embeddings=16,
        ),
        dict(image_token_id=5, video_token_id=6, vision_start_token_id=7, vision_end_token_id=8),
        "Qwen3VLMoeForConditionalGeneration",
    ),
    "glm4v_moe": (
        "glm4v_moe_text",
        dict(
            depth=1,
            hidden_size=32,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=64,
            patch_size=4,
            image_size=16,
        ),
        dict(image_token_id=5, video_token_id=6, image_start_token_id=7, image_end_token_id=8),
        "Glm4vMoeForConditionalGeneration",
    ),
}


def _alternate(n: int, first: str, second: str) -> list[str]:
    return [first if i % 2 == 0 else second for i in range(n)]


def hybrid_config(family: str, n: int) -> dict:
    """Hybrid stacks: layer kinds alternate so that every kind meets every other in 4 layers."""
    moe = dict(num_experts_per_tok=TOP_K, moe_intermediate_size=EXPERT_FFN)
    linear = dict(  # gated delta net (Qwen3-Next, Qwen3.5-MoE)
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
    )
    mla_moe = dict(  # multi-head latent attention, group-limited routing (Kimi, Bailing)
        moe,
        num_key_value_heads=HEADS,
        kv_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=16,
        num_local_experts=NUM_EXPERTS,
        intermediate_size=DENSE_FFN,
        n_group=2,
        topk_group=1,
    )
    attn_linear = _alternate(n, "linear_attention", "full_attention")
    if family == "jamba":  # layers 1, 3 attention; layers 0, 2 MoE
        return dict(
            num_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=EXPERT_FFN,
            attn_layer_period=2,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=0,
            mamba_d_state=8,
            mamba_proj_bias=True,
        )
    if family == "nemotron_h":
        kinds = ["linear_attention", "moe", "full_attention", "mlp"]
        return dict(
            moe,
            layers_block_type=[kinds[i % 4] for i in range(n)],
            n_routed_experts=NUM_EXPERTS,
            intermediate_size=DENSE_FFN,
            moe_shared_expert_intermediate_size=SHARED_FFN,
            moe_latent_size=32,
            mamba_num_heads=8,
            mamba_head_dim=8,
            ssm_state_size=8,
            n_groups=2,
            chunk_size=8,
        )
    if family == "granitemoehybrid":
        return dict(
            num_local_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=EXPERT_FFN,
            shared_intermediate_size=SHARED_FFN,
            layer_types=attn_linear,
            position_embedding_type="rope",
            mamba_n_heads=8,
            mamba_d_head=16,
            mamba_d_state=8,
            mamba_chunk_size=8,
            residual_multiplier=0.22,
            embedding_multiplier=12.0,
            logits_scaling=6.0,
            attention_multiplier=0.0625,
        )
    if family in ("qwen3_next", "qwen3_5_moe_text"):
        d = dict(
            moe,
            **linear,
            num_experts=NUM_EXPERTS,
            shared_expert_intermediate_size=SHARED_FFN,
            layer_types=attn_linear,
        )
        if family == "qwen3_next":
            d.update(intermediate_size=DENSE_FFN, mlp_only_layers=[2] if n > 2 else [])
        return d
    if family == "kimi_linear":
        return dict(
            mla_moe,
            linear_head_dim=8,
            linear_num_heads=4,
            layer_types=attn_linear,
            mlp_layer_types=["dense"] + ["sparse"] * (n - 1),
        )
    if family == "bailing_hybrid":
        return dict(
            mla_moe,
            first_k_dense_replace=1,
            layer_group_size=2,
            num_mtp_layers=0,
        )
    if family == "lfm2_moe":
        return dict(
            moe,
            num_experts=NUM_EXPERTS,
            intermediate_size=DENSE_FFN,
            num_dense_layers=1,
            layer_types=_alternate(n, "conv", "full_attention"),
        )
    if family == "lara_mini":  # layer_types from the config class's cycle: linear, sliding, full
        return dict(
            moe,
            **linear,
            num_experts=NUM_EXPERTS,
            shared_expert_intermediate_size=SHARED_FFN,
            sliding_window=4,
        )
    if family == "inkling2_text":  # sliding + full attention, attention residuals in blocks of 2
        return dict(
            unpadded_vocab_size=VOCAB,
            n_routed_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            moe_intermediate_size=EXPERT_FFN,
            swa_num_attention_heads=HEADS,
            swa_num_key_value_heads=KV_HEADS,
            swa_head_dim=HEAD_DIM,
            sliding_window_size=4,
            d_rel=4,
            rel_extent=8,
            n_layers_per_attn_res_block=2,
            layer_types=_alternate(n, "hybrid_sliding", "hybrid"),
        )
    if family == "minimax":
        return dict(
            num_local_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=EXPERT_FFN,
            layer_types=_alternate(n, "full_attention", "linear_attention"),
            block_size=4,
        )
    if family == "glm4v_moe_text":  # dense layer 0, sigmoid group-limited router, qkv biases
        return dict(
            n_routed_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=DENSE_FFN,
            moe_intermediate_size=EXPERT_FFN,
            first_k_dense_replace=1 if n > 1 else 0,
            n_group=2,
            topk_group=1,
            routed_scaling_factor=2.5,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1e4,
                "mrope_section": [1, 1, 2],
                "partial_rotary_factor": 0.5,
            },
        )
    if family == "qwen3_vl_moe_text":  # fused experts, layer 1 dense, multimodal RoPE
        return dict(
            num_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=DENSE_FFN,
            moe_intermediate_size=EXPERT_FFN,
            mlp_only_layers=[1] if n > 1 else [],
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 2, 4]},
        )
    raise KeyError(family)
