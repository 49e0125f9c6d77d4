"""Plan a dense -> MoE upcycling as the same data a growth is: output tensors made of parts.

Every routed expert is one slice of one copy of the dense MLP: with granularity G the dense
intermediate dimension I is cut into G slices of width I/G, and expert ``e = c * G + g`` is slice
``g`` of copy ``c`` (gate/up rows ``g*I/G : (g+1)*I/G``, down-projection columns alike). Why
this is exact and what it takes (router rows shared by a copy's slices, top-k a multiple of G,
down-projections scaled by G) is derived in docs/UPCYCLING.md. The plan is executed by the
growth writer (:mod:`moegrow.growth.upcycle_run`).
"""

from __future__ import annotations

import dataclasses
from functools import partial

from moegrow.errors import CheckpointError, GrowthError
from moegrow.families import BY_MODEL_TYPE
from moegrow.families.base import Family
from moegrow.growth.config_edit import ConfigEditor, num_layers
from moegrow.growth.plan import RANDOM_ROUTER_STD, OutTensor, Part, Plan, split_layers
from moegrow.growth.upcycle_pairs import (
    DEFAULT_SENSITIVE,
    DENSE_DEFAULTS,
    DENSE_MLP,
    MoeTarget,
    Pair,
    find_pair,
)
from moegrow.growth.upcycle_sources import source_name
from moegrow.growth.upcycle_spec import UpcycleSpec
from moegrow.io.checkpoint import Checkpoint
from moegrow.io.safetensors_io import FLOAT_DTYPES, TensorInfo


def dense_family(model_type: str) -> Family:
    """The layout every supported dense source shares (Llama-style names)."""
    return Family(
        name=model_type,
        model_types=(model_type,),
        residual=("self_attn.o_proj.*", "mlp.down_proj.*"),
    )


