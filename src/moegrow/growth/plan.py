"""A growth as data: every output tensor, the source bytes it is made of and the operator on them.

The plan is built from tensor headers and config.json alone (no tensor data is read), printed by
``moegrow plan``, executed by :mod:`moegrow.growth.grow` and saved in the growth card.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from moegrow.errors import CheckpointError, GrowthError
from moegrow.families import Family, family_for
from moegrow.families.base import compile_template
from moegrow.growth.config_edit import (
    ConfigEditor,
    edit_depth,
    edit_width,
    mtp_layers_on_disk,
    num_layers,
    num_mtp_layers,
)
from moegrow.growth.hybrid_rules import check_depth_kinds
from moegrow.growth.indexer_rules import (
    explicit_indexer_types,
    share_copied_indexers,
    without_indexer,
)
from moegrow.growth.layer_map import build_layer_map, copy_flags, preserves_order
from moegrow.growth.layer_sets import check_layer_sets
from moegrow.growth.limits import check_scale
from moegrow.growth.routing import WidthRules, width_rules
from moegrow.growth.spec import GrowthSpec
from moegrow.growth.upcycle_spec import UpcycleSpec
from moegrow.io.checkpoint import Headers
from moegrow.io.safetensors_io import DTYPE_SIZES, FLOAT_DTYPES, TensorInfo, numel

#: std of the rows of a randomly initialised router (the paper's random-router baseline).
RANDOM_ROUTER_STD = 0.02


@dataclass(frozen=True)
class Part:
    """A run of an output tensor along axis 0: rows ``start:stop`` of ``source`` (all of it when
    ``start`` is None) with an operator applied."""

    source: str | None
    start: int | None = None
    stop: int | None = None
    op: str = "copy"
    """``copy``; ``noise``: add N(0, (alpha*sigma)^2); ``zero``; ``random``: N(0, std^2) rows;
    ``fill``: every element ``value``; ``mean``: the mean of ``source`` and ``others``."""
    scale: float = 1.0
    """Multiplier applied after the operator (1/M on down-projections of sigmoid routers)."""
    sigma: str = "part"
    """Noise std measured on this ``part`` or on the whole ``source`` tensor (router)."""
    std: float = 0.0
    """std of a ``random`` part (0 gives zeros)."""
    value: float = 0.0
    """The constant of a ``fill`` part (a zero-initialised copy's residual scale of 1)."""
    rows: int = 0
    """Output rows of a ``zero`` or ``random`` part, which read no source bytes."""
    cols: tuple[int, int] | None = None
    """Columns ``c0:c1`` of a 2-D source (the rows' last axis): a slice of a down-projection's
    inputs (fine-grained upcycling). Such a part is computed in chunks of whole rows."""
    drop: float = 0.0
    """Drop-Upcycling: re-draw this fraction of the part's neurons (rows when ``drop_axis`` is
    0, else columns) from N(mean, std^2) of the source tensor; needs ``cols`` (computed path)."""
    drop_axis: int = 0
    drop_key: str = ""
    """Seeds which neurons are dropped: equal keys drop the same neurons."""
    others: tuple[str, ...] = ()
    """Tensors averaged with ``source`` by a ``mean`` part (same dtype and shape)."""
    key: int | None = None
    """Seeds the noise / random rows of this part instead of its index in the tensor: parts
    with the same key draw the same values (router rows shared by a group of experts)."""
    ids: tuple[tuple[int, ...], ...] = ()
    """``ids`` part: the new indices of each source expert's M copies; the source is a table
    of expert indices ``[rows, k]`` (hash routing) and becomes ``[rows, M*k]``, entry e of
    block m being ``ids[e][m]``."""


@dataclass
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    parts: list[Part]
    role: str = "plain"

    @property
    def nbytes(self) -> int:
        return numel(self.shape) * DTYPE_SIZES[self.dtype]


@dataclass
class Plan:
    source: str
    family: Family
    spec: GrowthSpec | UpcycleSpec
    source_config: dict
    config: dict
    config_edits: list[str]
    layer_map: list[int]
    expert_map: list[tuple[int, bool]] | None
    tensors: list[OutTensor]
    source_tensors: dict[str, TensorInfo]
    exact: bool
    not_exact: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    width: WidthRules | None = None

    @property
    def bytes_out(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def bytes_in(self) -> int:
        return sum(t.nbytes for t in self.source_tensors.values())


def is_quant_scale(name: str) -> bool:
    """Quantisation scales stored beside their values (FP8 ``weight_scale_inv``, MXFP4
    ``_scales``): duplicated with their experts, never given noise."""
    return name.endswith(("_scale_inv", "_scales", ".weight_scale"))


def build_expert_map(num_experts: int, factor: int, order: str) -> list[tuple[int, bool]]:
    """(source expert, is a copy) for every output expert."""
    if order == "append":
        return [(e, c > 0) for c in range(factor) for e in range(num_experts)]
    return [(e, c > 0) for e in range(num_experts) for c in range(factor)]


def split_layers(
    ckpt: Headers, family: Family
) -> tuple[list[TensorInfo], dict[int, dict[str, TensorInfo]]]:
    """Non-layer tensors, and every layer's tensors by layer-relative name."""
    globals_: list[TensorInfo] = []
    layers: dict[int, dict[str, TensorInfo]] = {}
    for name, info in ckpt.tensors.items():
        m = family.layer_regex.match(name)
        if m:
            layers.setdefault(int(m.group("i")), {})[m.group("rest")] = info
        else:
            globals_.append(info)
    return globals_, layers


def validate_source(ckpt: Headers, family: Family) -> None:
    """Check the checkpoint against its family declaration before planning anything."""
    cfg = ckpt.config
    n = num_layers(cfg, family)
    globals_, layers = split_layers(ckpt, family)
    n_mtp = mtp_layers_on_disk(cfg, family, set(layers))
    names = {t.name for t in globals_}
    for req in family.required_global:
        if req not in names:
            raise CheckpointError(
                f"{ckpt.folder}: tensor {req!r}, required by the {family.name} family, is "
                "missing; the checkpoint is incomplete"
            )
    expected = set(range(n + n_mtp))
    for i in sorted(set(layers) - expected):
        example = family.layer_prefix + f"{i}." + next(iter(layers[i]))
        raise CheckpointError(
            f"{ckpt.folder}: tensor {example!r} belongs to layer {i}, but config.json declares "
            f"{family.num_layers_key}={n}"
            + (f" and {family.mtp_key}={num_mtp_layers(cfg, family)}" if family.mtp_key else "")
        )
    for i in range(n + n_mtp):
        rests = layers.get(i)
        if not rests:
            raise CheckpointError(
                f"{ckpt.folder}: no tensors for layer {i} ({family.layer_prefix}{i}.*), but "
                f"config.json declares {family.num_layers_key}={n}"
            )
        if i < n:
            for req in family.required_layer:
                if req not in rests:
                    raise CheckpointError(
                        f"{ckpt.folder}: tensor {family.layer_prefix}{i}.{req!r}, required by "
                        f"the {family.name} family, is missing"
                    )
        if family.is_moe:
            _validate_moe_layer(ckpt, family, i, rests)
    check_layer_sets(ckpt, family, layers, n)
    router = family.router
    if router is not None and not any(router.weight in rests for rests in layers.values()):
        raise CheckpointError(
            f"{ckpt.folder}: no layer has the {family.name} router tensor "
            f"{family.layer_prefix}{{i}}.{router.weight}; the checkpoint does not match its "
            "model_type"
        )


def _validate_moe_layer(
    ckpt: Headers, family: Family, i: int, rests: dict[str, TensorInfo]
) -> None:
    assert family.experts is not None and family.router is not None
    router = rests.get(family.router.weight)
    if router is None:
        if any(family.classify(r)[0] != "plain" for r in rests):
            raise CheckpointError(
                f"{ckpt.folder}: layer {i} has expert tensors but no router "
                f"{family.layer_prefix}{i}.{family.router.weight}"
            )
        return  # a dense layer of a mixed model
    e_count, top_k = family.expert_counts(ckpt.config)
    x_count = family.extra_experts(ckpt.config)
    extra = family.router.extra_rows
    scored = e_count + x_count  # experts the router scores (its rows, less the extra choices)
    where = f"{ckpt.folder}: tensor {family.layer_prefix}{i}."
    if router.shape[0] != scored + extra:
        after = f" + {x_count} scored after them" if x_count else ""
        raise CheckpointError(
            f"{where}{family.router.weight}: has {router.shape[0]} rows, expected one per expert "
            f"({e_count}{after} in config.json)" + (f" and {extra} more" if extra else "")
        )
    b = family.expert_rows(ckpt.config)
    by_expert: dict[int, set[str]] = {}
    for rest, info in rests.items():
        role, e = family.classify(rest)
        if role == "expert":
            assert e is not None
            by_expert.setdefault(e, set()).add(family.expert_name(rest, e, 0))
            continue
        axis = 0
        if role == "fused":  # the experts' own rows (b each), no router-only choice
            counts: tuple[int, ...] = (e_count * b, scored * b)
        else:  # one entry per router row
            counts = (e_count + extra, scored + extra)
        if role == "balance_bias" and family.router.balance_bias_row:
            axis = 1
            if len(info.shape) != 2 or info.shape[0] != 1:
                raise CheckpointError(
                    f"{where}{rest}: shape {list(info.shape)}, expected one row [1, E] of "
                    "selection biases"
                )
        if role == "extra":
            counts = (x_count,)
        if role == "hash_table" and (len(info.shape) != 2 or info.shape[1] != top_k):
            raise CheckpointError(
                f"{where}{rest}: shape {list(info.shape)}, expected a token -> expert table "
                f"[vocab, {top_k}] (top-k {top_k} in config.json)"
            )
        if role in ("fused", "router", "router_bias", "balance_bias", "extra") and (
            len(info.shape) <= axis or info.shape[axis] not in counts
        ):
            each = f" x {b} rows ({family.experts.fused_rows_key})" if role == "fused" else ""
            raise CheckpointError(
                f"{where}{rest}: axis {axis} has {info.shape[axis : axis + 1]} entries, expected "
                f"{' or '.join(map(str, sorted(set(counts))))}: the {e_count} experts"
                f"{each if b > 1 else ''} declared in config.json"
            )
    if by_expert:
        beyond = sorted(set(by_expert) - set(range(scored)))
        if beyond:
            raise CheckpointError(
                f"{ckpt.folder}: layer {i}: tensors of expert {beyond[0]}, but config.json "
                f"declares {scored} experts (0..{scored - 1})"
            )
        if not set(range(e_count)) <= set(by_expert):
            missing = sorted(set(range(e_count)) - set(by_expert))
            raise CheckpointError(
                f"{ckpt.folder}: layer {i}: tensors of expert(s) {missing[:5]} are missing "
                f"(config.json declares {e_count} experts)"
            )
        union = set().union(*(by_expert[e] for e in range(e_count)))
        for e, names in by_expert.items():
            # an extra expert (LongCat's identity experts) may hold fewer tensors, never others
            if names - union:
                odd = sorted(names - union)[0]
                raise CheckpointError(
                    f"{where}{family.expert_name(odd, 0, e)}: unexpected (no routed expert has "
                    "this tensor)"
                )
            if names != union and e < e_count:
                lacking = sorted(union - names)[0]
                raise CheckpointError(
                    f"{where}{family.expert_name(lacking, 0, e)}: missing (expert {e} lacks a "
                    "tensor the other experts have)"
                )


def make_plan(ckpt: Headers, spec: GrowthSpec) -> Plan:
    """Plan a growth of ``ckpt``. Raises :class:`GrowthError` / :class:`CheckpointError` for
    anything that cannot be done, before any byte is written."""
    cfg = ckpt.config
    family = family_for(cfg, where=str(ckpt.folder / "config.json"))
    check_scale(ckpt, family, spec)
    validate_source(ckpt, family)
    n = num_layers(cfg, family)
    globals_, layers = split_layers(ckpt, family)
    n_mtp = mtp_layers_on_disk(cfg, family, set(layers))
    declared_mtp = num_mtp_layers(cfg, family)

    if spec.grows_depth and family.depth_refused:
        raise GrowthError(f"--depth: {family.name}: {family.depth_refused}")
    if spec.grows_depth and spec.zero_init:
        check_zero_init(family, cfg)
    layer_map = build_layer_map(n, spec) if spec.grows_depth else list(range(n))
    copies = copy_flags(layer_map)
    editor = ConfigEditor(cfg, scope=family.text_config)
    not_exact: list[str] = []
    notes: list[str] = []
    if getattr(ckpt, "config_only", False):
        from moegrow.growth.config_only import NOTE

        notes.append(NOTE)
    if declared_mtp > n_mtp:
        notes.append(
            f"config.json declares {family.mtp_key}={declared_mtp} but the shards hold "
            f"{n_mtp} multi-token-prediction layer(s) (transformers' save_pretrained does not "
            f"save them); growing the {n + n_mtp} layer(s) present, {family.mtp_key} kept"
        )
    no_indexer: set[int] = set()  # output layers whose indexer is left out (indexer_rules)
    if spec.grows_depth:
        source_cfg = cfg
        if family.shared_indexer:
            source_cfg = explicit_indexer_types(editor, family, layers, n)
        edit_depth(editor, family, layer_map)
        check_depth_kinds(source_cfg, editor.config, family, layer_map, n)
        if family.shared_indexer and spec.zero_init:
            no_indexer = share_copied_indexers(editor, family, copies)
        if set(layer_map) != set(range(n)):
            dropped = sorted(set(range(n)) - set(layer_map))
            notes.append(f"the layer map drops source layer(s) {dropped}")
        if not spec.zero_init:
            not_exact.append(
                "depth copies are plain (the paper's method): pass --zero-init for an exactly "
                "function-preserving growth"
            )
        elif not preserves_order(layer_map, n):
            not_exact.append("the layer map reorders or drops source layers")
        if is_post_norm(family, cfg):
            not_exact.append(f"depth growth is not exact because {POST_NORM}")
        k = family.injected_layer_count(cfg)
        if k and layer_map[:k] != list(range(k)):
            not_exact.append(
                f"{'.'.join(family.injected_layers)} adds features after the first {k} layers by "
                f"index, which are no longer source layers 0..{k - 1}: image and video inputs are "
                f"not computed as before (pass --keep-first {k})"
            )
        if family.depth_not_exact:
            not_exact.append(f"depth growth is not exact because {family.depth_not_exact}")

    rules: WidthRules | None = None
    expert_map = None
    if spec.grows_width:
        rules = width_rules(family, cfg, spec)
        edit_width(editor, family, spec.width, rules.new_top_k, scale_groups=rules.scale_groups)
        not_exact += rules.reasons
        notes += rules.notes
        if spec.experts == "random" and spec.width > 1:
            not_exact.append("new experts are freshly initialised (--experts random)")
        expert_map = build_expert_map(rules.num_experts, spec.width, spec.expert_order)
        extra = build_expert_map(rules.extra_experts, spec.width, spec.expert_order)
        expert_map += [(rules.num_experts + x, copy) for x, copy in extra]

    init_std = float(family.text_of(cfg).get("initializer_range") or RANDOM_ROUTER_STD)
    expert_rows = family.expert_rows(cfg) if family.is_moe else 1
    later: dict[
        str, TensorInfo
    ] = {}  # one stored example of each tensor that only layers after the first have
    for i in sorted(layers):
        for rest, info in layers[i].items():
            if _constant(family.later_layers_only, rest) is not None:
                later.setdefault(rest, info)
    builder = _TensorBuilder(family, spec, rules, expert_map, init_std, expert_rows, later)
    out: list[OutTensor] = []
    ignored = [
        t.name
        for t in globals_
        if family.ignored_prefixes and t.name.startswith(family.ignored_prefixes)
    ]
    if ignored and (spec.grows_width or spec.grows_depth):
        notes.append(
            f"{len(ignored)} tensor(s) under {', '.join(family.ignored_prefixes)} (a module "
            "transformers does not load, e.g. multi-token prediction) are copied unchanged: not "
            "widened or deepened with the model"
        )
    for info in sorted(globals_, key=lambda t: (not _is_input_side(t.name), t.name)):
        out.append(OutTensor(info.name, info.dtype, info.shape, [Part(info.name)]))
    new_n = len(layer_map)
    for j, s in enumerate(layer_map):
        tensors = without_indexer(layers[s], family) if j in no_indexer else layers[s]
        out += builder.layer(tensors, j, is_copy=copies[j])
    for t in range(n_mtp):  # multi-token-prediction layers: re-indexed, never duplicated
        out += builder.layer(layers[n + t], new_n + t, is_copy=False)
    if n_mtp and spec.grows_depth:
        notes.append(f"{n_mtp} multi-token-prediction layer(s) re-indexed to start at {new_n}")

    return Plan(
        source=str(ckpt.folder),
        family=family,
        spec=spec,
        source_config=cfg,
        config=editor.config,
        config_edits=editor.edits,
        layer_map=layer_map,
        expert_map=expert_map,
        tensors=out,
        source_tensors=ckpt.tensors,
        exact=not not_exact,
        not_exact=not_exact,
        notes=notes,
        width=rules,
    )


POST_NORM = (
    "the layers are post-norm (norm(x + f(x))): even a zero-initialised copy applies its norms "
    "to the residual stream"
)


def check_zero_init(family: Family, config: dict) -> None:
    """Refuse ``--zero-init`` where no zero-initialised copy is an identity (MiniMax, DeepSeek-V4,
    post-norm layers, LongCat's identity experts): the option promises a function-preserving
    growth it could not deliver."""
    why = family.depth_not_exact or (POST_NORM if is_post_norm(family, config) else "")
    x = family.extra_experts(config)
    if not why and family.experts is not None and family.experts.extra_identity and x:
        keys = "/".join(family.experts.extra_count_keys)
        why = (
            f"the {x} weightless identity experts of each MoE layer ({keys}) add their routing "
            "weight times the input to the residual stream, which no zeroed weight removes"
        )
    if why:
        model_type = family.text_of(config).get("model_type") or config.get("model_type")
        raise GrowthError(
            f"--zero-init: {model_type}: depth growth cannot be function-preserving because "
            f"{why}; grow without --zero-init (plain copies, the paper's method), knowing the "
            "grown model does not compute what the source did"
        )


def is_post_norm(family: Family, config: dict) -> bool:
    """Whether the config declares post-norm layers (see ``Family.post_norm_key``)."""
    if family.post_norm_key is None:
        return False
    key, value = family.post_norm_key
    return family.text_of(config).get(key) == value


def _is_input_side(name: str) -> bool:
    return "embed" in name


class _TensorBuilder:
    """Makes the output tensors of one layer."""

    def __init__(self, family, spec, rules, expert_map, init_std: float, expert_rows=1, later=None):
        self.family: Family = family
        self.expert_rows: int = expert_rows
        """Rows of one expert along axis 0 of the fused tensors."""
        self.later: dict[str, TensorInfo] = later or {}
        """An example of each tensor of ``later_layers_only``, by layer-relative name."""
        self.first_only = tuple(prefix for _, prefix in family.first_occurrence_modules)
        self.spec: GrowthSpec = spec
        self.rules: WidthRules | None = rules
        self.expert_map: list[tuple[int, bool]] | None = expert_map
        self.prefix = family.layer_prefix
        self.init_std = init_std
        """std of freshly initialised experts (``--experts random``)."""

    def layer(self, tensors: dict[str, TensorInfo], j: int, *, is_copy: bool) -> list[OutTensor]:
        out = []
        for rest, info in sorted(tensors.items()):
            if j == 0 and rest in self.later:
                continue  # only layers after the first have it
            if is_copy and rest.startswith(self.first_only):
                continue  # a module that copies are built without
            zero = self.spec.zero_init and is_copy and self.family.is_residual(rest)
            role, e = self.family.classify(rest) if self.rules else ("plain", None)
            name = f"{self.prefix}{j}.{rest}"
            value = _constant(self.family.identity_init, rest)
            if self.spec.zero_init and is_copy and value is not None:
                out.append(OutTensor(name, info.dtype, info.shape, [_filled(info, value)]))
            elif role == "plain":
                out.append(OutTensor(name, info.dtype, info.shape, [_whole(info, zero)]))
            elif role == "hash_table":
                out.append(self._hash_table(info, name))
            elif role == "expert":
                out += self._per_expert(info, rest, j, e, zero, tensors)
            else:
                out.append(self._stacked(info, rest, name, role, zero, tensors))
        for rest, info in sorted(self.later.items()):
            if j > 0 and rest not in tensors:  # a copy of the first layer, placed later
                value = _constant(self.family.later_layers_only, rest)
                assert value is not None
                name = f"{self.prefix}{j}.{rest}"
                out.append(OutTensor(name, info.dtype, info.shape, [_filled(info, value)]))
        return out

    def _noise_op(self, info: TensorInfo, rest: str) -> str:
        if self.spec.noise == 0 or is_quant_scale(rest):
            return "copy"
        if info.dtype not in FLOAT_DTYPES:
            raise GrowthError(
                f"tensor {info.name!r} is {info.dtype} (quantised): noise cannot be added without "
                "dequantising it; pass --noise 0 to duplicate quantised experts exactly"
            )
        return "noise"

    def _random_expert(self, info: TensorInfo) -> bool:
        if self.spec.experts != "random":
            return False
        if info.dtype not in FLOAT_DTYPES:
            raise GrowthError(
                f"tensor {info.name!r} is {info.dtype} (quantised): --experts random cannot "
                "initialise quantised experts; dequantise the checkpoint first"
            )
        return True

    def _fresh(self, rest: str, rows: int) -> Part:
        """Rows of a freshly initialised expert: normal weights, zero biases (as at init)."""
        std = 0.0 if rest.endswith("bias") else self.init_std
        return Part(None, op="random", std=std, rows=rows)

    def _down_scale(self, rest: str, tensors: dict[str, TensorInfo]) -> float:
        """Scale for an expert tensor: 1/M on down-projections where the router needs it; on
        quantised tensors the scale goes into the sibling scale tensor instead."""
        assert self.rules is not None
        if self.rules.down_scale == 1.0 or not self.family.is_down(rest):
            return 1.0
        info = tensors[rest]
        if info.dtype in FLOAT_DTYPES or rest.endswith("_scales"):
            return self.rules.down_scale
        sibling = rest + "_scale_inv" if rest.endswith(".weight") else None
        if rest.endswith("_blocks"):
            sibling = rest[: -len("_blocks")] + "_scales"
        if sibling not in tensors:
            raise GrowthError(
                f"tensor {info.name!r} is {info.dtype} with no scale tensor beside it: its "
                "down-projection cannot be scaled exactly; dequantise the checkpoint first"
            )
        return 1.0

    def _per_expert(self, info, rest, j, e, zero, tensors) -> list[OutTensor]:
        assert self.expert_map is not None
        out = []
        scale = self._down_scale(rest, tensors)
        for new_e, (src_e, copy) in enumerate(self.expert_map):
            if src_e != e:
                continue
            name = f"{self.prefix}{j}.{self.family.expert_name(rest, e, new_e)}"
            rows = info.shape[0] if info.shape else 1
            if copy and not zero and self._random_expert(info):
                out.append(
                    OutTensor(name, info.dtype, info.shape, [self._fresh(rest, rows)], "expert")
                )
                continue
            op = "zero" if zero else (self._noise_op(info, rest) if copy else "copy")
            part = Part(info.name, op=op, scale=scale, rows=rows)
            out.append(OutTensor(name, info.dtype, info.shape, [part], role="expert"))
        return out

    def _hash_table(self, info: TensorInfo, name: str) -> OutTensor:
        """A token -> expert table ``[vocab, k]`` listing every copy: ``[vocab, M*k]``."""
        assert self.expert_map is not None and self.rules is not None
        copies: list[list[int]] = [[] for _ in range(self.rules.num_experts)]
        for new_e, (src_e, _) in enumerate(self.expert_map[: len(copies) * self.spec.width]):
            copies[src_e].append(new_e)
        shape = (info.shape[0], info.shape[1] * self.spec.width)
        part = Part(info.name, op="ids", ids=tuple(tuple(c) for c in copies))
        return OutTensor(name, info.dtype, shape, [part], "hash_table")

    def _stacked_map(
        self, info: TensorInfo, role: str, axis: int, b: int = 1
    ) -> list[tuple[int, bool]]:
        """The expert map of a stacked tensor: over the routed experts, the routed and the extra
        experts (router rows ``[E + X]``), or the extra experts alone (``Experts.extra``)."""
        assert self.expert_map is not None and self.rules is not None
        e, x = self.rules.num_experts, self.rules.extra_experts
        routed = self.expert_map[: e * self.spec.width]
        if role == "extra":
            return [(s - e, copy) for s, copy in self.expert_map[len(routed) :]]
        return self.expert_map if x and info.shape[axis] == (e + x) * b else routed

    def _stacked(self, info, rest, name, role, zero, tensors) -> OutTensor:
        """A tensor with one entry per expert on axis 0 (axis 1 of a ``[1, E]`` row of selection
        biases; ``expert_rows`` rows each in DBRX's fused tensors): fused experts, router rows,
        biases."""
        assert self.expert_map is not None and self.rules is not None
        b = self.expert_rows if role == "fused" else 1  # rows of one expert
        row = role == "balance_bias" and self.family.router is not None
        row = row and self.family.router.balance_bias_row  # type: ignore[union-attr]
        expert_map = self._stacked_map(info, role, 1 if row else 0, b)
        rows_out = 1 if row else len(expert_map) * b
        shape = (1, len(expert_map)) if row else (rows_out, *info.shape[1:])
        if zero:
            return OutTensor(
                name, info.dtype, shape, [Part(info.name, op="zero", rows=rows_out)], role
            )
        scale = self._down_scale(rest, tensors) if role in ("fused", "extra") else 1.0
        if role == "balance_bias":
            scale = self.rules.balance_bias_scale
        if self.spec.router == "random-all" and role in ("router", "router_bias"):
            std = RANDOM_ROUTER_STD if role == "router" else 0.0
            return OutTensor(
                name, info.dtype, shape, [Part(None, op="random", std=std, rows=rows_out)], role
            )
        noised: tuple[str, ...] = ("fused", "extra", "router", "router_bias")
        if self.spec.balance_bias_noise:
            noised += ("balance_bias",)
        parts: list[Part] = []
        for src_e, copy in expert_map:
            op = "copy"
            sigma = "part"
            if copy and role in noised:
                if self.spec.router == "random" and role in ("router", "router_bias"):
                    std = RANDOM_ROUTER_STD if role == "router" else 0.0
                    parts.append(Part(None, op="random", std=std, rows=1))
                    continue
                if role in ("fused", "extra") and self._random_expert(info):
                    parts.append(self._fresh(rest, b))
                    continue
                op = self._noise_op(info, rest)
                sigma = "part" if role in ("fused", "extra") else "source"
            if row:  # one element of the row: a column of a [1, E] source
                cols = (src_e, src_e + 1)
                parts.append(Part(info.name, 0, 1, op=op, scale=scale, sigma="source", cols=cols))
            else:
                start = src_e * b
                parts.append(Part(info.name, start, start + b, op=op, scale=scale, sigma=sigma))
        return OutTensor(name, info.dtype, shape, _merge_copies(parts), role)


def _constant(templates: tuple[tuple[str, float], ...], rest: str) -> float | None:
    """The value of the first ``(template, value)`` whose template matches ``rest``."""
    return next((v for t, v in templates if compile_template(t).match(rest)), None)


def _filled(info: TensorInfo, value: float) -> Part:
    return Part(None, op="fill", value=value, rows=info.shape[0] if info.shape else 1)


def _whole(info: TensorInfo, zero: bool) -> Part:
    return Part(info.name, op="zero" if zero else "copy", rows=info.shape[0] if info.shape else 1)


def _merge_copies(parts: list[Part]) -> list[Part]:
    """Fuse runs of plain copies of consecutive rows of one source into one part."""
    merged: list[Part] = []
    for p in parts:
        prev = merged[-1] if merged else None
        if (  # columns of one row, copied with one scale
            prev is not None
            and p.cols is not None
            and prev.cols is not None
            and p.op == prev.op == "copy"
            and (p.source, p.start, p.scale) == (prev.source, prev.start, prev.scale)
            and p.cols[0] == prev.cols[1]
        ):
            merged[-1] = replace(prev, cols=(prev.cols[0], p.cols[1]))
        elif (
            prev is not None
            and p.op == prev.op == "copy"
            and p.scale == prev.scale == 1.0
            and p.source == prev.source
            and p.start == prev.stop
        ):
            merged[-1] = Part(p.source, prev.start, p.stop)
        else:
            merged.append(p)
    return merged


def assign_shards(tensors: list[OutTensor], max_shard_size: int) -> list[list[OutTensor]]:
    """Cut the tensors, in plan order, into shards of at most ``max_shard_size`` bytes (a larger
    tensor gets a shard of its own). Within a shard, wider dtypes come first so that every tensor
    starts aligned to its element size."""
    shards: list[list[OutTensor]] = []
    size = 0
    for t in tensors:
        if not shards or (size + t.nbytes > max_shard_size and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return [sorted(s, key=lambda t: -DTYPE_SIZES[t.dtype]) for s in shards]
