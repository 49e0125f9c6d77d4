"""Declaration pieces that several families share, so each family file states only what is its
own: the per-expert MLP under ``mlp.experts.{e}`` (Qwen, OLMoE, DeepSeek layouts) and the
softmax router ``mlp.gate`` renormalised when ``norm_topk_prob`` says so."""

from moegrow.families.base import Experts, Router

QWEN_COUNT_KEYS = ("num_experts", "num_local_experts")
DEEPSEEK_COUNT_KEYS = ("n_routed_experts", "num_experts", "num_local_experts")


def per_expert_mlp(count_keys: tuple[str, ...] = QWEN_COUNT_KEYS) -> Experts:
    """Experts stored one by one as ``mlp.experts.{e}.{gate,up,down}_proj``."""
    return Experts(
        count_keys=count_keys,
        top_k_keys=("num_experts_per_tok",),
        per_expert=("mlp.experts.{e}.*",),
        down=("mlp.experts.{e}.down_proj.*",),
    )


#: ``mlp.gate``: softmax over all experts, top-k, renormalised iff ``norm_topk_prob`` (absent:
#: not renormalised, transformers' default for these configs).
SOFTMAX_GATE = Router(
    weight="mlp.gate.weight",
    scoring="softmax",
    renormalize="norm_topk_prob",
    renormalize_default=False,
)
