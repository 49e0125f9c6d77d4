"""Dense -> MoE pairs as data: which MoE family takes a dense family's weights, and how.

A pair is listed only where transformers has an MoE twin whose attention, norms and
embeddings use the dense checkpoint's tensors unchanged (same names, same shapes, same
arithmetic), so that only the MLPs change. Known non-twins are listed with the reason, which
``moegrow upcycle`` prints when refusing them (ECOSYSTEM.md §2.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from moegrow.errors import GrowthError

#: The dense MLP of every supported source, layer-relative (Llama layout).
DENSE_MLP = {
    "gate": "mlp.gate_proj.weight",
    "up": "mlp.up_proj.weight",
    "down": "mlp.down_proj.weight",
}

#: Config keys whose defaults differ between a dense class and its MoE twin (ECOSYSTEM.md §2.4:
#: e.g. Llama rms_norm_eps 1e-6 / rope_theta 1e4 vs Mixtral 1e-5 / 1e6, Mistral sliding_window
#: 4096 vs Mixtral None). A key absent from the dense config.json is written out with the dense
#: class's default, so that the MoE class does not substitute its own.
DEFAULT_SENSITIVE = (
    "rope_parameters",
    "rms_norm_eps",
    "head_dim",
    "sliding_window",
    "tie_word_embeddings",
    "attention_bias",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
)


_ROPE = {"rope_theta": 10000.0, "rope_type": "default"}
_COMMON = {
    "rope_parameters": _ROPE,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False,
    "pad_token_id": None,
    "hidden_act": "silu",
    "initializer_range": 0.02,
}

#: The dense config classes' defaults of :data:`DEFAULT_SENSITIVE` (transformers 5.24; a test
#: compares them with the installed transformers). ``head_dim`` is not listed: when absent it is
#: derived, hidden_size // num_attention_heads, by the dense class and its twin alike.
DENSE_DEFAULTS: dict[str, dict[str, object]] = {
    "llama": _COMMON
    | {"attention_bias": False, "bos_token_id": 1, "eos_token_id": 2}
    | {"max_position_embeddings": 2048},
    "mistral": _COMMON
    | {"sliding_window": 4096, "bos_token_id": 1, "eos_token_id": 2}
    | {"max_position_embeddings": 131072},
    "qwen2": _COMMON
    | {"sliding_window": None, "bos_token_id": None, "eos_token_id": None}
    | {"max_position_embeddings": 32768},
    "qwen3": _COMMON
    | {"sliding_window": None, "attention_bias": False, "bos_token_id": None}
    | {"eos_token_id": None, "max_position_embeddings": 32768},
    "granite": _COMMON
    | {"attention_bias": False, "bos_token_id": 1, "eos_token_id": 2}
    | {"max_position_embeddings": 2048, "embedding_multiplier": 1.0}
    | {"residual_multiplier": 1.0, "attention_multiplier": 1.0},
    "olmo2": _COMMON
    | {"rms_norm_eps": 1e-05, "attention_bias": False, "bos_token_id": None}
    | {"eos_token_id": 50279, "pad_token_id": 1, "max_position_embeddings": 2048},
}


@dataclass(frozen=True)
class SharedExpert:
    """A target's shared expert: tensor names and the factor its output is multiplied by when
    its gate (if any) is zero-initialised."""

    gate: str
    up: str
    down: str
    width_key: str
    gate_weight: str | None = None
    """A sigmoid gate ``[1, H]`` (Qwen2-MoE): zero rows make it multiply the expert by 1/2."""
    fused_gate_up: bool = False
    """``gate`` and ``up`` are one tensor ``[2S, H]`` (gate rows first), named by ``gate``."""

    @property
    def factor(self) -> float:
        return 0.5 if self.gate_weight else 1.0


@dataclass(frozen=True)
class MoeTarget:
    """How an MoE family stores experts built from the dense MLP."""

    model_type: str
    architecture: str
    router: str
    """Router weight ``[E, H]``."""
    count_key: str
    top_k_key: str
    width_key: str
    """Config key of the routed experts' intermediate width (I / G)."""
    expert: dict[str, str] = field(default_factory=dict)
    """Per-expert tensor templates for gate, up, down (``{e}`` = expert index)."""
    fused_gate_up: str | None = None
    """All experts' gate and up in one ``[E, 2I, H]`` tensor (GraniteMoE ``input_linear``)."""
    fused_down: str | None = None
    """All experts' down-projections in one ``[E, H, I]`` tensor."""
    renormalize_key: str | None = None
    """Config switch of renormalised top-k weights: set true (exactness needs it)."""
    shared: SharedExpert | None = None
    shared_mandatory: bool = False
    """The family always has a shared expert (Qwen2-MoE): without ``--shared-expert`` it gets
    slice 0 of the dense MLP with its down-projection zeroed (contributes nothing at first)."""
    shared_model_type: str | None = None
    """Model type to write when ``--shared-expert`` is asked for (GraniteMoE -> shared)."""
    shared_architecture: str | None = None
    dense_layers_key: str | None = None
    """Config list of layers that keep the dense MLP (``mlp_only_layers``), if any."""
    set_config: dict[str, object] = field(default_factory=dict)
    """Fixed config values of the target (e.g. Qwen2 has q/k/v biases: ``qkv_bias``)."""


