"""gpt-oss (``gpt_oss``): experts fused and transposed on disk (``gate_up_proj`` ``[E, H, 2I]``
with gate/up interleaved, ``down_proj`` ``[E, I, H]``, biases; or MXFP4 ``_blocks``/``_scales``,
also expert-major), a router with a bias, top-k of the logits then softmax over the k."""

from moegrow.families.base import Experts, Family, Router

FAMILY = Family(
    name="gpt_oss",
    model_types=("gpt_oss",),
    experts=Experts(
        count_keys=("num_local_experts", "num_experts"),
        top_k_keys=("num_experts_per_tok", "experts_per_token"),
        fused=("mlp.experts.*",),
        down=("mlp.experts.down_proj*",),
    ),
    router=Router(weight="mlp.router.weight", biases=("mlp.router.bias",), scoring="softmax_topk"),
    residual=("self_attn.o_proj.*", "mlp.experts.down_proj*"),
)
