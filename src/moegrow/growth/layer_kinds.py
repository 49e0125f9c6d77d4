"""Every main layer's kind, read from config.json the way transformers derives it.

A kind is a tuple of what a config says about one layer: its entry in every per-layer list
(``layer_types``, ``mlp_layer_types``, ``layers_block_type``, ``no_rope_layers``), whether a
layer-index list names it (``mlp_only_layers``, ``moe_layers``), and what a period, a pattern or
an index threshold implies for it (Jamba's periods, ``hybrid_override_pattern``,
``decoder_sparse_step``, ``first_k_dense_replace``, ``num_dense_layers``, ...). Layers of one
kind are built alike by transformers, so they carry the same tensors; depth growth must give
output layer j the kind of its source layer (checked by :func:`check_depth_kinds`).
"""

from __future__ import annotations

from moegrow.errors import GrowthError
from moegrow.families.base import Family
from moegrow.growth import hybrid_rules

Kind = tuple[tuple[str, object], ...]
"""``(field, value)`` pairs, sorted by field."""

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
        derived = hybrid_rules.derived_layer_types(cfg, rules, n, family.layer_types_cycle)
        if derived is not None:
            cols["layer_types"] = list(derived)
    if "mlp_layer_types" in rules and "mlp_layer_types" not in cols:
        cols["mlp_layer_types"] = list(hybrid_rules.derived_mlp_layer_types(cfg, n))
    if "jamba_periods" in rules:
        for period_key, offset_key in hybrid_rules.JAMBA_PERIODS:
            p, o = cfg.get(period_key), cfg.get(offset_key)
            if isinstance(p, int) and p > 0 and isinstance(o, int):
                cols[period_key] = [i % p == o for i in range(n)]
    for key in family.layer_index_lists:
        chosen = cfg.get(key)
        if isinstance(chosen, list):
            cols[key] = [i in chosen for i in range(n)]
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


def check_depth_kinds(
    source: dict, grown: dict, family: Family, layer_map: list[int], n: int
) -> None:
    """Refuse a config edit after which some output layer's kind differs from its source
    layer's (a description that silently means something else)."""
    before = layer_kinds(source, family, n)
    after = layer_kinds(grown, family, len(layer_map))
    for j, s in enumerate(layer_map):
        if after[j] != before[s]:
            raise GrowthError(
                f"config.json: after depth growth layer {j} would be built as {after[j]}, but "
                f"it copies source layer {s}, built as {before[s]}; this layer map cannot be "
                "described by the config's layer fields"
            )
