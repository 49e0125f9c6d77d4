"""LongCat-Flash (``longcat_flash``): each of the ``num_layers`` layers holds two MLA attention
sublayers, two dense MLPs (``mlps.0``/``mlps.1``) and one MoE whose output is added as a shortcut
after the second sublayer. The router (``mlp.router.classifier``) takes a softmax over the
``n_routed_experts`` experts and ``zero_expert_num`` weightless identity ("zero") experts, chooses
by softmax + ``e_score_correction_bias`` (scaled by 1/M with the probabilities) and does not
renormalise. Width growth duplicates routed and zero experts alike (each copy scores p/M), so it
is exact. A zero-initialised depth copy still adds its zero experts' weight times the input, so
``--zero-init`` is refused where ``zero_expert_num`` > 0."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="longcat_flash",
    model_types=("longcat_flash",),
    experts=Experts(
        count_keys=("n_routed_experts", "num_local_experts"),
        top_k_keys=("moe_topk", "num_experts_per_tok"),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
        extra_count_keys=("zero_expert_num",),
        extra_identity=True,
    ),
    router=Router(
        weight="mlp.router.classifier.weight",
        biases=("mlp.router.classifier.bias",),
        balance_biases=("mlp.router.e_score_correction_bias",),
        scoring="softmax",
        renormalize=False,
    ),
    residual=(
        "self_attn.0.o_proj.*",
        "self_attn.1.o_proj.*",
        "mlps.0.down_proj.*",
        "mlps.1.down_proj.*",
        "mlp.experts.{e}.down_proj.*",
    ),
    num_layers_key="num_layers",
    required_layer=("input_layernorm.0.weight", "self_attn.0.o_proj.weight"),
    ignored_prefixes=("model.mtp.",),
    dense_ffn=("mlps.0.gate_proj.weight", "mlps.0.up_proj.weight", "mlps.0.down_proj.weight"),
)
