"""Every main layer's kind, read from config.json the way transformers derives it.

A kind is a tuple of what a config says about one layer: its entry in every per-layer list
(``layer_types``, ``mlp_layer_types``, ``layers_block_type``, ``no_rope_layers``) and in a
``per_layer_config`` (Dots 3's sliding-attention layers), whether a
layer-index list names it (``mlp_only_layers``, ``moe_layers``), and what a period, a pattern or
an index threshold implies for it (Jamba's periods, ``hybrid_override_pattern``,
``decoder_sparse_step``, ``first_k_dense_replace``, ``num_dense_layers``, ...). Layers of one
kind are built alike by transformers, so they carry the same tensors; depth growth must give
output layer j the kind of its source layer (checked by
:func:`moegrow.growth.hybrid_rules.check_depth_kinds`).
"""

from __future__ import annotations

from moegrow.errors import GrowthError
from moegrow.families.base import Family

Kind = tuple[tuple[str, object], ...]
"""``(field, value)`` pairs, sorted by field."""

JAMBA_PERIODS = (
    ("attn_layer_period", "attn_layer_offset"),
    ("expert_layer_period", "expert_layer_offset"),
)
#: Ernie 4.5's MoE layer range: layer i is MoE iff ``(i + 1) % interval == 0`` and
#: ``start <= i <= end`` (``end`` -1: the last layer); ``(key, default)`` as its config class has.
MOE_RANGE = (
    ("moe_layer_start_index", 1),
    ("moe_layer_end_index", -1),
    ("moe_layer_interval", 1),
)
#: Mixer kinds without softmax attention over the sequence (recurrent, convolutional, or none).
NO_ATTENTION = frozenset({"linear_attention", "mamba", "conv", "moe", "mlp"})
#: Nemotron-H's pattern characters, as its config class reads them.
PATTERN = {"M": "linear_attention", "E": "moe", "*": "full_attention", "-": "mlp"}


def layer_kinds(config: dict, family: Family, n: int) -> list[Kind]:
    """The kind of each of the ``n`` main layers described by ``config`` (the whole config.json;
    a wrapper's ``text_config`` is read). A kind that one config gives as an explicit list and
    another derives from a period comes out the same."""
    cfg = family.text_of(config)
    rules = family.index_rules
    cols: dict[str, list[object]] = {}

    for key in family.per_layer_lists:
        values = cfg.get(key)
        if isinstance(values, list) and len(values) >= n:
            cols[key] = values[:n]
    pattern = cfg.get("hybrid_override_pattern")
    if "hybrid_override_pattern" in rules and isinstance(pattern, str) and not cols:
        cols["layers_block_type"] = [PATTERN.get(c, c) for c in pattern[:n]]
    if "layer_types" not in cols:
        derived = derived_layer_types(cfg, family, n)
        if derived is not None:
            cols["layer_types"] = list(derived)
    if "mlp_layer_types" in rules and "mlp_layer_types" not in cols:
        cols["mlp_layer_types"] = list(derived_mlp_layer_types(cfg, n, rules))
    if "jamba_periods" in rules:
        for period_key, offset_key in JAMBA_PERIODS:
            p, o = cfg.get(period_key), cfg.get(offset_key)
            if isinstance(p, int) and p > 0 and isinstance(o, int):
                cols[period_key] = [i % p == o for i in range(n)]
    if "moe_layer_range" in rules:
        cols["moe_layer_range"] = list(moe_range_layers(cfg, n))
    for key in family.layer_index_lists:
        chosen = cfg.get(key)
        if isinstance(chosen, list):
            cols[key] = [i in chosen for i in range(n)]
    overrides = cfg.get("per_layer_config")
    if "per_layer_config" in rules and isinstance(overrides, dict):
        cols["per_layer_config"] = [_frozen(layer_override(overrides, i)) for i in range(n)]
    step = cfg.get("decoder_sparse_step")
    if "decoder_sparse_step" in rules and isinstance(step, int) and step > 0:
        dense = set(cfg.get("mlp_only_layers") or [])
        cols["mlp_only_layers"] = [i in dense or (i + 1) % step != 0 for i in range(n)]
    if "interleave_moe_layer_step" in rules and cfg.get("moe_layers") is None:
        step = cfg.get("interleave_moe_layer_step")
        step = step if isinstance(step, int) and step > 0 else 1
        cols["moe_layers"] = [(i + 1) % step == 0 for i in range(n)]
    prefixes = ["num_dense_layers"]
    if "mlp_layer_types" not in rules:  # else only the default of mlp_layer_types
        prefixes.append("first_k_dense_replace")
    if cfg.get("use_sliding_window") and cfg.get("sliding_window") is not None:
        prefixes.append("max_window_layers")
    for key in prefixes:
        k = cfg.get(key)
        if key in rules and isinstance(k, int):
            cols[key] = [i < k for i in range(n)]
    names = sorted(cols)
    return [tuple((name, cols[name][i]) for name in names) for i in range(n)]


def layer_override(overrides: dict, i: int) -> object:
    """Layer ``i``'s entry of a ``per_layer_config`` (transformers' heterogeneous configs: the
    fields in which a layer differs from the global config, keyed by its index, a string in
    config.json); None where it has none."""
    return overrides.get(str(i), overrides.get(i))


