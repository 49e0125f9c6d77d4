"""Per-layer weight-norm profile (PAPER.md, "Why interposition wins").

For every expert weight matrix W: ``||W||_F / sqrt(numel(W))`` (the RMS of its entries);
averaged over the expert's matrices, then over the layer's experts. Dense layers use their MLP
matrices. Fused gate/up tensors count as one matrix per expert. Quantised tensors are skipped
(their values are not readable without dequantising). Tensors are streamed one expert at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from moegrow.families.base import Family
from moegrow.growth.plan import split_layers
from moegrow.io.checkpoint import Checkpoint
from moegrow.io.safetensors_io import FLOAT_DTYPES, TensorInfo, to_torch


@dataclass
class LayerNorm:
    layer: int
    kind: str
    """``moe``, ``dense`` or ``-`` (no readable FFN matrices)."""
    value: float
    matrices: int


def _rms(ckpt: Checkpoint, info: TensorInfo, start: int = 0, nbytes: int | None = None) -> float:
    x = to_torch(ckpt.read_bytes(info.name, start, nbytes), info.dtype).double()
    return float(x.square().mean().sqrt()) if x.numel() else 0.0


def norm_profile(ckpt: Checkpoint, family: Family) -> list[LayerNorm]:
    _, layers = split_layers(ckpt, family)
    n = ckpt.config.get(family.num_layers_key, len(layers))
    b = family.expert_rows(ckpt.config) if family.is_moe else 1  # rows of one fused expert
    out = []
    for i in range(n):
        rests = layers.get(i, {})
        per_expert: dict[int, list[float]] = {}
        for rest, info in sorted(rests.items()):
            if info.dtype not in FLOAT_DTYPES:
                continue
            role, e = family.classify(rest)
            if role == "expert" and len(info.shape) == 2:
                per_expert.setdefault(e, []).append(_rms(ckpt, info))  # type: ignore[arg-type]
            elif role == "fused" and len(info.shape) == (3 if b == 1 else 2):
                block = info.nbytes // info.shape[0] * b
                for e in range(info.shape[0] // b):
                    per_expert.setdefault(e, []).append(_rms(ckpt, info, e * block, block))
        if per_expert:
            means = [sum(v) / len(v) for v in per_expert.values()]
            count = sum(len(v) for v in per_expert.values())
            out.append(LayerNorm(i, "moe", sum(means) / len(means), count))
            continue
        dense = [
            rests[r] for r in family.dense_ffn if r in rests and rests[r].dtype in FLOAT_DTYPES
        ]
        if dense:
            vals = [_rms(ckpt, t) for t in dense]
            out.append(LayerNorm(i, "dense", sum(vals) / len(vals), len(vals)))
        else:
            out.append(LayerNorm(i, "-", float("nan"), 0))
    return out


def plot_profile(profiles: dict[str, list[LayerNorm]], path: str) -> None:
    """Draw one or more norm profiles (label -> profile) against relative depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, prof in profiles.items():
        xs = [p.layer for p in prof]
        ax.plot(xs, [p.value for p in prof], marker="o", markersize=3, label=label)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean expert weight RMS  ||W||_F / sqrt(numel)")
    ax.grid(alpha=0.3)
    if len(profiles) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
