"""Edit a raw ``config.json`` dict for a growth, keeping the source's own key spellings.

The config is never round-tripped through transformers' config classes (which rename keys such
as ``num_experts`` -> ``num_local_experts`` and ``rope_theta`` -> ``rope_parameters``): only the
fields a growth changes are touched, and every edit is recorded as a human-readable line.
"""

from __future__ import annotations

import copy

from moegrow.errors import GrowthError
from moegrow.families.base import Family, config_get
from moegrow.families.kinds import layer_override
from moegrow.growth import hybrid_rules


class ConfigEditor:
    """Collects edits to a copy of a config dict; with ``scope`` (a multimodal wrapper's
    ``text_config``) the edits go to that nested dict."""

    def __init__(self, config: dict, scope: str | None = None):
        self.config = copy.deepcopy(config)
        self.edits: list[str] = []
        self._prefix = f"{scope}." if scope else ""
        self.cfg: dict = self.config[scope] if scope else self.config
        """The dict edited: the whole config, or its nested text config."""

    def set(self, key: str, value: object) -> None:
        """Set ``key``; a dotted key is a path into nested dicts (``ffn_config.moe_top_k``)."""
        *path, last = key.split(".")
        target = self.cfg
        for part in path:
            target = target.setdefault(part, {})
        old = target.get(last, "<absent>")
        if old != value:
            target[last] = value
            self.edits.append(f"{self._prefix}{key}: {_short(old)} -> {_short(value)}")

    def remove(self, key: str) -> None:
        if key in self.cfg:
            old = self.cfg.pop(key)
            self.edits.append(f"{self._prefix}{key}: {_short(old)} -> <removed>")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def num_layers(config: dict, family: Family) -> int:
    """The number of main layers: ``num_layers_key``, or where a config derives it (Nemotron-H's
    ``layers_block_type``), the length of the first per-layer list present."""
    value = family.layer_count(config)
    if not isinstance(value, int) or value < 1:
        raise GrowthError(
            f"config.json: {family.num_layers_key} must be a positive integer, got {value!r}"
        )
    return value


def num_mtp_layers(config: dict, family: Family) -> int:
    """The multi-token-prediction layers config.json declares (``family.mtp_key``, or its alias
    ``num_mtp_layers``, which bailing_hybrid's config class maps onto it)."""
    if family.mtp_key is None:
        return 0
    text = family.text_of(config)
    return int(text.get(family.mtp_key, text.get("num_mtp_layers")) or 0)


def mtp_layers_on_disk(config: dict, family: Family, layer_indices: set[int]) -> int:
    """The multi-token-prediction layers actually stored: indices past the main layers, up to the
    declared count. transformers' ``save_pretrained`` keeps ``num_nextn_predict_layers`` in
    config.json but drops the MTP layer itself, so the two may differ; a gap inside the stored
    range is reported by :func:`moegrow.growth.plan.validate_source`."""
    n = num_layers(config, family)
    past = [i for i in layer_indices if n <= i < n + num_mtp_layers(config, family)]
    return max(past) - n + 1 if past else 0


