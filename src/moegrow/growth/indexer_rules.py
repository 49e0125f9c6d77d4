"""Shared sparse-attention indexers (GLM-5, Hy4): the per-layer list named by a family's
``shared_indexer`` (``indexer_types``) marks each layer ``"full"``, running its own indexer (the
tensors under the declared prefix), or ``"shared"``: no indexer, it reuses the top-k of the last
full layer before it and passes it on.

Two rules keep depth growth exact:

- the list is made explicit from the tensors where config.json leaves it to a schedule
  (``index_topk_freq`` / ``index_skip_topk_offset``, ``index_topk_pattern``, the layer index):
  a layer is full iff it stores indexer tensors;
- with ``--zero-init``, a copy of a full layer becomes shared and loses its indexer. Kept full,
  its own top-k would replace its source's for every shared layer after it; shared, it adds
  nothing to the residual stream and passes its source's top-k on.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moegrow.families.base import Family
    from moegrow.growth.config_edit import ConfigEditor
    from moegrow.io.safetensors_io import TensorInfo


def explicit_indexer_types(
    ed: ConfigEditor, family: Family, layers: dict[int, dict[str, TensorInfo]], n: int
) -> dict:
    """Write the list from the stored indexers where config.json lacks it; returns the source
    config with the list explicit (what depth growth's layer kinds are compared against)."""
    assert family.shared_indexer is not None
    key, prefix = family.shared_indexer
    if ed.cfg.get(key) is None:
        stored = [any(r.startswith(prefix) for r in layers.get(i, {})) for i in range(n)]
        ed.set(key, ["full" if s else "shared" for s in stored])
    return copy.deepcopy(ed.config)


def share_copied_indexers(ed: ConfigEditor, family: Family, copies: list[bool]) -> set[int]:
    """Make every copied full layer shared; returns the output layers whose indexer tensors
    must be left out."""
    assert family.shared_indexer is not None
    key = family.shared_indexer[0]
    values = ed.cfg.get(key)
    if not isinstance(values, list):
        return set()
    shared = {j for j, is_copy in enumerate(copies) if is_copy and values[j] == "full"}
    ed.set(key, ["shared" if j in shared else v for j, v in enumerate(values)])
    return shared


def without_indexer(tensors: dict[str, TensorInfo], family: Family) -> dict[str, TensorInfo]:
    """A layer's tensors less its indexer's (a copy made shared)."""
    assert family.shared_indexer is not None
    prefix = family.shared_indexer[1]
    return {rest: info for rest, info in tensors.items() if not rest.startswith(prefix)}
