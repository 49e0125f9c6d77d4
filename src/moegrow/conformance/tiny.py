"""Tiny random instances of any model type, built from transformers' own config class.

Every size a config declares is shrunk (hidden 64, 2 layers, 4 heads / 2 KV heads, head_dim 16,
small dense / expert / shared-expert widths, 4 experts, top-2, vocabulary 128), every per-layer
list is resized with the layer count, and what one model type needs beyond that is data:
:data:`OVERRIDES`. After init every floating tensor is perturbed (seeded), so that no norm weight
is exactly 1, no bias 0, and no two experts or layers are equal: a growth that put a tensor in the
wrong place, or a router rule that counted a copy twice, changes the logits.
"""

from __future__ import annotations

import re

from moegrow.families import BY_MODEL_TYPE

#: Config keys shrunk wherever a config class declares them (distinct widths, so that a tensor
#: in the wrong slot has the wrong shape).
SIZES: dict[str, int] = {
    "vocab_size": 128,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "intermediate_size": 56,
    "moe_intermediate_size": 24,
    "expert_ffn_hidden_size": 24,
    "ffn_hidden_size": 56,
    "shared_expert_intermediate_size": 40,
    "moe_shared_expert_intermediate_size": 40,
    "shared_intermediate_size": 40,
    "kv_lora_rank": 16,
    "q_lora_rank": 12,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
    "kv_channels": 16,
    "sliding_window": 8,
    "attention_chunk_size": 8,
    "first_k_dense_replace": 1,
    "num_dense_layers": 1,
    "n_group": 2,
    "topk_group": 1,
    "moe_layer_start_index": 1,
    "num_nextn_predict_layers": 0,
    "num_mtp_layers": 0,
    "index_n_heads": 2,
    "index_head_dim": 16,
    "index_topk": 8,
}

#: Config keys holding the number of routed experts / the number each token is routed to.
EXPERT_COUNT_KEYS = (
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "moe_num_experts",
)
TOP_K_KEYS = (
    "num_experts_per_tok",
    "num_experts_per_token",
    "experts_per_token",
    "moe_topk",
    "moe_top_k",
    "moe_k",
    "top_k_experts",
)
NUM_EXPERTS = 4
TOP_K = 2
TOKEN_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
#: SIZES keys, longest first: a key ending in ``_`` + one of them is a size of that kind.
SIZES_BY_LENGTH = sorted(SIZES, key=len, reverse=True)

#: Per model type: config values on top of :data:`SIZES` (``None`` removes a key). Only what
#: that type needs to build tiny, or to exercise a feature a grower must get right.
_MLA = {"num_key_value_heads": 4, "head_dim": 8}  # MLA: kv heads == heads, rope dim == head_dim
OVERRIDES: dict[str, dict] = {
    "deepseek_v2": _MLA,
    "deepseek_v3": _MLA,
    "deepseek_v32": _MLA,
    "glm4_moe_lite": _MLA,
    "glm_moe_dsa": _MLA,
    "axk1": _MLA,
    "axk2": _MLA,
    "sarvam_mla": _MLA,
    "longcat_flash": {**_MLA, "zero_expert_num": 2},  # 256 would drown the 4 routed experts
    "dots1": {"n_shared_experts": 1},
    # DbrxAttention reads attn_config.rope_theta, which DbrxAttentionConfig does not declare,
    # and clamps by clip_qkv, which it cannot leave unset (DBRX's release value)
    "dbrx": {"attn_config": {"rope_theta": 10_000.0, "clip_qkv": 8.0}},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},  # no default: read per layer
    # a sliding-attention layer with its own heads and ranks (a per_layer_config entry)
    "dots3_note_text": {
        "layer_types": ["indexed_attention", "sliding_attention"],
        "per_layer_config": {
            1: {
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "q_lora_rank": 8,
                "kv_lora_rank": 12,
                "head_dim": 16,
                "qk_nope_head_dim": 8,
                "qk_rope_head_dim": 8,
                "v_head_dim": 8,
            }
        },
    },
    # the sparse-attention indexer's sizes have no default (needed by indexed_attention layers)
    "qwen4_exp_text": {
        "indexer_n_heads": 2,
        "indexer_kv_heads": 1,
        "indexer_head_dim": 16,
        "indexer_budget": 8,
        "indexer_compress_ratio": 4,
    },
}

#: Name suffixes of per-expert selection / router biases: perturbed more, so that they matter.
ROUTER_BIAS = re.compile(r"(e_score_correction_bias|router\.bias|expert_bias|gate\.bias)$")
#: Name suffix of hash-routing tables (token -> k experts), which init leaves all zero.
HASH_TABLE = "tid2eid"
PERTURB_STD = 0.02
ROUTER_BIAS_STD = 0.1


def tiny_config(model_type: str, *, num_layers: int | None = None, **overrides):
    """The tiny ``PretrainedConfig`` of ``model_type`` (see the module docstring).

    Nested sub-configs (``sub_configs``: DBRX's ``attn_config`` / ``ffn_config``) are shrunk by
    the same rules. Where the config class's own validation rejects a tiny value, the value is
    negotiated (:func:`_construct`) rather than the type given up.
    """
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    default = cls()
    n = num_layers or SIZES["num_hidden_layers"]
    family = BY_MODEL_TYPE.get(model_type)
    index_lists = set(family.layer_index_lists) if family is not None else set()
    kwargs = _shrunk(default, n, index_lists)
    kwargs[getattr(default, "attribute_map", {}).get("num_hidden_layers", "num_hidden_layers")] = n
    for key in getattr(cls, "sub_configs", None) or {}:
        sub = getattr(default, key, None)
        if hasattr(sub, "to_dict") and key not in kwargs:
            kwargs[key] = _shrunk(sub, n, index_lists)
    for key, value in {**OVERRIDES.get(model_type, {}), **overrides}.items():
        if value is None:
            kwargs.pop(key, None)
        elif isinstance(value, dict) and isinstance(kwargs.get(key), dict):
            kwargs[key] = {**kwargs[key], **value}  # a nested sub-config: merged
        elif isinstance(value, list) and key in default.to_dict() and key not in index_lists:
            kwargs[key] = _resize(value, n)
        else:
            kwargs[key] = value
    return _construct(cls, kwargs, default)