@dataclass(frozen=True)
class Pair:
    source_types: tuple[str, ...]
    target: MoeTarget
    requires: dict[str, object] = field(default_factory=dict)
    """Source config values the target cannot express otherwise (key: required value)."""
    carry: tuple[str, ...] = ()
    """Pair-specific keys written out with the dense default when absent."""


MIXTRAL = MoeTarget(
    model_type="mixtral",
    architecture="MixtralForCausalLM",
    router="block_sparse_moe.gate.weight",
    count_key="num_local_experts",
    top_k_key="num_experts_per_tok",
    width_key="intermediate_size",
    expert={
        "gate": "block_sparse_moe.experts.{e}.w1.weight",
        "up": "block_sparse_moe.experts.{e}.w3.weight",
        "down": "block_sparse_moe.experts.{e}.w2.weight",
    },
    set_config={"router_jitter_noise": 0.0},
)

_QWEN_EXPERT = {
    "gate": "mlp.experts.{e}.gate_proj.weight",
    "up": "mlp.experts.{e}.up_proj.weight",
    "down": "mlp.experts.{e}.down_proj.weight",
}

QWEN3_MOE = MoeTarget(
    model_type="qwen3_moe",
    architecture="Qwen3MoeForCausalLM",
    router="mlp.gate.weight",
    count_key="num_experts",
    top_k_key="num_experts_per_tok",
    width_key="moe_intermediate_size",
    expert=_QWEN_EXPERT,
    renormalize_key="norm_topk_prob",
    dense_layers_key="mlp_only_layers",
    set_config={"decoder_sparse_step": 1},
)

QWEN2_MOE = replace(
    QWEN3_MOE,
    model_type="qwen2_moe",
    architecture="Qwen2MoeForCausalLM",
    shared=SharedExpert(
        gate="mlp.shared_expert.gate_proj.weight",
        up="mlp.shared_expert.up_proj.weight",
        down="mlp.shared_expert.down_proj.weight",
        width_key="shared_expert_intermediate_size",
        gate_weight="mlp.shared_expert_gate.weight",
    ),
    shared_mandatory=True,
    set_config={"qkv_bias": True, "decoder_sparse_step": 1},
)

