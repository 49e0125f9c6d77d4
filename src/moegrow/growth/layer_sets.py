"""Every main layer of one kind must carry the same tensors.

transformers builds all layers of one kind alike (see :mod:`moegrow.families.kinds`), so a
checkpoint in which one layer lacks a tensor that the other layers of its kind have is
incomplete: loaded, that weight would be silently initialised at random. Growth refuses it and
names the tensor. Layers of different kinds (dense prefix vs MoE, sliding vs full attention,
Mamba vs attention, ...) are never compared whole; neither are layers with and without a
router, whatever the config says. Their attention side is compared on its own, though: a module
outside the feed-forward one (``self_attn.*``, norms) is compared between the layers that have it
and whose kinds differ only in feed-forward fields, so a dense layer that lacks a ``q_proj`` its
MoE neighbours have is caught too (except a family's ``ffn_kind_modules``, built per feed-forward
kind).
"""

from __future__ import annotations

from moegrow.errors import CheckpointError, GrowthError
from moegrow.families import Family
from moegrow.families.base import matches
from moegrow.families.kinds import layer_kinds
from moegrow.io.checkpoint import Headers
from moegrow.io.safetensors_io import TensorInfo

#: Kind fields that describe only a layer's feed-forward block (dense or MoE).
FFN_FIELDS = frozenset(
    {
        "mlp_only_layers",
        "moe_layers",
        "first_k_dense_replace",
        "mlp_layer_types",
        "num_dense_layers",
        "expert_layer_period",
    }
)


def normalised_names(family: Family, rests: dict[str, TensorInfo]) -> set[str]:
    """A layer's tensor names relative to the layer, per-expert names folded onto expert 0;
    tensors that only layers after the first have (``later_layers_only``) or only the layers a
    config list names (``first_occurrence_modules``) are left out."""
    later = tuple(t for t, _ in family.later_layers_only)
    first_only = tuple(prefix for _, prefix in family.first_occurrence_modules)
    rests = {
        r: i for r, i in rests.items() if not matches(later, r) and not r.startswith(first_only)
    }
    if not family.is_moe:
        return set(rests)
    out = set()
    for rest in rests:
        role, e = family.classify(rest)
        out.add(family.expert_name(rest, e, 0) if role == "expert" and e is not None else rest)
    return out


def check_layer_sets(
    ckpt: Headers, family: Family, layers: dict[int, dict[str, TensorInfo]], n: int
) -> None:
    """Raise :class:`CheckpointError` naming the first tensor that one of the ``n`` main layers
    lacks while the other layers of its kind have it."""
    try:
        kinds = layer_kinds(ckpt.config, family, n)
    except GrowthError:
        return  # a config whose kinds cannot be read: reported where the kinds are needed
    router = family.router.weight if family.router is not None else None
    present = [i for i in range(n) if i in layers]
    if family.shared_indexer and family.text_of(ckpt.config).get(family.shared_indexer[0]) is None:
        # no list: the stored indexers say which layers are full (growth.indexer_rules)
        prefix = family.shared_indexer[1]
        stored = {i: any(r.startswith(prefix) for r in layers[i]) for i in present}
        kinds = [(*k, ("stored_indexer", stored.get(i))) for i, k in enumerate(kinds)]
    names = {i: normalised_names(family, layers[i]) for i in present}
    groups: dict[tuple, list[int]] = {}
    for i in present:
        groups.setdefault((kinds[i], router is not None and router in layers[i]), []).append(i)
    for members in groups.values():
        _compare(ckpt, family, {i: names[i] for i in members})
    ffn = router.split(".")[0] if router else None
    by_mixer: dict[tuple, list[int]] = {}
    for i in present:
        by_mixer.setdefault(tuple(f for f in kinds[i] if f[0] not in FFN_FIELDS), []).append(i)
    for members in by_mixer.values():
        modules = {r.split(".")[0] for i in members for r in names[i]}
        modules -= {ffn, *family.ffn_kind_modules}
        for module in sorted(modules):
            subsets = {i: {r for r in names[i] if r.split(".")[0] == module} for i in members}
            _compare(ckpt, family, {i: s for i, s in subsets.items() if s})


def _compare(ckpt: Headers, family: Family, names: dict[int, set[str]]) -> None:
    members = sorted(names)
    if len(members) > 1:
        union = set().union(*names.values())
        for i in members:
            lacking = sorted(union - names[i])
            if not lacking:
                continue
            rest = lacking[0]
            having = [j for j in members if rest in names[j]]
            shown = ", ".join(map(str, having[:5])) + (", ..." if len(having) > 5 else "")
            raise CheckpointError(
                f"{ckpt.folder}: tensor {family.layer_prefix}{i}.{rest} is missing: layer(s) "
                f"{shown} of the same kind have it (every layer of one kind carries the same "
                f"tensors); the checkpoint is incomplete, re-download or re-export it"
                + (f" ({len(lacking)} tensors missing in that layer)" if len(lacking) > 1 else "")
            )
