"""Parameter counts and training FLOPs per token, from tensor shapes and config.json alone.

Formula (one place, used everywhere): training FLOPs per token = 6 * N_matmul + attention, after
Kaplan et al. 2020 (arXiv 2001.08361, Table 1: 2N forward, x3 with backward) and PaLM
(Chowdhery et al. 2022, arXiv 2204.02311, App. B: attention adds 6 * L * T * (d_qk + d_v) * h,
i.e. 12 * L * H * Q * T when query/key and value head widths are equal). N_matmul counts the
*activated* parameters that multiply activations: every non-expert weight, plus k/E of each MoE
layer's routed-expert weights, minus the input-embedding lookup (plus the LM head, which is the
embedding matrix again when tied). The Chinchilla point on activated parameters is
``F_c = 6 * N_a * (20 * N_a)`` (PAPER.md; Hoffmann et al. 2022, 20 tokens per parameter).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from moegrow.families.base import Family, matches
from moegrow.families.kinds import attention_layers

#: Sequence length assumed for the attention term when none is given (the paper's).
DEFAULT_SEQ_LEN = 4096


def param_count(name: str, dtype: str, shape: tuple[int, ...]) -> int:
    """Parameters stored in one tensor: MXFP4 ``_blocks`` hold two 4-bit values per byte;
    quantisation scales are not parameters (nor are load-balancing biases, see below)."""
    n = 1
    for d in shape:
        n *= d
    if name.endswith(("_scale_inv", "_scales", ".weight_scale")):
        return 0
    if name.endswith("_blocks") and dtype == "U8":
        return 2 * n
    return n


@dataclass(frozen=True)
class ParamStats:
    total: int
    active: int
    embedding: int
    tied: bool
    num_layers: int
    attention_width: int
    """Per layer: heads x (query/key head width + value head width)."""
    attention_layers: int
    """Layers with softmax attention over the sequence (all but the recurrent, convolutional
    and mixer-less layers of a hybrid stack)."""

    def flops_per_token(self, seq_len: int = DEFAULT_SEQ_LEN) -> float:
        matmul = self.active - self.embedding + (self.embedding if self.tied else 0)
        return 6.0 * matmul + 6.0 * self.attention_layers * seq_len * self.attention_width

    @property
    def chinchilla_flops(self) -> float:
        """F_c = 6 * N_a * (20 * N_a)."""
        return 6.0 * self.active * 20.0 * self.active

    def to_json(self, seq_len: int = DEFAULT_SEQ_LEN) -> dict:
        return {
            "total_params": self.total,
            "active_params": self.active,
            "embedding_params": self.embedding,
            "attention_layers": self.attention_layers,
            "flops_per_token": self.flops_per_token(seq_len),
            "flops_per_token_seq_len": seq_len,
            "chinchilla_flops": self.chinchilla_flops,
        }


class _Header(Protocol):
    """A tensor header: name, safetensors dtype and shape (read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]: ...


def tensor_stats(tensors: Iterable[_Header], family: Family, config: dict) -> ParamStats:
    """:func:`param_stats` of tensor headers (a checkpoint's ``TensorInfo`` s or a plan's output
    tensors)."""
    return param_stats(((t.name, t.dtype, t.shape) for t in tensors), family, config)


def param_stats(
    tensors: Iterable[tuple[str, str, tuple[int, ...]]], family: Family, config: dict
) -> ParamStats:
    """Count parameters of a checkpoint given ``(name, dtype, shape)`` of every tensor."""
    total = embedding = 0
    active = 0.0
    # share of a routed expert's parameters active per token: k / E
    routed_share = 1.0
    n_layers = family.layer_count(config)
    n_layers = n_layers if isinstance(n_layers, int) and n_layers > 0 else 0
    n_attention = attention_layers(config, family, n_layers)
    if family.experts is not None:
        num_experts, top_k = family.expert_counts(config)
        routed_share = top_k / num_experts
    config = family.text_of(config)
    for name, dtype, shape in tensors:
        m = family.layer_regex.match(name)
        role = family.classify(m.group("rest"))[0] if m else "plain"
        if role in ("balance_bias", "hash_table"):  # buffers steering selection, not trained
            continue
        if m and matches(family.buffers, m.group("rest")):
            continue
        n = param_count(name, dtype, shape)
        total += n
        if name == family.embedding:
            embedding = n
        active += n * routed_share if role in ("expert", "fused") else n
    return ParamStats(
        total=total,
        active=round(active),
        embedding=embedding,
        tied=bool(config.get("tie_word_embeddings", False)),
        num_layers=n_layers,
        attention_layers=n_attention,
        attention_width=_attention_width(config),
    )


def _attention_width(config: dict) -> int:
    heads = config.get("num_attention_heads") or 0
    hidden = config.get("hidden_size") or 0
    # JetMoE spells head_dim kv_channels (its config's attribute_map)
    head_dim = (
        config.get("head_dim") or config.get("kv_channels") or (hidden // heads if heads else 0)
    )
    if "qk_nope_head_dim" in config:  # DeepSeek multi-head latent attention
        qk = (config.get("qk_nope_head_dim") or 0) + (config.get("qk_rope_head_dim") or 0)
        v = config.get("v_head_dim") or head_dim
        return heads * (qk + v)
    return heads * 2 * head_dim