def _shrunk(default, n: int, index_lists: set[str]) -> dict:
    """The tiny values of every size, expert count, top-k, token id and per-layer list a config
    (or a nested sub-config) declares."""
    values = default.to_dict()
    have = set(values) | set(getattr(default, "attribute_map", {}))
    kwargs: dict = {k: v for k, v in SIZES.items() if k in have}
    for key in sorted(have - set(kwargs)):  # a prefixed size: swa_head_dim, unpadded_vocab_size
        size = next((s for s in SIZES_BY_LENGTH if key.endswith("_" + s)), None)
        if size is not None and _is_int(values.get(key)):
            kwargs[key] = SIZES[size]
    for key in EXPERT_COUNT_KEYS:
        if key in have:
            kwargs[key] = NUM_EXPERTS
    for key in TOP_K_KEYS:
        if key in have:
            kwargs[key] = TOP_K
    for key, token in TOKEN_IDS.items():
        if key in have:
            kwargs[key] = token
    old_n = values.get("num_hidden_layers") or getattr(default, "num_hidden_layers", None)
    for key, value in values.items():
        if key in kwargs or not isinstance(value, list):
            continue
        if key in index_lists:  # layer indices (Llama 4 moe_layers): those of the first n layers
            kwargs[key] = [i for i in value if isinstance(i, int) and i < n]
        elif old_n and len(value) == old_n:
            kwargs[key] = _resize(value, n)
    # under the field's own name (DBRX's d_model): a __post_init__ reading the field before the
    # aliases are applied then sees the tiny value
    aliases = getattr(default, "attribute_map", {})
    return {aliases.get(k, k): v for k, v in kwargs.items()}


def _resize(values: list, n: int) -> list:
    """A per-layer list for ``n`` layers that keeps the list's variety (every distinct value of the
    first entries that fit, in order, the last layer's value last)."""
    if n >= len(values):
        return list(values) + [values[-1]] * (n - len(values))
    return list(values[: n - 1]) + [values[-1]]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _construct(cls, kwargs: dict, default, rounds: int = 4):
    """``cls(**kwargs)``; where the class's validation rejects it with a message that names keys
    of ``kwargs`` (ZAYA: "num_experts_per_tok=1 only"; Dots 3: "num_key_value_heads must match
    num_attention_heads"), each named key, in the message's order, is tried at the class
    default, then at the value of another named key: the first change that validates, or else
    that removes this complaint (the next round deals with the next one), is kept."""
    for _ in range(rounds):
        try:
            return cls(**kwargs)
        except Exception as e:  # a foreign validator: negotiate the keys it names
            error = e
        at = {k: m.start() for k in kwargs if (m := re.search(rf"\b{re.escape(k)}\b", str(error)))}
        named = sorted(at, key=lambda k: at[k])
        progress = None
        for candidate in _alternatives(kwargs, named, default):
            try:
                return cls(**candidate)
            except Exception as e:
                if progress is None and str(e) != str(error):
                    progress = candidate
        if progress is None:
            raise error
        kwargs = progress
    return cls(**kwargs)


def _alternatives(kwargs: dict, named: list[str], default) -> list[dict]:
    """Copies of ``kwargs`` with one of the ``named`` keys at its class default, or at the value
    of another named key."""
    defaults = default.to_dict()  # (a heterogeneous config refuses some plain attribute reads)
    out = []
    for key in named:
        options = [defaults.get(key)] + [kwargs[k] for k in named if k != key]
        for value in options:
            if value is not None and value != kwargs[key]:
                out.append({**kwargs, key: value})
    return out


def build_tiny(model_type: str, *, seed: int = 0, num_layers: int | None = None, **overrides):
    """A tiny random causal LM of ``model_type``: float32, eval mode, perturbed (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, num_layers=num_layers, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    perturb(model, seed)
    model.eval()
    return model


def perturb(model, seed: int) -> None:
    """Add seeded noise to every floating tensor of the state dict (parameters and persistent
    buffers); tied tensors once; per-expert selection biases get a larger noise."""
    import torch

    gen = torch.Generator().manual_seed(10_000 + seed)
    seen: set[int] = set()
    state = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name in sorted(state):
            t = state[name]
            if name.endswith(HASH_TABLE) and not torch.is_floating_point(t):
                fill_hash_table(t, gen)
                continue
            if not torch.is_floating_point(t):
                continue
            t = t.data if isinstance(t, torch.nn.Parameter) else t
            if t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            std = ROUTER_BIAS_STD if ROUTER_BIAS.search(name) else PERTURB_STD
            t.add_((torch.randn(t.shape, generator=gen) * std).to(t.dtype))


def fill_hash_table(table, gen) -> None:
    """Give every token of a hash-routing table ``[vocab, k]`` k distinct random experts
    (of :data:`NUM_EXPERTS`), so that a table put in the wrong place changes the logits."""
    import torch

    rows, k = table.shape
    picks = torch.rand(rows, NUM_EXPERTS, generator=gen).argsort(dim=1)[:, :k]
    table.copy_(picks.to(table.dtype))
