"""Mixtral (``mixtral``): per-expert ``w1`` (gate), ``w3`` (up), ``w2`` (down); softmax router
over all experts, top-k, renormalised."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="mixtral",
    model_types=("mixtral",),
    experts=Experts(
        count_keys=("num_local_experts", "num_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("block_sparse_moe.experts.{e}.*",),
        down=("block_sparse_moe.experts.{e}.w2.*",),
    ),
    router=Router(weight="block_sparse_moe.gate.weight", scoring="softmax", renormalize=True),
    residual=("self_attn.o_proj.*", "block_sparse_moe.experts.{e}.w2.*"),
)
