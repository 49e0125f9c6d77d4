"""MiniMax-M2 (``minimax_m2``): Mixtral's per-expert ``w1/w3/w2`` layout, a sigmoid router whose
selection is steered by ``block_sparse_moe.e_score_correction_bias`` (copied exactly), always
renormalised over the chosen experts."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="minimax_m2",
    model_types=("minimax_m2",),
    experts=Experts(
        count_keys=("num_local_experts",),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("block_sparse_moe.experts.{e}.*",),
        down=("block_sparse_moe.experts.{e}.w2.*",),
    ),
    router=Router(
        weight="block_sparse_moe.gate.weight",
        balance_biases=("block_sparse_moe.e_score_correction_bias",),
        scoring="sigmoid",
        renormalize=True,
    ),
    residual=("self_attn.o_proj.*", "block_sparse_moe.experts.{e}.w2.*"),
)
