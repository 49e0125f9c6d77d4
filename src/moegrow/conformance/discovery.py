"""Which causal-LM model types of the installed transformers are Mixture-of-Experts.

Nothing here is a hand list: the model types are transformers' own causal-LM Auto mapping, a
config that names no expert anywhere (nested sub-configs included) is dense, and every other one
is built tiny (:mod:`moegrow.conformance.tiny`) and counts as MoE when its parameters include
experts. A model type whose tiny instance cannot be built is reported with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A parameter of an expert (``mlp.experts.3.w1``, fused ``experts.gate_up_proj``, ...).
EXPERT_PARAM = re.compile(r"(^|\.)(experts?|local_experts)(\.|$)")
#: Parameters of a non-attention sequence mixer (Mamba, linear attention, short convolutions):
#: model types holding any are hybrid stacks.
HYBRID_PARAM = re.compile(r"(^|\.)(mamba|mixer|linear_attn|short_conv|conv1d|A_log|dt_bias)(\.|$)")


@dataclass(frozen=True)
class Discovered:
    model_type: str
    status: str
    """``moe``, ``dense``, or ``unbuildable`` (the tiny instance could not be built)."""
    hybrid: bool = False
    detail: str = ""


def causal_lm_model_types() -> list[str]:
    """Every model type transformers' ``AutoModelForCausalLM`` knows, in its own order."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return list(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def mentions_experts(model_type: str) -> bool:
    """Whether the default config of ``model_type`` has a key naming experts at any depth."""
    from transformers import CONFIG_MAPPING

    try:
        config = CONFIG_MAPPING[model_type]().to_dict()
    except Exception:  # a config class that cannot even be defaulted: let the build decide
        return True
    return _any_key(config, re.compile(r"expert"))


def is_wrapper(model_type: str) -> bool:
    """Whether ``model_type`` wraps a text tower (a ``text_config``) that transformers also lists
    as a model type of its own (``llama4`` -> ``llama4_text``): it is checked there."""
    from transformers import CONFIG_MAPPING

    sub = getattr(CONFIG_MAPPING[model_type], "sub_configs", None) or {}
    return "text_config" in sub


def _any_key(d: dict, pattern: re.Pattern[str]) -> bool:
    for key, value in d.items():
        if pattern.search(str(key)):
            return True
        if isinstance(value, dict) and _any_key(value, pattern):
            return True
    return False


def classify(model) -> tuple[bool, bool]:
    """``(is_moe, is_hybrid)`` of a built model, from its parameter names."""
    names = [n for n, _ in model.named_parameters()]
    return (
        any(EXPERT_PARAM.search(n) for n in names),
        any(HYBRID_PARAM.search(n) for n in names),
    )


def discover(model_types: list[str] | None = None) -> list[Discovered]:
    """Classify ``model_types`` (default: every causal-LM model type) as MoE / dense /
    unbuildable, building a tiny instance of each one whose config mentions experts."""
    from moegrow.conformance.tiny import build_tiny

    out = []
    for t in model_types if model_types is not None else causal_lm_model_types():
        if is_wrapper(t):
            out.append(Discovered(t, "dense", detail="wraps a text model type listed on its own"))
            continue
        if not mentions_experts(t):
            out.append(Discovered(t, "dense", detail="config names no experts"))
            continue
        try:
            model = build_tiny(t)
        except Exception as e:  # any failure of a foreign constructor is reported, not raised
            out.append(Discovered(t, "unbuildable", detail=one_line(e)))
            continue
        moe, hybrid = classify(model)
        out.append(Discovered(t, "moe" if moe else "dense", hybrid=hybrid))
    return out


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(e).__name__}: {text}"
