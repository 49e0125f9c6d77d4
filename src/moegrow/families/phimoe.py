"""PhiMoE (``phimoe``): Mixtral's tensor layout with LayerNorms and attention biases, routed by
``sparsemixer``, which is hard-wired to top-2: width growth cannot keep it exact and is refused."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="phimoe",
    model_types=("phimoe",),
    experts=Experts(
        count_keys=("num_local_experts", "num_experts"),
        top_k_keys=("num_experts_per_tok",),
        per_expert=("block_sparse_moe.experts.{e}.*",),
        down=("block_sparse_moe.experts.{e}.w2.*",),
    ),
    router=Router(weight="block_sparse_moe.gate.weight", scoring="sparsemixer"),
    residual=("self_attn.o_proj.*", "block_sparse_moe.experts.{e}.w2.*"),
)