GRANITEMOE = MoeTarget(
    model_type="granitemoe",
    architecture="GraniteMoeForCausalLM",
    router="block_sparse_moe.router.layer.weight",
    count_key="num_local_experts",
    top_k_key="num_experts_per_tok",
    width_key="intermediate_size",
    fused_gate_up="block_sparse_moe.input_linear.weight",
    fused_down="block_sparse_moe.output_linear.weight",
    shared=SharedExpert(
        gate="shared_mlp.input_linear.weight",
        up="shared_mlp.input_linear.weight",
        down="shared_mlp.output_linear.weight",
        width_key="shared_intermediate_size",
        fused_gate_up=True,
    ),
    shared_model_type="granitemoeshared",
    shared_architecture="GraniteMoeSharedForCausalLM",
)

FLEX_OLMO = replace(
    QWEN3_MOE,
    model_type="flex_olmo",
    architecture="FlexOlmoForCausalLM",
    width_key="intermediate_size",
    dense_layers_key=None,
    set_config={},
)
PAIRS: tuple[Pair, ...] = (
    Pair(("llama",), MIXTRAL, requires={"attention_bias": False, "mlp_bias": False}),
    Pair(("mistral",), MIXTRAL),
    Pair(("qwen2",), QWEN2_MOE),
    Pair(("qwen3",), QWEN3_MOE, requires={"attention_bias": False}),
    Pair(
        ("granite",),
        GRANITEMOE,
        requires={"mlp_bias": False},
        carry=("embedding_multiplier", "residual_multiplier", "attention_multiplier"),
    ),
    Pair(("olmo2",), FLEX_OLMO),
)

#: (source, target) pairs that look alike but are not twins, and why.
NOT_TWINS: dict[tuple[str, str], str] = {
    ("olmo2", "olmoe"): "OLMo-2 normalises each sublayer's output (post_attention_layernorm and "
    "post_feedforward_layernorm after attention / MLP) while OLMoE normalises their inputs "
    "(pre-norm), so OLMoE cannot compute OLMo-2's blocks; FlexOlmo (the default target) can",
    ("phi3", "phimoe"): "PhiMoE uses LayerNorms with biases and a sparsemixer router fixed at "
    "top-2, Phi-3 RMSNorms and a fused qkv_proj / gate_up_proj; no tensor layout maps onto it",
    ("llama", "llama4_text"): "Llama 4 adds QK L2 norms, chunked attention and NoPE layers that "
    "Llama's attention does not have",
}

#: Dense model types with no MoE twin in transformers, and why.
NO_TWIN: dict[str, str] = {
    "gemma": "Gemma has no MoE twin in transformers with its attention and (1 + w) norms",
    "gemma2": "Gemma 2 has no MoE twin in transformers (its soft-capping and sandwich norms)",
    "gemma3": "Gemma 3 has no MoE twin in transformers (its sandwich norms and QK norms)",
    "phi3": "PhiMoE is not Phi-3's twin (see --target phimoe)",
}


def supported_sources() -> list[str]:
    return sorted(t for p in PAIRS for t in p.source_types)


def find_pair(source_type: object, target: str | None, *, where: str) -> Pair:
    """The pair for a dense ``model_type`` (and an explicit target, if given), or a one-line
    refusal saying why there is none."""
    if target is not None and isinstance(source_type, str) and (source_type, target) in NOT_TWINS:
        raise GrowthError(
            f"--target {target}: {source_type} -> {target} is not supported: "
            f"{NOT_TWINS[(source_type, target)]}"
        )
    for pair in PAIRS:
        if source_type in pair.source_types:
            if target is None or target in (pair.target.model_type, pair.target.shared_model_type):
                return pair
            raise GrowthError(
                f"--target {target}: {source_type} upcycles to {pair.target.model_type} only "
                f"(the MoE family with identical attention and norms); drop --target"
            )
    why = NO_TWIN.get(str(source_type), "no MoE family with identical attention and norms is known")
    raise GrowthError(
        f"{where}: model_type {source_type!r} cannot be upcycled: {why}; supported dense "
        f"sources: {', '.join(supported_sources())}"
    )