def _frozen(value: object) -> object:
    """A hashable form of a JSON value (a kind's entry)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def attention_layers(config: dict, family: Family, n: int) -> int:
    """How many of the ``n`` main layers attend over the sequence with softmax attention: those
    whose mixer kind is not recurrent, convolutional or absent (:data:`NO_ATTENTION`); all of
    them where the config names no mixer kinds or cannot be read."""
    try:
        kinds = layer_kinds(config, family, n)
    except GrowthError:
        return n
    count = 0
    for kind in kinds:
        fields = dict(kind)
        if "attn_layer_period" in fields:  # Jamba: True marks an attention layer
            count += bool(fields["attn_layer_period"])
        elif "layers_block_type" in fields or "layer_types" in fields:
            mixer = fields.get("layers_block_type", fields.get("layer_types"))
            count += mixer not in NO_ATTENTION
        else:
            count += 1
    return count


def derived_layer_types(cfg: dict, family: Family, n: int) -> list[str] | None:
    """``layer_types`` as the config class derives it when config.json leaves it out, from the
    family's ``layer_types_period``, ``layer_types_cycle`` or ``linear_attn_config`` rule (None
    where the family has none of them)."""
    period = family.layer_types_period
    if period is not None:
        p = cfg.get(period.key, period.default)
        check_period(period.key, p)
        return [period.every if (i + 1) % p == 0 else period.other for i in range(n)]
    cycle = family.layer_types_cycle
    if cycle:
        return [cycle[i % len(cycle)] for i in range(n)]
    if "linear_attn_config" in family.index_rules:
        return kimi_layer_types(cfg.get("linear_attn_config") or {}, n)
    if "dense_prefix_windows" in family.index_rules:
        return cohere2_layer_types(cfg, n)
    return None


def derived_mlp_layer_types(cfg: dict, n: int, rules: tuple[str, ...] = ()) -> list[str]:
    """``mlp_layer_types`` from ``first_k_dense_replace`` (Kimi Linear, Bailing hybrid; absent
    means 0 under the ``dense_prefix_windows`` rule of Cohere2-MoE) and, where present,
    ``moe_layer_freq`` (A.X K2: layer i >= k is MoE iff ``i % freq == 0``)."""
    k = cfg.get("first_k_dense_replace", 0 if "dense_prefix_windows" in rules else None)
    if not isinstance(k, int):
        raise GrowthError(
            "config.json: neither mlp_layer_types nor first_k_dense_replace says which layers "
            "are dense; add the one the checkpoint was trained with"
        )
    freq = cfg.get("moe_layer_freq", 1)
    check_period("moe_layer_freq", freq)
    return ["sparse" if i >= k and i % freq == 0 else "dense" for i in range(n)]


def check_period(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GrowthError(f"config.json: {key} must be a positive integer, got {value!r}")


def kimi_layer_types(lac: dict, n: int) -> list[str]:
    """Kimi Linear's layer kinds: 1-based ``full_attn_layers`` / ``kda_layers`` of
    ``linear_attn_config``, else full attention at every 4th layer from layer 4 (0-based)."""
    full, kda = lac.get("full_attn_layers"), lac.get("kda_layers")
    if isinstance(full, list) and isinstance(kda, list):
        bad = [i for i in full + kda if not (isinstance(i, int) and 1 <= i <= n)]
        if bad:
            raise GrowthError(
                f"config.json: linear_attn_config names layer {bad[0]!r}, but its layers are "
                f"numbered 1..{n}"
            )
        kinds: list[str | None] = [None] * n
        for i in full:
            kinds[i - 1] = "full_attention"
        for i in kda:
            kinds[i - 1] = "linear_attention"
        if None in kinds:
            raise GrowthError(
                f"config.json: linear_attn_config names no kind for layer {kinds.index(None) + 1} "
                "(1-based) in full_attn_layers or kda_layers"
            )
        return kinds  # type: ignore[return-value]
    return ["full_attention" if i and i % 4 == 0 else "linear_attention" for i in range(n)]


#: Cohere2-MoE's config-class defaults of the fields its ``layer_types`` is derived from.
COHERE2_WINDOW_DEFAULTS = {"sliding_window_pattern": 4, "prefix_dense_sliding_window_pattern": 1}


def cohere2_layer_types(cfg: dict, n: int) -> list[str]:
    """Cohere2-MoE's layer kinds when config.json has no ``layer_types``: the first
    ``first_k_dense_replace`` (dense) layers are full attention at every
    ``prefix_dense_sliding_window_pattern``-th layer, the others at every
    ``sliding_window_pattern``-th layer counted from the first MoE layer; sliding otherwise."""
    k = cfg.get("first_k_dense_replace", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise GrowthError(f"config.json: first_k_dense_replace must be >= 0, got {k!r}")
    periods = {key: cfg.get(key, d) for key, d in COHERE2_WINDOW_DEFAULTS.items()}
    for key, value in periods.items():
        check_period(key, value)
    prefix, rest = periods["prefix_dense_sliding_window_pattern"], periods["sliding_window_pattern"]
    kinds = [(i + 1) % prefix == 0 for i in range(min(k, n))]
    kinds += [(i + 1) % rest == 0 for i in range(n - len(kinds))]
    return ["full_attention" if full else "sliding_attention" for full in kinds]


def moe_range_layers(cfg: dict, n: int) -> list[bool]:
    """Which of the ``n`` layers are MoE by Ernie 4.5's :data:`MOE_RANGE` fields."""
    start, end, interval = (cfg.get(key, default) for key, default in MOE_RANGE)
    for (key, _), value in zip(MOE_RANGE, (start, end, interval)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise GrowthError(
                f"config.json: {key} must be an integer, got {value!r}; add the value the "
                "checkpoint was trained with"
            )
    check_period("moe_layer_interval", interval)
    end = n - 1 if end == -1 else end
    return [(i + 1) % interval == 0 and start <= i <= end for i in range(n)]
