"""What ``moegrow plan`` prints: a growth plan summarised as a dict (``--json``) or as text."""

from __future__ import annotations

from moegrow.flops import DEFAULT_SEQ_LEN, tensor_stats
from moegrow.growth.config_edit import num_layers
from moegrow.growth.operators import CHUNK_ELEMENTS, COMPUTE_THREADS, WINDOW
from moegrow.growth.plan import Plan

#: Resident memory of the Python process with torch imported and a plan built (measured: a
#: depth-only growth of a 6.3 GB checkpoint peaks at 0.30 GB).
BASELINE_RSS = 300 * 2**20


def estimated_peak_memory(largest_noised: int = 0) -> int:
    """Peak resident memory of a growth, whatever the model or shard size: the interpreter,
    each compute thread's reusable read buffer (8 B/element) and two float32 work buffers, the
    reused output buffers of the chunks in flight (float32 chunks; bf16 ones take half), and two
    source ranges of ``largest_noised`` bytes read once for their noise (see ``scopes.py``).
    (Measured 0.42 GB for a 23 GB output on 2 cores before ranges were read once; this
    estimate then said 0.55 GB.)"""
    per_thread = CHUNK_ELEMENTS * (8 + 4 + 4)
    return (
        BASELINE_RSS
        + COMPUTE_THREADS * per_thread
        + WINDOW * CHUNK_ELEMENTS * 4
        + 2 * largest_noised
    )


def largest_noised_range(plan: Plan) -> int:
    """Bytes of the largest source tensor a noise part reads from (an upper bound on the range
    it reads at once; 0 without noise)."""
    sizes = [
        plan.source_tensors[p.source].nbytes
        for t in plan.tensors
        for p in t.parts
        if p.op == "noise" and p.source is not None
    ]
    return max(sizes, default=0)


def plan_summary(plan: Plan, seq_len: int = DEFAULT_SEQ_LEN) -> dict:
    fam = plan.family
    before = tensor_stats(plan.source_tensors.values(), fam, plan.source_config)
    after = tensor_stats(plan.tensors, fam, plan.config)
    counts = {
        "layers": [num_layers(plan.source_config, fam), num_layers(plan.config, fam)],
    }
    if fam.experts is not None:
        (e0, k0), (e1, k1) = (fam.expert_counts(c) for c in (plan.source_config, plan.config))
        counts["experts"], counts["top_k"] = [e0, e1], [k0, k1]
    return {
        "source": plan.source,
        "family": fam.name,
        "model_type": plan.source_config.get("model_type"),
        "growth": plan.spec.to_json(),
        **common_summary(plan, before, after, counts, seq_len),
        "layer_map": plan.layer_map,
    }


def common_summary(plan: Plan, before, after, counts: dict, seq_len: int) -> dict:
    """The part of a plan summary shared by growths and upcycling: counts, parameters, FLOPs,
    bytes, memory, config edits and exactness."""
    return {
        "counts": counts,
        "params": {
            "total": [before.total, after.total],
            "active": [before.active, after.active],
        },
        "flops_per_token": [before.flops_per_token(seq_len), after.flops_per_token(seq_len)],
        "flops_per_token_seq_len": seq_len,
        "chinchilla_flops": [before.chinchilla_flops, after.chinchilla_flops],
        "bytes_in": plan.bytes_in,
        "bytes_out": plan.bytes_out,
        "num_tensors": [len(plan.source_tensors), len(plan.tensors)],
        "estimated_peak_memory": estimated_peak_memory(largest_noised_range(plan)),
        "layer_map": plan.layer_map,
        "config_edits": plan.config_edits,
        "exact": plan.exact,
        "not_exact": plan.not_exact,
        "notes": plan.notes,
    }


def human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}"
        n /= 1000
    return f"{n:.3g}E{unit}"


def render_plan(s: dict) -> str:
    lines = [f"source   {s['source']}  ({s['model_type']}, family {s['family']})"]

    def row(label: str, pair, fmt=str) -> None:
        lines.append(f"  {label:<22}{fmt(pair[0]):>12} -> {fmt(pair[1])}")

    for key, pair in s["counts"].items():
        row(key.replace("_", "-"), pair)
    row("total params", s["params"]["total"], human)
    row("active params", s["params"]["active"], human)
    row(f"FLOPs/token (T={s['flops_per_token_seq_len']})", s["flops_per_token"], human)
    row("Chinchilla F_c", s["chinchilla_flops"], human)
    row("tensors", s["num_tensors"])
    row("bytes", [s["bytes_in"], s["bytes_out"]], lambda b: human(b, "B"))
    lines.append(f"  {'est. peak memory':<22}{human(s['estimated_peak_memory'], 'B'):>12}")
    if s["layer_map"] != list(range(len(s["layer_map"]))):
        lines.append(f"  layer map: {_compact(s['layer_map'])}")
    lines.append("config edits:" if s["config_edits"] else "config edits: none")
    lines += [f"  {e}" for e in s["config_edits"]]
    if s["exact"]:
        lines.append("exact: yes, the grown model computes the same logits as the source")
    else:
        lines.append("exact: no")
        lines += [f"  - {r}" for r in s["not_exact"]]
    lines += [f"note: {n}" for n in s["notes"]]
    return "\n".join(lines)


def _compact(values: list[int], limit: int = 40) -> str:
    text = " ".join(map(str, values[:limit]))
    return text + (f" ... ({len(values)} layers)" if len(values) > limit else "")
