"""Nemotron-H (``nemotron_h``): one mixer per layer, Mamba-2 (``M``), MoE (``E``), attention
(``*``) or relu² MLP (``-``), listed in ``layers_block_type`` (or, in release configs, the
``hybrid_override_pattern`` string; the layer count is their length). Tensors live under
``backbone.``; experts per expert (up/down, no gate) and a shared expert, optionally through a
latent projection; DeepSeek-V3's sigmoid router with ``e_score_correction_bias``, group-limited,
renormalised per ``norm_topk_prob``. Multi-token-prediction weights live under ``mtp.`` and are
copied unchanged."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="nemotron_h",
    model_types=("nemotron_h",),
    experts=Experts(
        count_keys=("n_routed_experts", "num_local_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mixer.experts.{e}.*",),
        down=("mixer.experts.{e}.down_proj.*",),
    ),
    router=Router(
        weight="mixer.gate.weight",
        balance_biases=("mixer.gate.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize="norm_topk_prob",
        renormalize_default=True,
        group_keys=("n_group", "topk_group"),
    ),
    residual=(
        "mixer.out_proj.*",
        "mixer.o_proj.*",
        "mixer.down_proj.*",
        "mixer.experts.{e}.down_proj.*",
        "mixer.shared_experts.down_proj.*",
        "mixer.fc2_latent_proj.*",
    ),
    layer_prefix="backbone.layers.",
    required_global=("backbone.embeddings.weight", "backbone.norm_f.weight"),
    required_layer=("norm.weight",),
    embedding="backbone.embeddings.weight",
    per_layer_lists=("layers_block_type", "layer_types"),
    index_rules=("hybrid_override_pattern",),
    ignored_prefixes=("mtp.",),
    dense_ffn=("mixer.up_proj.weight", "mixer.down_proj.weight"),
)