def make_upcycle_plan(ckpt: Checkpoint, spec: UpcycleSpec) -> Plan:
    """Plan upcycling the dense checkpoint ``ckpt``; raises a :class:`GrowthError` or
    :class:`CheckpointError` for anything that cannot be done, before any byte is written."""
    cfg = ckpt.config
    where = str(ckpt.folder / "config.json")
    pair = find_pair(cfg.get("model_type"), spec.target, where=where)
    tgt = pair.target
    src_family = dense_family(cfg["model_type"])
    n = num_layers(cfg, src_family)
    globals_, layers = split_layers(ckpt, src_family)
    _check_source(ckpt, pair, spec, globals_, layers, n)
    upcycled = _upcycled_layers(spec, tgt, n)
    inter = _dense_width(ckpt, layers, upcycled)
    g = spec.granularity
    if inter % g:
        raise GrowthError(
            f"--granularity {g} does not divide the dense intermediate size {inter} "
            f"({where}: intermediate_size): choose a divisor of {inter}"
        )
    if spec.shared_expert and tgt.shared is None:
        raise GrowthError(
            f"--shared-expert: {tgt.model_type} has no shared expert; upcycle without it"
        )
    if spec.target and spec.target == tgt.shared_model_type and not spec.shared_expert:
        raise GrowthError(
            f"--target {spec.target} has a shared expert: add --shared-expert (it then holds "
            f"the dense MLP), or use --target {tgt.model_type}"
        )
    target_type = tgt.model_type
    arch = tgt.architecture
    if spec.shared_expert and tgt.shared_model_type:
        target_type, arch = tgt.shared_model_type, tgt.shared_architecture or arch
    family = BY_MODEL_TYPE[target_type]

    editor = ConfigEditor(cfg)
    _edit_config(editor, pair, spec, target_type, arch, inter, upcycled, n)
    not_exact, notes = _exactness(spec, tgt)
    itemsize = ckpt.tensors[f"model.layers.{min(upcycled)}.{DENSE_MLP['gate']}"].itemsize
    if (inter // g) * itemsize % 16:
        notes.append(
            f"expert width {inter // g} x {itemsize} bytes is not a multiple of 16: load with "
            "experts_implementation='eager' (transformers' grouped_mm kernel refuses it)"
        )
    std = float(cfg.get("initializer_range") or RANDOM_ROUTER_STD)
    builder = _ExpertBuilder(tgt, spec, inter, std)
    shared = _SharedTensors(spec)
    out = [shared.tensor(info) for info in _input_first(globals_)]
    for i in range(n):
        prefix = f"{src_family.layer_prefix}{i}."
        for rest, info in sorted(layers[i].items()):
            if i in upcycled and rest in DENSE_MLP.values():
                continue
            out.append(shared.tensor(info))
        if i in upcycled:
            mlp = {k: layers[i][v] for k, v in DENSE_MLP.items()}
            out += builder.layer(prefix, mlp)
    return Plan(
        source=str(ckpt.folder),
        family=family,
        spec=spec,
        source_config=cfg,
        config=editor.config,
        config_edits=editor.edits,
        layer_map=list(range(n)),
        expert_map=None,
        tensors=out,
        source_tensors=ckpt.tensors,
        exact=not not_exact,
        not_exact=not_exact,
        notes=notes,
    )


class _SharedTensors:
    """Tensors outside the experts (attention, norms, embeddings, dense layers): the source's,
    or with several sources their average (float tensors) or the first source's."""

    def __init__(self, spec: UpcycleSpec):
        self.others = len(spec.sources) if spec.merge == "average" else 0

    def tensor(self, info: TensorInfo) -> OutTensor:
        part = Part(info.name)
        if self.others and info.dtype in FLOAT_DTYPES:
            others = tuple(source_name(k, info.name) for k in range(1, 1 + self.others))
            part = Part(info.name, op="mean", others=others)
        return OutTensor(info.name, info.dtype, info.shape, [part])


def source_family(plan: Plan) -> Family:
    return dense_family(plan.source_config["model_type"])


def _input_first(infos: list[TensorInfo]) -> list[TensorInfo]:
    return sorted(infos, key=lambda t: ("embed" not in t.name, t.name))


def _check_source(ckpt, pair: Pair, spec, globals_, layers, n: int) -> None:
    where = ckpt.folder / "config.json"
    for key, value in pair.requires.items():
        if ckpt.config.get(key, value) != value:
            raise GrowthError(
                f"{where}: {key}={ckpt.config[key]!r}, but {pair.target.model_type} only "
                f"supports {key}={value!r}; this checkpoint cannot be upcycled to it"
            )
    names = {t.name for t in globals_}
    if "model.embed_tokens.weight" not in names:
        raise CheckpointError(f"{ckpt.folder}: tensor 'model.embed_tokens.weight' is missing")
    for i in sorted(set(layers) - set(range(n))):
        raise CheckpointError(
            f"{ckpt.folder}: tensors of layer {i} found, but config.json declares "
            f"num_hidden_layers={n}"
        )
    for i in range(n):
        rests = layers.get(i, {})
        for name in DENSE_MLP.values():
            if name not in rests:
                raise CheckpointError(
                    f"{ckpt.folder}: tensor 'model.layers.{i}.{name}' is missing: a dense "
                    "checkpoint needs every layer's MLP"
                )
        extra = [r for r in rests if r.startswith("mlp.") and r not in DENSE_MLP.values()]
        if extra:
            raise CheckpointError(
                f"{ckpt.folder}: tensor 'model.layers.{i}.{extra[0]}' is not part of a "
                "gate/up/down MLP without biases; it has no place in the MoE target"
            )
        for name in DENSE_MLP.values():
            info = rests[name]
            computed = spec.noise or spec.drop or spec.granularity > 1 or spec.shared_expert
            if computed and info.dtype not in FLOAT_DTYPES:
                raise GrowthError(
                    f"tensor {info.name!r} is {info.dtype} (quantised): slicing, scaling or "
                    "noise need float weights; dequantise the checkpoint first"
                )


def _upcycled_layers(spec: UpcycleSpec, tgt: MoeTarget, n: int) -> set[int]:
    if spec.layers is None:
        return set(range(n))
    bad = [i for i in spec.layers if not 0 <= i < n]
    if bad:
        raise GrowthError(f"--layers: layer {bad[0]} does not exist (layers 0..{n - 1})")
    if len(spec.layers) < n and tgt.dense_layers_key is None:
        raise GrowthError(
            f"--layers: {tgt.model_type} has no dense layers (no config key for them), so every "
            "layer must be upcycled; drop --layers"
        )
    return set(spec.layers)


def _dense_width(ckpt: Checkpoint, layers, upcycled: set[int]) -> int:
    declared = ckpt.config.get("intermediate_size")
    for i in sorted(upcycled):
        gate, up, down = (layers[i][DENSE_MLP[k]] for k in ("gate", "up", "down"))
        inter, hidden = gate.shape if len(gate.shape) == 2 else (None, None)
        if up.shape != gate.shape or down.shape != (hidden, inter) or inter != declared:
            raise CheckpointError(
                f"{ckpt.folder}: layer {i}: MLP shapes gate {list(gate.shape)}, up "
                f"{list(up.shape)}, down {list(down.shape)} do not match intermediate_size="
                f"{declared} ([I, H], [I, H], [H, I] expected)"
            )
    if not isinstance(declared, int):
        raise CheckpointError(
            f"{ckpt.folder / 'config.json'}: intermediate_size must be an integer, got {declared!r}"
        )
    return declared


def _edit_config(ed: ConfigEditor, pair, spec, target_type, arch, inter, upcycled, n) -> None:
    tgt: MoeTarget = pair.target
    src = ed.config
    defaults = DENSE_DEFAULTS[src["model_type"]]
    for key in (*DEFAULT_SENSITIVE, *pair.carry):
        if key in src or (key == "rope_parameters" and "rope_theta" in src):
            continue
        if key == "head_dim":  # derived by both classes; written so that neither differs
            heads = src.get("num_attention_heads")
            if isinstance(heads, int) and isinstance(src.get("hidden_size"), int):
                ed.set(key, src["hidden_size"] // heads)
        elif key in defaults:
            ed.set(key, defaults[key])
    ed.set("model_type", target_type)
    ed.set("architectures", [arch])
    ed.set(tgt.count_key, spec.experts)
    ed.set(tgt.top_k_key, spec.top_k)
    ed.set(tgt.width_key, inter // spec.granularity)
    if tgt.renormalize_key:
        ed.set(tgt.renormalize_key, True)
    for key, value in tgt.set_config.items():
        ed.set(key, value)
    if tgt.shared is not None and (spec.shared_expert or tgt.shared_mandatory):
        ed.set(tgt.shared.width_key, inter if spec.shared_expert else inter // spec.granularity)
    if tgt.dense_layers_key:
        ed.set(tgt.dense_layers_key, sorted(set(range(n)) - upcycled))


def _exactness(spec: UpcycleSpec, tgt: MoeTarget) -> tuple[list[str], list[str]]:
    reasons: list[str] = []
    notes: list[str] = []
    g = spec.granularity
    if spec.top_k % g:
        reasons.append(
            f"top-k {spec.top_k} is not a multiple of --granularity {g}: a token gets slices of "
            "incomplete copies of the dense MLP"
        )
    if spec.noise > 0:
        reasons.append(f"--noise {spec.noise}: copies differ from the dense MLP by design")
    if spec.drop > 0:
        reasons.append(
            f"--drop {spec.drop}: {spec.drop:.0%} of every expert's neurons are re-initialised "
            "(Drop-Upcycling), different ones per expert"
        )
    if spec.sources:
        reasons.append(
            f"experts come from {1 + len(spec.sources)} different dense models "
            f"(Branch-Train-MiX); attention, norms and embeddings: {spec.merge}"
        )
    if spec.router == "zero" and g > 1 and spec.copies > 1 and not spec.top_k % g:
        notes.append(
            "--router zero with granularity > 1: all experts tie, and the upcycling is exact "
            "only because top-k breaks ties by the lowest index (torch.topk on CPU), choosing "
            "whole copies; --router random keeps it exact whatever the tie-breaking"
        )
    if g > 1:
        notes.append(
            f"expert c*{g}+g is slice g of copy c; its down-projection is scaled by {g} so that "
            f"the {g} slices of a copy, each weighted 1/{g} of the copy's weight, add up to it"
        )
    if tgt.renormalize_key:
        notes.append(f"{tgt.renormalize_key}=true: exactness needs renormalised top-k weights")
    if tgt.shared is not None and tgt.shared_mandatory and not spec.shared_expert:
        notes.append(
            "the mandatory shared expert is slice 0 of the dense MLP with its down-projection "
            "zeroed: it adds nothing at first and trains from there"
        )
    if spec.shared_expert:
        notes.append(
            "--shared-expert: the shared expert and the routed experts each compute half of the "
            "dense MLP (power-of-two scaling of the down-projections, exact)"
        )
    return reasons, notes


class _ExpertBuilder:
    """The MoE tensors of one upcycled layer, made from the dense MLP's gate, up and down."""

    def __init__(self, tgt: MoeTarget, spec: UpcycleSpec, inter: int, std: float):
        self.tgt = tgt
        self.spec = spec
        self.g = spec.granularity
        self.width = inter // self.g
        self.inter = inter
        self.std = std
        share = 0.5 if spec.shared_expert else 1.0
        self.down_scale = float(self.g) * share
        """Routed experts' down-projection factor: G slices, each weighted 1/G of the copy."""

    def _slice(self, info: TensorInfo, c: int, g: int, *, down: bool, key: str = "") -> Part:
        """Slice g of copy c of a dense MLP matrix; copy c comes from source
        c // copies_per_source, and only the first copy of each source is noise-free."""
        per_source = self.spec.copies_per_source
        op = "noise" if c % per_source > 0 and self.spec.noise > 0 else "copy"
        info = dataclasses.replace(info, name=source_name(c // per_source, info.name))
        lo, hi = g * self.width, (g + 1) * self.width
        if self.spec.drop:  # every part computed, rows (gate, up) or columns (down) dropped
            dropped = partial(Part, drop=self.spec.drop, drop_key=key, sigma="source", op=op)
            if down:
                return dropped(info.name, cols=(lo, hi), scale=self.down_scale, drop_axis=1)
            return dropped(info.name, lo, hi, cols=(0, info.shape[1]))
        if down:
            cols = (lo, hi) if self.g > 1 else None
            return Part(info.name, op=op, scale=self.down_scale, sigma="source", cols=cols)
        if self.g == 1:
            return Part(info.name, op=op, sigma="source")
        return Part(info.name, lo, hi, op=op, sigma="source")

    def layer(self, prefix: str, mlp: dict[str, TensorInfo]) -> list[OutTensor]:
        tgt, spec = self.tgt, self.spec
        gate, up, down = mlp["gate"], mlp["up"], mlp["down"]
        hidden = gate.shape[1]
        dtype = gate.dtype
        experts = [(c, g) for c in range(spec.copies) for g in range(self.g)]
        out: list[OutTensor] = []
        if tgt.fused_gate_up and tgt.fused_down:
            parts = []
            for e, (c, g) in enumerate(experts):
                key = f"{prefix}{e}"
                parts += [
                    self._slice(gate, c, g, down=False, key=key),
                    self._slice(up, c, g, down=False, key=key),
                ]
            shape: tuple[int, ...] = (spec.experts, 2 * self.width, hidden)
            out.append(OutTensor(prefix + tgt.fused_gate_up, dtype, shape, parts, "fused"))
            parts = [
                self._slice(down, c, g, down=True, key=f"{prefix}{e}")
                for e, (c, g) in enumerate(experts)
            ]
            shape = (spec.experts, hidden, self.width)
            out.append(OutTensor(prefix + tgt.fused_down, dtype, shape, parts, "fused"))
        else:
            for e, (c, g) in enumerate(experts):
                for kind, info in (("gate", gate), ("up", up), ("down", down)):
                    name = prefix + tgt.expert[kind].format(e=e)
                    part = self._slice(info, c, g, down=kind == "down", key=f"{prefix}{e}")
                    shape = (hidden, self.width) if kind == "down" else (self.width, hidden)
                    out.append(OutTensor(name, info.dtype, shape, [part], "expert"))
        out.append(self._router(prefix, dtype, hidden))
        out += self._shared(prefix, gate, up, down)
        return out

    def _router(self, prefix: str, dtype: str, hidden: int) -> OutTensor:
        e = self.spec.experts
        name = prefix + self.tgt.router
        if self.spec.router == "zero":
            return OutTensor(name, dtype, (e, hidden), [Part(None, op="zero", rows=e)], "router")
        parts = [
            Part(None, op="random", std=self.std, rows=1, key=c)
            for c in range(self.spec.copies)
            for _ in range(self.g)
        ]
        return OutTensor(name, dtype, (e, hidden), parts, "router")

    def _shared(self, prefix, gate, up, down) -> list[OutTensor]:
        sh = self.tgt.shared
        if sh is None or not (self.spec.shared_expert or self.tgt.shared_mandatory):
            return []
        hidden = gate.shape[1]
        if self.spec.shared_expert:  # the whole dense MLP, contributing half
            width = self.inter
            rows = [Part(gate.name), Part(up.name)]
            down_part = Part(down.name, scale=0.5 / sh.factor)
        else:  # slice 0, silent: zero down-projection
            width = self.width
            rows = [Part(gate.name, 0, width), Part(up.name, 0, width)]
            down_part = Part(None, op="zero", rows=hidden)
        dtype = gate.dtype
        out = []
        if sh.fused_gate_up:
            out.append(OutTensor(prefix + sh.gate, dtype, (2 * width, hidden), rows))
        else:
            out.append(OutTensor(prefix + sh.gate, dtype, (width, hidden), [rows[0]]))
            out.append(OutTensor(prefix + sh.up, dtype, (width, hidden), [rows[1]]))
        out.append(OutTensor(prefix + sh.down, dtype, (hidden, width), [down_part]))
        if sh.gate_weight:
            zero = Part(None, op="zero", rows=1)
            out.append(OutTensor(prefix + sh.gate_weight, dtype, (1, hidden), [zero]))
        return out
