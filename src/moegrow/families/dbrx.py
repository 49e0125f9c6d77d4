"""DBRX (``dbrx``): blocks under ``transformer.blocks.``, the expert and router settings nested in
``ffn_config``. On disk (as in memory; transformers has no conversion for it) each of ``w1``
(gate), ``v1`` (up) and ``w2`` (down, used transposed) concatenates the experts along axis 0:
``[E * I, H]`` with I = ``ffn_config.ffn_hidden_size``. The router is a softmax over all
experts, top-k, the chosen weights divided by their p-norm (p =
``ffn_config.moe_normalize_expert_weights``, 1 by default; null: not renormalised)."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="dbrx",
    model_types=("dbrx",),
    experts=Experts(
        count_keys=("ffn_config.moe_num_experts",),
        top_k_keys=("ffn_config.moe_top_k",),
        fused=("ffn.experts.mlp.w1", "ffn.experts.mlp.v1", "ffn.experts.mlp.w2"),
        down=("ffn.experts.mlp.w2",),
        fused_rows_key="ffn_config.ffn_hidden_size",
    ),
    router=Router(
        weight="ffn.router.layer.weight",
        scoring="softmax",
        norm_p_key="ffn_config.moe_normalize_expert_weights",
    ),
    residual=("norm_attn_norm.attn.out_proj.*", "ffn.experts.mlp.w2"),
    layer_prefix="transformer.blocks.",
    num_layers_key="n_layers",
    required_global=("transformer.wte.weight", "transformer.norm_f.weight"),
    required_layer=("norm_attn_norm.norm_1.weight", "norm_attn_norm.attn.out_proj.weight"),
    embedding="transformer.wte.weight",
    dense_ffn=(),
)
