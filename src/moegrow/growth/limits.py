"""Bounds on what a growth may produce, checked from the spec and the headers before a plan is
built: an absurd ``--depth`` or ``--width`` is refused in microseconds instead of building
millions of tensor descriptions or filling the disk."""

from __future__ import annotations

from moegrow.errors import GrowthError
from moegrow.families import Family
from moegrow.families.base import config_get
from moegrow.growth.config_edit import num_layers
from moegrow.growth.spec import GrowthSpec
from moegrow.io.checkpoint import Headers
from moegrow.io.config_check import MAX_EXPERTS, MAX_LAYERS

#: Output tensors a plan may describe (DeepSeek-V3 grown 2x in depth and width: ~360k).
MAX_OUT_TENSORS = 1 << 22


def check_scale(ckpt: Headers, family: Family, spec: GrowthSpec) -> None:
    n = num_layers(ckpt.config, family)
    if spec.layer_map is not None:
        out_layers = len(spec.layer_map)
    else:
        out_layers = n + (n - min(n, spec.keep_first + spec.keep_last)) * (spec.depth - 1)
    if out_layers > MAX_LAYERS:
        option = "--layer-map" if spec.layer_map is not None else f"--depth {spec.depth}"
        raise GrowthError(
            f"{option} would make {out_layers} layers from {n}; at most {MAX_LAYERS} are "
            "supported: use a smaller factor"
        )
    depth_factor = max(1, -(-out_layers // n))
    if family.experts is not None and spec.width > 1:
        text = family.text_of(ckpt.config)
        counts = [config_get(text, k) for k in family.experts.count_keys]
        experts = next((c for c in counts if isinstance(c, int)), 1)
        if experts * spec.width > MAX_EXPERTS:
            raise GrowthError(
                f"--width {spec.width} would make {experts * spec.width} experts from {experts}; "
                f"at most {MAX_EXPERTS} are supported: use a smaller factor"
            )
    tensors = len(ckpt.tensors) * depth_factor * spec.width
    if tensors > MAX_OUT_TENSORS:
        raise GrowthError(
            f"this growth would write about {tensors} tensors (from {len(ckpt.tensors)}); at most "
            f"{MAX_OUT_TENSORS} are supported: use smaller --depth / --width factors"
        )
