"""The fields of ``config.json`` that moegrow reads, checked for JSON type and range and against
the tensors on disk before anything is planned, loaded or allocated.

Counts are bounded by what the shards hold: a config cannot declare more layers than there are
layer indices among the tensors (nor fewer: a layer beyond the count would be dropped silently),
more experts than any tensor has rows, or a top-k outside 1..experts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from moegrow.errors import CheckpointError
from moegrow.families import BY_MODEL_TYPE, Family
from moegrow.families.base import config_get
from moegrow.io.safetensors_io import TensorInfo

#: Far above any released model (DeepSeek-V3: 61 layers, 256 experts), far below a hang.
MAX_LAYERS = 1 << 14
MAX_EXPERTS = 1 << 16
MAX_DIM = 1 << 26

#: Integer fields read by moegrow or its families -> smallest allowed value.
INT_FIELDS = {
    "num_hidden_layers": 1,
    "num_experts": 1,
    "num_local_experts": 1,
    "n_routed_experts": 1,
    "num_experts_per_tok": 1,
    "experts_per_token": 1,
    "n_group": 1,
    "topk_group": 1,
    "decoder_sparse_step": 1,
    "interleave_moe_layer_step": 1,
    "first_k_dense_replace": 0,
    "max_window_layers": 0,
    "num_nextn_predict_layers": 0,
    "n_shared_experts": 0,
    "vocab_size": 1,
    "hidden_size": 1,
    "intermediate_size": 1,
    "moe_intermediate_size": 1,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "head_dim": 1,
}
#: Float fields -> whether 0 is allowed (all must be finite and >= 0).
FLOAT_FIELDS = ("initializer_range", "router_aux_loss_coef", "rms_norm_eps", "rope_theta")
LIST_FIELDS = ("layer_types", "mlp_only_layers", "moe_layers", "no_rope_layers")


def check_config(config: dict, tensors: dict[str, TensorInfo], *, where: str) -> None:
    """Raise :class:`CheckpointError` naming ``where`` and the field for anything moegrow
    would misread. ``tensors`` are the checkpoint's headers."""
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise CheckpointError(f"{where}: model_type must be a string, got {model_type!r}")
    family = BY_MODEL_TYPE.get(model_type)  # type: ignore[arg-type]
    text = family.text_of(config) if family is not None else config
    for cfg in (config, text) if text is not config else (config,):
        _check_fields(cfg, where)
    if family is None:
        return  # the commands that need a family say so themselves
    _check_counts(config, text, family, tensors, where)


def _check_fields(config: dict, where: str) -> None:
    for key, minimum in INT_FIELDS.items():
        _check_int(config, key, minimum, where)
    for key in FLOAT_FIELDS:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise CheckpointError(f"{where}: {key} must be a number >= 0, got {value!r}")
        if not math.isfinite(value):
            raise CheckpointError(f"{where}: {key} must be finite, got {value!r}")
    for key in LIST_FIELDS:
        value = config.get(key)
        if value is not None and not isinstance(value, list):
            raise CheckpointError(f"{where}: {key} must be a list, got {_short(value)}")


def _check_counts(
    config: dict, text: dict, family: Family, tensors: dict[str, TensorInfo], where: str
) -> None:
    """Counts of the family's declaration (in the text model's config of a wrapper) against the
    tensors on disk."""
    n = family.layer_count(config)
    if n is None:
        raise CheckpointError(f"{where}: {family.num_layers_key} is missing")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise CheckpointError(
            f"{where}: {family.num_layers_key} must be an integer >= 1, got {n!r}"
        )
    config = text
    n_mtp = config.get(family.mtp_key) or 0 if family.mtp_key else 0
    indices = _layer_indices(tensors, family.layer_regex)
    on_disk = max(indices) + 1 if indices else 0
    if n > max(on_disk, 1) or n > MAX_LAYERS:
        raise CheckpointError(
            f"{where}: {family.num_layers_key}={n}"
            + (f" (+{n_mtp} multi-token-prediction)" if n_mtp else "")
            + f", but the shards hold tensors of {on_disk} layer(s); fix the count"
        )
    if on_disk > n + n_mtp:
        raise CheckpointError(
            f"{where}: {family.num_layers_key}={n}, but the shards hold tensors of layer "
            f"{on_disk - 1} ({on_disk} layers); loading would silently drop layers: fix the count"
        )
    embed = tensors.get(family.embedding)
    if embed is not None and len(embed.shape) == 2:
        for key, axis in (("vocab_size", 0), ("hidden_size", 1)):
            value = config.get(key)
            if value is not None and value != embed.shape[axis]:
                raise CheckpointError(
                    f"{where}: {key}={value}, but {family.embedding} has shape "
                    f"{list(embed.shape)} ({embed.shape[axis]} on axis {axis}); the config does "
                    "not describe these tensors"
                )
    for key in family.layer_index_lists:
        values = config.get(key) or []
        bad = [i for i in values if isinstance(i, bool) or not isinstance(i, int)]
        bad += [i for i in values if isinstance(i, int) and not 0 <= i < n + n_mtp]
        if bad:
            raise CheckpointError(
                f"{where}: {key} must list layer indices 0..{n + n_mtp - 1}, got {bad[0]!r}"
            )
    if family.experts is None:
        return
    values = [config_get(config, k) for k in family.experts.count_keys]
    counts = [c for c in values if isinstance(c, int) and not isinstance(c, bool)]
    if not counts:
        return  # planning names the missing count
    experts = counts[0]
    most_rows = max((t.shape[0] for t in tensors.values() if t.shape), default=0)
    if experts > MAX_EXPERTS or experts > max(most_rows, len(tensors)):
        raise CheckpointError(
            f"{where}: {experts} experts declared, but no tensor on disk has that many rows; "
            "fix the expert count"
        )
    for key in family.experts.top_k_keys:
        k = config_get(config, key)
        if isinstance(k, int) and k > experts:
            raise CheckpointError(
                f"{where}: {key}={k} routes each token to more experts than the {experts} "
                "declared; expected 1..experts"
            )
    if family.router is not None and family.router.group_keys:
        g_key, tg_key = family.router.group_keys
        groups, top_groups = config.get(g_key), config.get(tg_key)
        if groups is not None and (groups > experts or experts % groups):
            raise CheckpointError(
                f"{where}: {g_key}={groups} must divide the {experts} experts into equal groups"
            )
        if groups is not None and top_groups is not None and top_groups > groups:
            raise CheckpointError(f"{where}: {tg_key}={top_groups} exceeds {g_key}={groups}")


def _check_int(config: dict, key: str, minimum: int, where: str) -> None:
    value = config.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(
            f"{where}: {key} must be an integer >= {minimum}, got {_short(value)}"
        )
    if not minimum <= value <= MAX_DIM:
        raise CheckpointError(
            f"{where}: {key} must be an integer in {minimum}..{MAX_DIM}, got {value}"
        )


def _layer_indices(tensors: Iterable[str], regex) -> set[int]:
    out = set()
    for name in tensors:
        m = regex.match(name)
        if m:
            out.add(int(m.group("i")))
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
