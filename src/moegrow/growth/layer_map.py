"""Depth growth as a layer map: output layer j copies source layer ``map[j]``."""

from __future__ import annotations

from moegrow.errors import GrowthError
from moegrow.growth.spec import GrowthSpec


def build_layer_map(num_layers: int, spec: GrowthSpec) -> list[int]:
    """The source layer of every output layer.

    interpose, K=2: 0 0 1 1 2 2 ...; stack, K=2: 0 1 2 .. L-1 0 1 2 .. L-1. ``keep_first`` and
    ``keep_last`` source layers appear once, at their own end of the model.
    """
    if spec.layer_map is not None:
        bad = [i for i in spec.layer_map if not 0 <= i < num_layers]
        if bad:
            raise GrowthError(
                f"--layer-map names source layer {bad[0]}, but the model has layers "
                f"0..{num_layers - 1}"
            )
        return list(spec.layer_map)
    if spec.keep_first + spec.keep_last > num_layers:
        raise GrowthError(
            f"--keep-first {spec.keep_first} + --keep-last {spec.keep_last} exceed the "
            f"{num_layers} source layers"
        )
    first = list(range(spec.keep_first))
    middle = list(range(spec.keep_first, num_layers - spec.keep_last))
    last = list(range(num_layers - spec.keep_last, num_layers))
    if spec.depth_method == "interpose":
        grown = [i for i in middle for _ in range(spec.depth)]
    else:
        grown = middle * spec.depth
    return first + grown + last


def copy_flags(layer_map: list[int]) -> list[bool]:
    """True for every output layer that is a later occurrence (a copy) of its source layer."""
    seen: set[int] = set()
    flags = []
    for s in layer_map:
        flags.append(s in seen)
        seen.add(s)
    return flags


def preserves_order(layer_map: list[int], num_layers: int) -> bool:
    """Whether the first occurrences of the source layers are 0, 1, ..., L-1 in order, so that a
    model whose copies add nothing (zero-init) computes what the source did."""
    firsts = [s for s, is_copy in zip(layer_map, copy_flags(layer_map)) if not is_copy]
    return firsts == list(range(num_layers))
