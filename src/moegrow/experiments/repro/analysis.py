"""Measurements the experiments make beyond losses: stability after growth, how far expert
copies drift from their originals, cosines between models and between optimizer moments."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

#: Training steps after growth in which the loss spike is looked for.
SPIKE_WINDOW = 20
#: Steps of the running mean that smooths the training loss (single batches are noisy).
SMOOTH = 5


def _running_means(losses: Sequence[float]) -> list[tuple[int, float]]:
    """(step, mean of the :data:`SMOOTH` losses up to that step), steps counted from 1."""
    return [
        (step, sum(losses[step - SMOOTH : step]) / SMOOTH)
        for step in range(SMOOTH, len(losses) + 1)
    ]


def loss_spike(train_losses: Sequence[float], level: float) -> float:
    """Highest smoothed training loss in the first :data:`SPIKE_WINDOW` steps after growth,
    above ``level`` (the source model's training-loss level just before growth)."""
    early = [m for step, m in _running_means(train_losses) if step <= SPIKE_WINDOW]
    return max(early) - level


def recovery_steps(train_losses: Sequence[float], level: float) -> int | None:
    """First step at which the smoothed training loss is back at ``level`` (None if never;
    :data:`SMOOTH` at the earliest)."""
    for step, mean in _running_means(train_losses):
        if mean <= level:
            return step
    return None


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else float("nan")


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (tiny models: read whole, never unpickled)."""
    from moegrow.io.checkpoint import Checkpoint
    from moegrow.io.safetensors_io import to_torch

    with Checkpoint(folder) as ckpt:
        return {
            name: to_torch(ckpt.read_bytes(name), info.dtype).reshape(info.shape).clone()
            for name, info in ckpt.tensors.items()
        }


def weight_cosine(a: Path, b: Path, reference: Path | None = None) -> dict:
    """Cosine between two checkpoints of the same shapes: over all weights at once, and the
    mean over tensors. With ``reference`` (same shapes), the cosine of the updates
    ``a - reference`` and ``b - reference`` instead (tensors the two left unchanged are
    skipped)."""
    ta, tb = _tensors(a), _tensors(b)
    if ta.keys() != tb.keys():
        raise ValueError(f"{a} and {b} do not have the same tensors")
    tr = _tensors(reference) if reference is not None else {}
    dot = na = nb = 0.0
    per = []
    for name in sorted(ta):
        x, y = ta[name].double(), tb[name].double()
        if reference is not None:
            x, y = x - tr[name].double(), y - tr[name].double()
            if not (x.any() and y.any()):
                continue
        dot += float((x * y).sum())
        na += float((x * x).sum())
        nb += float((y * y).sum())
        per.append(cosine(x, y))
    return {"global": dot / math.sqrt(na * nb), "mean_per_tensor": sum(per) / len(per)}


def expert_divergence(folder: Path, num_original: int) -> dict:
    """How far width copies (expert ``E + i``, appended) have moved from their originals
    ``i``: per layer, the mean cosine between a copy's and its original's weights (all its
    matrices together) and between their router rows."""
    from moegrow.families import family_for
    from moegrow.growth.plan import split_layers
    from moegrow.io.checkpoint import Checkpoint
    from moegrow.io.safetensors_io import to_torch

    weights, rows = [], []
    with Checkpoint(folder) as ckpt:
        family = family_for(ckpt.config)
        _, layers = split_layers(ckpt, family)
        for i in sorted(layers):
            experts: dict[int, list[torch.Tensor]] = {}
            router = None
            for rest, info in sorted(layers[i].items()):
                role, e = family.classify(rest)
                if role not in ("expert", "fused", "router"):
                    continue
                x = to_torch(ckpt.read_bytes(info.name), info.dtype).reshape(info.shape)
                if role == "expert":
                    experts.setdefault(e, []).append(x.flatten())  # type: ignore[arg-type]
                elif role == "fused":
                    for k in range(info.shape[0]):
                        experts.setdefault(k, []).append(x[k].flatten())
                else:
                    router = x
            if len(experts) < 2 * num_original:
                continue
            flat = {e: torch.cat(v) for e, v in experts.items()}
            pairs = range(num_original)
            weights.append(sum(cosine(flat[e], flat[e + num_original]) for e in pairs) / len(pairs))
            if router is not None:
                rows.append(
                    sum(cosine(router[e], router[e + num_original]) for e in pairs) / len(pairs)
                )
    return {
        "copy_weight_cosine": sum(weights) / len(weights) if weights else float("nan"),
        "copy_router_cosine": sum(rows) / len(rows) if rows else float("nan"),
        "per_layer_weight_cosine": weights,
    }


@torch.no_grad()
def co_selection(folder: Path, data: Path, num_original: int, seq_len: int, tokens: int) -> float:
    """Over validation tokens, of the tokens routed to an original expert ``i`` or its copy
    ``E + i``, the fraction routed to both (1 = the copy routes exactly like its original; the
    copies have not specialised), averaged over pairs and layers."""
    from moegrow.data.token_shards import TokenData
    from moegrow.io.checkpoint import Checkpoint
    from moegrow.modeling.loading import load_model
    from moegrow.training.evaluate import eval_windows
    from moegrow.training.router_stats import (
        RouterCapture,
        expert_bias_buffers,
        router_kind,
        selection_scores,
    )

    with Checkpoint(folder) as ckpt:
        config = ckpt.config
    kind = router_kind(config)
    if kind is None:
        raise ValueError(f"{folder}: no router")
    model = load_model(folder, torch.device("cpu"))
    model.eval()
    biases = expert_bias_buffers(model, config)
    capture = RouterCapture(model)
    split = TokenData(data).split("val")
    both = torch.zeros(0)
    either = torch.zeros(0)
    for starts in eval_windows(len(split), seq_len, tokens, 8):
        rows = torch.stack([torch.from_numpy(split.window(s, seq_len)) for s in starts]).long()
        model(input_ids=rows, use_cache=False)
        for layer, logits in enumerate(capture.take()):
            bias = biases[layer] if layer < len(biases) else None
            scores = selection_scores(logits.reshape(-1, kind.num_experts), kind, bias)
            chosen = torch.zeros_like(scores, dtype=torch.bool)
            chosen.scatter_(1, scores.topk(kind.top_k, dim=-1).indices, True)
            orig, copy = chosen[:, :num_original], chosen[:, num_original : 2 * num_original]
            b = (orig & copy).sum(0).double()
            e = (orig | copy).sum(0).double()
            if both.numel() == 0:
                both = torch.zeros(len(capture.handles), num_original, dtype=torch.float64)
                either = torch.zeros_like(both)
            both[layer] += b
            either[layer] += e
    used = either > 0
    return float((both[used] / either[used]).mean()) if bool(used.any()) else float("nan")


_LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")


def moment_cosine(
    first: Path, second: Path, source_layer: Callable[[int], int] = lambda j: j
) -> dict:
    """Cosine between the Adam first moments (``exp_avg``) of two checkpoints of one lineage
    (a depth-grown and a width-grown run of one base, or a base and a model grown from it), on
    the parameters both derive from the same source tensor: embeddings, final norm, head and,
    for every decoder layer ``j`` of ``first``, layer ``source_layer(j)`` of ``second``. Where
    ``second`` has copies appended on axis 0 (width-grown experts, router rows), its original
    rows are compared."""
    from moegrow.training.run_dir import optimizer_moments

    moments_a, moments_b = optimizer_moments(first), optimizer_moments(second)
    per, dot, norm_a, norm_b = [], 0.0, 0.0, 0.0
    for name, a in moments_a.items():
        m = _LAYER.search(name)
        other = name
        if m:
            j = int(m.group(2))
            other = name[: m.start(2)] + str(source_layer(j)) + name[m.end(2) :]
        b = moments_b.get(other)
        if b is None:
            continue
        if b.shape != a.shape:
            if b.shape[1:] != a.shape[1:] or b.shape[0] % a.shape[0]:
                continue
            b = b[: a.shape[0]]
        per.append(abs(cosine(a, b)))
        dot += float((a.double() * b.double()).sum())
        norm_a += float(a.double().square().sum())
        norm_b += float(b.double().square().sum())
    if not per:
        raise ValueError(f"{first} and {second}: no shared parameters")
    return {
        "global": dot / math.sqrt(norm_a * norm_b),
        "mean_abs_per_tensor": sum(per) / len(per),
        "max_abs_per_tensor": max(per),
        "tensors": len(per),
    }


def _by_layer(tensors: dict[str, torch.Tensor]) -> dict[tuple[int, str], torch.Tensor]:
    """Decoder-layer tensors keyed by (layer, name with the layer index as ``*``)."""
    out = {}
    for name, t in tensors.items():
        m = _LAYER.search(name)
        if m:
            out[(int(m.group(2)), name[: m.start(2)] + "*" + name[m.end(2) :])] = t
    return out


def copy_pair_cosines(final: Path, source: Path, growth: dict) -> dict:
    """How symmetric depth copies stay: for every pair of output layers copied from one source
    layer (by the growth ``growth``, a :class:`GrowthSpec` as JSON), the cosine of their
    updates since growth (``W - W_source``), of their Adam first moments in ``final``'s
    optimizer state, and of their weights; each the mean over pairs and tensors."""
    from itertools import combinations

    from moegrow.growth.layer_map import build_layer_map
    from moegrow.growth.spec import GrowthSpec
    from moegrow.training.run_dir import optimizer_moments

    layer_map = growth.get("layer_map")
    spec = GrowthSpec(**{**growth, "layer_map": tuple(layer_map) if layer_map else None})
    src, out = _by_layer(_tensors(source)), _by_layer(_tensors(final))
    moments = _by_layer(optimizer_moments(final))
    groups: dict[int, list[int]] = {}
    for j, i in enumerate(build_layer_map(1 + max(i for i, _ in src), spec)):
        groups.setdefault(i, []).append(j)
    updates, weights, moms = [], [], []
    for i, copies in groups.items():
        for a, b in combinations(copies, 2):
            for (layer, rest), w0 in src.items():
                if layer != i:
                    continue
                wa, wb = out[(a, rest)], out[(b, rest)]
                updates.append(cosine(wa - w0, wb - w0))
                weights.append(cosine(wa, wb))
            for (layer, rest), ma in moments.items():
                if layer == a and (b, rest) in moments:
                    moms.append(cosine(ma, moments[(b, rest)]))

    def mean(xs: list[float]) -> float:
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else float("nan")

    return {
        "update_cosine": mean(updates),
        "moment_cosine": mean(moms),
        "weight_cosine": mean(weights),
        "pairs": sum(len(c) * (len(c) - 1) // 2 for c in groups.values()),
    }
