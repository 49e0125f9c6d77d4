"""``moegrow_moe``: Qwen3-MoE with the paper's sigmoid router and an optional post-norm layer.

The paper's models (PAPER.md) are Qwen3-MoE-shaped (pre-norm RMSNorm, QK-norm, GQA, RoPE,
SwiGLU experts, every layer MoE) but route with a *sigmoid* router: experts are chosen by
``sigmoid(logits) + e_score_correction_bias`` (an aux-loss-free balancing bias, as in
DeepSeek-V3) and weighted by their sigmoid scores renormalised to sum to 1. transformers has no
such model, so this module adds one, built from the Qwen3-MoE modules, with two config fields:

- ``router_scoring``: ``"softmax"`` (Qwen3-MoE's router, unchanged) or ``"sigmoid"``;
- ``norm_position``: ``"pre"`` (Qwen3-MoE's layer) or ``"post"``
  (``h = norm1(x + attn(x)); out = norm2(h + moe(h))``, same parameter names).

:func:`register` registers ``moegrow_moe`` with ``AutoConfig`` / ``AutoModelForCausalLM``
and registers Qwen3-MoE's checkpoint conversion for it, so ``save_pretrained`` writes the
per-expert on-disk layout of ``qwen3_moe`` (``mlp.experts.{e}.{gate,up,down}_proj.weight``) and
``from_pretrained`` fuses it back. Registration is idempotent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, AutoModelForCausalLM, initialization
from transformers.conversion_mapping import (
    USER_REGISTERED_MAPPINGS,
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import (
    Qwen3MoeDecoderLayer,
    Qwen3MoeForCausalLM,
    Qwen3MoeModel,
    Qwen3MoePreTrainedModel,
    Qwen3MoeRMSNorm,
    Qwen3MoeRotaryEmbedding,
    Qwen3MoeSparseMoeBlock,
    Qwen3MoeTopKRouter,
)

from moegrow.modeling.presets import NORM_POSITIONS, ROUTER_SCORINGS

MODEL_TYPE = "moegrow_moe"


@strict
class MoegrowMoeConfig(Qwen3MoeConfig):
    """Qwen3-MoE configuration plus the router scoring and the position of the layer norms."""

    model_type = MODEL_TYPE

    router_scoring: str = "softmax"
    """``"softmax"``: softmax over all experts, top-k of the probabilities (Qwen3-MoE).
    ``"sigmoid"``: top-k of ``sigmoid(logits) + e_score_correction_bias``; the chosen experts
    are weighted by their sigmoid scores, renormalised to sum to 1 when ``norm_topk_prob``."""
    norm_position: str = "pre"
    """``"pre"``: ``x + attn(norm1(x))`` then ``h + moe(norm2(h))`` (Qwen3-MoE).
    ``"post"``: ``h = norm1(x + attn(x))`` then ``norm2(h + moe(h))``."""

    def __post_init__(self, **kwargs):
        if self.router_scoring not in ROUTER_SCORINGS:
            raise ValueError(
                f"router_scoring must be one of {ROUTER_SCORINGS}, got {self.router_scoring!r}"
            )
        if self.norm_position not in NORM_POSITIONS:
            raise ValueError(
                f"norm_position must be one of {NORM_POSITIONS}, got {self.norm_position!r}"
            )
        super().__post_init__(**kwargs)


class MoegrowMoeTopKRouter(Qwen3MoeTopKRouter):
    """Qwen3-MoE's router, or (``router_scoring="sigmoid"``) the paper's sigmoid router.

    A subclass, so transformers still records its raw logits as ``router_logits`` (the
    load-balancing loss applies its softmax to them: a global balance loss for either scoring).
    """

    def __init__(self, config: MoegrowMoeConfig):
        super().__init__(config)
        self.scoring = config.router_scoring
        if self.scoring == "sigmoid":
            # Steers selection only, never the weights; updated by the trainer, not by gradients.
            self.e_score_correction_bias = torch.nn.Buffer(
                torch.zeros(self.num_experts, dtype=torch.float32)
            )

    def forward(self, hidden_states: torch.Tensor):
        if self.scoring == "softmax":
            return super().forward(hidden_states)
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        router_logits = F.linear(hidden_states, self.weight)
        scores = router_logits.float().sigmoid()
        _, indices = torch.topk(scores + self.e_score_correction_bias, self.top_k, dim=-1)
        weights = scores.gather(-1, indices)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return router_logits, weights.to(router_logits.dtype), indices


class MoegrowMoeDecoderLayer(Qwen3MoeDecoderLayer):
    """Qwen3-MoE's decoder layer with :class:`MoegrowMoeTopKRouter` and a pre- or post-norm
    residual; the parameter names are Qwen3-MoE's either way."""

    def __init__(self, config: MoegrowMoeConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        if isinstance(self.mlp, Qwen3MoeSparseMoeBlock):
            self.mlp.gate = MoegrowMoeTopKRouter(config)
        self.post_norm = config.norm_position == "post"

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        if not self.post_norm:
            return super().forward(hidden_states, **kwargs)
        attn_out, _ = self.self_attn(hidden_states=hidden_states, **kwargs)
        hidden_states = self.input_layernorm(hidden_states + attn_out)
        return self.post_attention_layernorm(hidden_states + self.mlp(hidden_states))


class MoegrowMoePreTrainedModel(Qwen3MoePreTrainedModel):
    """Weight init and loading rules of the ``moegrow_moe`` models."""

    config_class = MoegrowMoeConfig  # explicit: the annotation is a string under __future__
    _no_split_modules = ["MoegrowMoeDecoderLayer"]
    # like DeepSeek-V3: the balancing bias accumulates tiny updates, which bf16 would lose
    _keep_in_fp32_modules_strict = ["e_score_correction_bias"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MoegrowMoeTopKRouter) and module.scoring == "sigmoid":
            initialization.zeros_(module.e_score_correction_bias)


class MoegrowMoeModel(MoegrowMoePreTrainedModel, Qwen3MoeModel):
    """The decoder stack (Qwen3-MoE's forward) of :class:`MoegrowMoeDecoderLayer` layers."""

    def __init__(self, config: MoegrowMoeConfig):
        # Qwen3MoeModel.__init__ would build (and allocate) Qwen3-MoE layers we would discard.
        super(Qwen3MoeModel, self).__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = torch.nn.Embedding(
            config.vocab_size, config.hidden_size, self.padding_idx
        )
        self.layers = torch.nn.ModuleList(
            [MoegrowMoeDecoderLayer(config, i) for i in range(config.num_hidden_layers)]
        )
        self.norm = Qwen3MoeRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen3MoeRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()


class MoegrowMoeForCausalLM(MoegrowMoePreTrainedModel, Qwen3MoeForCausalLM):
    """Causal LM head on :class:`MoegrowMoeModel` (Qwen3-MoE's forward, aux loss included)."""

    def __init__(self, config: MoegrowMoeConfig):
        # Qwen3MoeForCausalLM.__init__ would build a Qwen3MoeModel we would discard.
        super(Qwen3MoeForCausalLM, self).__init__(config)
        self.model = MoegrowMoeModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.router_aux_loss_coef = config.router_aux_loss_coef
        self.num_experts = config.num_experts
        self.num_experts_per_tok = config.num_experts_per_tok
        self.post_init()


def register() -> None:
    """Register ``moegrow_moe`` with transformers' Auto classes and checkpoint conversions
    (idempotent). Every entry point that loads or builds a model calls it; importing this module
    changes nothing."""
    AutoConfig.register(MODEL_TYPE, MoegrowMoeConfig, exist_ok=True)
    AutoModelForCausalLM.register(MoegrowMoeConfig, MoegrowMoeForCausalLM, exist_ok=True)
    if MODEL_TYPE not in USER_REGISTERED_MAPPINGS:
        # Without it transformers treats the model as custom code and saves the fused in-memory
        # experts; with it, save/load use Qwen3-MoE's per-expert hub layout.
        register_checkpoint_conversion_mapping(
            MODEL_TYPE, get_checkpoint_conversion_mapping("qwen3_moe")
        )


__all__ = [
    "MODEL_TYPE",
    "NORM_POSITIONS",
    "ROUTER_SCORINGS",
    "MoegrowMoeConfig",
    "MoegrowMoeDecoderLayer",
    "MoegrowMoeForCausalLM",
    "MoegrowMoeModel",
    "MoegrowMoePreTrainedModel",
    "MoegrowMoeTopKRouter",
]