def edit_depth(ed: ConfigEditor, family: Family, layer_map: list[int]) -> None:
    """Make every layer-count, per-layer and layer-index field consistent with ``layer_map``."""
    cfg = ed.cfg
    old_n = num_layers(ed.config, family)
    new_n = len(layer_map)
    n_mtp = num_mtp_layers(ed.config, family)

    # Fields derived from the layer index are first made explicit, then remapped like any list.
    if "decoder_sparse_step" in family.index_rules:
        _explicit_sparse_step(ed, old_n)
    if "interleave_moe_layer_step" in family.index_rules:
        _explicit_moe_layers(ed, old_n)
    hybrid_rules.explicit_kinds(ed, family, old_n)

    for key in family.per_layer_lists:
        values = cfg.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) not in (old_n, old_n + n_mtp):
            raise GrowthError(
                f"config.json: {key} must list one entry per layer ({old_n}), got {_short(values)}"
            )
        extra = values[old_n:]  # entries of multi-token-prediction layers, kept after the rest
        ed.set(key, [values[s] for s in layer_map] + extra)

    for key in family.layer_index_lists:
        values = cfg.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or not all(isinstance(i, int) for i in values):
            raise GrowthError(f"config.json: {key} must be a list of layer indices, got {values!r}")
        chosen = set(values)
        mtp = [new_n + (i - old_n) for i in values if i >= old_n]
        ed.set(key, [j for j, s in enumerate(layer_map) if s in chosen] + mtp)

    for key, _ in family.first_occurrence_modules:  # 1-based ids: first occurrences only
        ids = cfg.get(key)
        if isinstance(ids, list) and ids:
            firsts = [j for j, s in enumerate(layer_map) if layer_map.index(s) == j]
            ed.set(key, [j + 1 for j in firsts if layer_map[j] + 1 in ids])

    overrides = cfg.get("per_layer_config")
    if "per_layer_config" in family.index_rules and isinstance(overrides, dict):
        ed.set(
            "per_layer_config",
            {
                str(j): layer_override(overrides, s)
                for j, s in enumerate(layer_map)
                if layer_override(overrides, s) is not None
            },
        )

    for key in ("first_k_dense_replace", "num_dense_layers"):  # dense-prefix counts
        if key in family.index_rules:
            _remap_prefix(ed, key, layer_map, strict=True)
    if "max_window_layers" in family.index_rules:
        strict = bool(cfg.get("use_sliding_window")) and cfg.get("sliding_window") is not None
        _remap_prefix(ed, "max_window_layers", layer_map, strict=strict)
    hybrid_rules.remap_kinds(ed, family.index_rules, layer_map, old_n)

    if family.num_layers_key in cfg or not any(k in cfg for k in family.per_layer_lists):
        ed.set(family.num_layers_key, new_n)


def _explicit_sparse_step(ed: ConfigEditor, n: int) -> None:
    """Qwen-MoE: layer i is sparse iff i not in mlp_only_layers and (i + 1) % step == 0. Inserting
    layers would silently move the sparse layers, so list the dense ones and set step 1."""
    step = ed.cfg.get("decoder_sparse_step")
    if step in (None, 1):
        return
    dense = set(ed.cfg.get("mlp_only_layers") or [])
    dense |= {i for i in range(n) if (i + 1) % step != 0}
    ed.set("mlp_only_layers", sorted(dense))
    ed.set("decoder_sparse_step", 1)


def _explicit_moe_layers(ed: ConfigEditor, n: int) -> None:
    """Llama 4: without ``moe_layers``, layers step-1, 2*step-1, ... are MoE; list them."""
    if ed.cfg.get("moe_layers") is not None:
        return
    step = ed.cfg.get("interleave_moe_layer_step", 1) or 1
    ed.set("moe_layers", list(range(step - 1, n, step)))


def _remap_prefix(ed: ConfigEditor, key: str, layer_map: list[int], *, strict: bool) -> None:
    """A field meaning "layers < value are special": the special output layers must again form
    a prefix of the model."""
    value = ed.cfg.get(key)
    if not isinstance(value, int):
        return
    special = [s < value for s in layer_map]
    new_value = sum(special)
    if strict and special != [True] * new_value + [False] * (len(special) - new_value):
        raise GrowthError(
            f"config.json: {key}={value} marks the first {value} layers as special, but this "
            "layer map interleaves them with the others, which the config cannot express: use "
            "--depth-method interpose or --keep-first"
        )
    ed.set(key, new_value)


def edit_width(
    ed: ConfigEditor, family: Family, factor: int, new_top_k: int, *, scale_groups: bool
) -> None:
    """Multiply the expert counts (routed, and extra experts the router scores after them) by
    ``factor`` in every spelling present and set top-k."""
    assert family.experts is not None and family.router is not None
    cfg = ed.cfg
    for key in (*family.experts.count_keys, *family.experts.extra_count_keys):
        count = config_get(cfg, key)
        if isinstance(count, int):
            ed.set(key, count * factor)
    present = [k for k in family.experts.top_k_keys if isinstance(config_get(cfg, k), int)]
    if present:
        top_k = config_get(cfg, present[0])
        assert isinstance(top_k, int)
        for key in family.experts.per_top_k_keys:
            value = config_get(cfg, key)
            if isinstance(value, int) and value % top_k == 0:
                ed.set(key, value // top_k * new_top_k)
    for key in present:
        ed.set(key, new_top_k)
    if scale_groups and family.router.group_keys:
        for key in family.router.group_keys:
            if isinstance(cfg.get(key), int):
                ed.set(key, cfg[key] * factor)
