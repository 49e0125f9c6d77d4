"""Config rules of hybrid stacks: per-layer kinds (attention / linear attention / Mamba / short
convolution, dense / MoE) that a config describes by a period, a pattern string or a nested list.

Depth growth must give every output layer the kind of the source layer it copies. A kind that a
config derives from the layer index is first made explicit where the config class accepts an
explicit list, and every description is then remapped through the layer map; a period that
cannot express the new layer map (Jamba) is refused, never left to mean something else.

Each rule is named in a family's ``index_rules`` or declared as data:

- a family's ``layer_types_period`` (Qwen3-Next's ``full_attention_interval``, Bailing's
  ``layer_group_size``: layer i is full attention iff ``(i + 1) % p == 0``) or
  ``layer_types_cycle`` (LaRA-mini), when config.json has no ``layer_types``: made explicit;
- ``linear_attn_config`` (Kimi Linear): 1-based ``full_attn_layers`` / ``kda_layers`` lists
  nested in ``linear_attn_config``, remapped; ``layer_types`` made explicit when absent;
- ``mlp_layer_types`` (Kimi Linear, Bailing hybrid, Cohere2-MoE): dense-vs-MoE per layer,
  derived from ``first_k_dense_replace`` when absent: made explicit;
- ``dense_prefix_windows`` (Cohere2-MoE): ``layer_types`` derived from one sliding-window period
  for the dense prefix and another for the MoE layers
  (:func:`~moegrow.families.kinds.cohere2_layer_types`): made explicit;
- ``hybrid_override_pattern`` (Nemotron-H): one character per layer (``M`` Mamba, ``E`` MoE,
  ``*`` attention, ``-`` MLP), remapped;
- ``moe_layer_range`` (Ernie 4.5): layer i is MoE iff ``(i + 1) % moe_layer_interval == 0`` and
  ``moe_layer_start_index <= i <= moe_layer_end_index``; the config accepts no explicit list, so
  a new start, end and interval are solved for, or the growth refused;
- ``jamba_periods``: ``attn_layer_period/offset`` and ``expert_layer_period/offset`` (layer i is
  attention iff ``i % period == offset``); Jamba's config derives its per-layer lists from them
  and accepts no explicit list, so a new period and offset are solved for, or the growth refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moegrow.errors import GrowthError
from moegrow.families.kinds import (
    JAMBA_PERIODS,
    MOE_RANGE,
    check_period,
    derived_layer_types,
    derived_mlp_layer_types,
    layer_kinds,
    moe_range_layers,
)

if TYPE_CHECKING:
    from moegrow.families.base import Family
    from moegrow.growth.config_edit import ConfigEditor


def explicit_kinds(ed: ConfigEditor, family: Family, n: int) -> None:
    """Write per-layer kinds that the config derives from the layer index as explicit lists."""
    cfg = ed.cfg
    rules = family.index_rules
    for key in family.unlisted_kinds:
        if cfg.get(key) is None:
            raise GrowthError(
                f"config.json: {family.name} has no {key}, which transformers then derives from "
                "the layer index, so depth growth would change the kind of existing layers; write "
                "the list out (load and save the config with transformers) and grow again"
            )
    if cfg.get("layer_types") is None:
        derived = derived_layer_types(cfg, family, n)
        if derived is not None:
            ed.set("layer_types", derived)
    period = family.layer_types_period
    if period is not None and period.drop:
        ed.remove(period.key)  # layer_types says it now, and takes precedence
    if "mlp_layer_types" in rules and cfg.get("mlp_layer_types") is None:
        ed.set("mlp_layer_types", derived_mlp_layer_types(cfg, n, rules))


def remap_kinds(ed: ConfigEditor, rules: tuple[str, ...], layer_map: list[int], n: int) -> None:
    """Remap the kind descriptions that are not plain per-layer lists."""
    cfg = ed.cfg
    if "hybrid_override_pattern" in rules and cfg.get("hybrid_override_pattern") is not None:
        pattern = cfg["hybrid_override_pattern"]
        if not isinstance(pattern, str) or len(pattern) != n:
            raise GrowthError(
                f"config.json: hybrid_override_pattern must have one character per layer ({n}), "
                f"got {pattern!r}"
            )
        ed.set("hybrid_override_pattern", "".join(pattern[s] for s in layer_map))
    if "linear_attn_config" in rules and isinstance(cfg.get("linear_attn_config"), dict):
        lac = dict(cfg["linear_attn_config"])
        for key in ("full_attn_layers", "kda_layers"):
            if isinstance(lac.get(key), list):
                chosen = set(lac[key])  # 1-based layer numbers
                lac[key] = [j + 1 for j, s in enumerate(layer_map) if s + 1 in chosen]
        ed.set("linear_attn_config", lac)
    if "mlp_layer_types" in rules and isinstance(cfg.get("first_k_dense_replace"), int):
        # only a default for mlp_layer_types, which is now explicit: keep it a true count
        k = cfg["first_k_dense_replace"]
        ed.set("first_k_dense_replace", sum(s < k for s in layer_map))
    if "jamba_periods" in rules:
        for period_key, offset_key in JAMBA_PERIODS:
            _remap_period(ed, period_key, offset_key, layer_map, n)
    if "moe_layer_range" in rules:
        _remap_moe_range(ed, layer_map, n)


def solve_moe_range(kinds: list[bool]) -> tuple[int, int, int] | None:
    """``(start, end, interval)`` with ``kinds[j] == ((j + 1) % interval == 0 and start <= j <=
    end)`` for every layer j (the smallest interval), or None when none describes ``kinds``."""
    n = len(kinds)
    chosen = [j for j, k in enumerate(kinds) if k]
    if not chosen:
        return n, n - 1, 1  # an empty range: no MoE layer
    start, end = chosen[0], chosen[-1]
    for interval in range(1, n + 1):
        if all(k == ((j + 1) % interval == 0 and start <= j <= end) for j, k in enumerate(kinds)):
            return start, end, interval
    return None


def _remap_moe_range(ed: ConfigEditor, layer_map: list[int], n: int) -> None:
    source = moe_range_layers(ed.cfg, n)
    wanted = [source[s] for s in layer_map]
    solved = solve_moe_range(wanted)
    if solved is None:
        marked = [j for j, k in enumerate(wanted) if k]
        raise GrowthError(
            f"config.json: no moe_layer_start_index / moe_layer_end_index / moe_layer_interval "
            f"describes the grown stack, whose MoE layers would be {marked[:6]}, and the config "
            "accepts no explicit list; use --depth-method interpose, or a --layer-map that keeps "
            "the MoE layers one evenly spaced run"
        )
    for (key, _), value in zip(MOE_RANGE, solved):
        ed.set(key, value)


def solve_period(kinds: list[bool]) -> tuple[int, int] | None:
    """The smallest ``(period, offset)`` with ``kinds[j] == (j % period == offset)`` for every
    layer j, or None when no period expresses ``kinds``."""
    n = len(kinds)
    for period in range(1, n + 2):
        for offset in range(period):
            if all(k == (j % period == offset) for j, k in enumerate(kinds)):
                return period, offset
    return None


def _remap_period(
    ed: ConfigEditor, period_key: str, offset_key: str, layer_map: list[int], n: int
) -> None:
    cfg = ed.cfg
    period, offset = cfg.get(period_key), cfg.get(offset_key)
    for key, value in ((period_key, period), (offset_key, offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise GrowthError(
                f"config.json: {key} must be a non-negative integer, got {value!r}; add the value "
                "the checkpoint was trained with"
            )
    check_period(period_key, period)
    assert isinstance(period, int) and isinstance(offset, int)  # checked above
    source = [i % period == offset for i in range(n)]
    wanted = [source[s] for s in layer_map]
    solved = solve_period(wanted)
    if solved is None:
        marked = [j for j, k in enumerate(wanted) if k]
        what = "attention" if period_key.startswith("attn") else "MoE"
        raise GrowthError(
            f"config.json: {period_key}={period}, {offset_key}={offset}: no period describes the "
            f"grown stack, whose {what} layers would be {marked[:6]}, and the config accepts no "
            "explicit list; use --depth-method stack with a layer count that is a multiple of "
            f"{period_key}, or a --layer-map that keeps a period"
        )
    ed.set(period_key, solved[0])
    ed.set(offset_key, solved[1])


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
