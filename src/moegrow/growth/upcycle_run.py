"""Execute an upcycling plan with the growth writer (streaming, bounded memory, atomic) and
write its growth card, which carries the dense model's FLOPs ledger as sunk cost."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

from moegrow.flops import DEFAULT_SEQ_LEN, tensor_stats
from moegrow.growth.grow import (
    GrowResult,
    _one_thread_per_kernel,
    card_provenance,
    check_destination,
    parse_size,
    write_plan,
)
from moegrow.growth.plan import Plan
from moegrow.growth.report import common_summary
from moegrow.growth.upcycle import make_upcycle_plan, source_family
from moegrow.growth.upcycle_sources import SourceSet
from moegrow.growth.upcycle_spec import UpcycleSpec
from moegrow.io.card import ledger_of
from moegrow.io.checkpoint import Checkpoint
from moegrow.io.sequential_writer import check_io


def upcycle(
    src: str | os.PathLike,
    out: str | os.PathLike,
    spec: UpcycleSpec,
    *,
    max_shard_size: int | str = 5 * 10**9,
    overwrite: bool = False,
    progress: bool = True,
    io: str = "auto",
) -> GrowResult:
    """Upcycle the dense checkpoint folder ``src`` into an MoE checkpoint folder ``out``.
    Nothing is written unless the whole upcycling can be planned; ``out`` appears only when
    every byte is written. ``io``: how the shards are written (see :func:`grow`)."""
    check_io(io)
    out = check_destination([src, *spec.sources], out, overwrite=overwrite)
    max_shard_size = parse_size(max_shard_size)
    start = time.perf_counter()
    with _one_thread_per_kernel(), ExitStack() as stack:
        ckpts = [stack.enter_context(Checkpoint(p)) for p in (src, *spec.sources)]
        plan = make_upcycle_plan(ckpts[0], spec)
        shards = write_plan(
            ckpts[0],
            plan,
            out,
            upcycle_card,
            max_shard_size,
            overwrite=overwrite,
            reader=SourceSet(ckpts),
            progress=progress,
            io=io,
        )
    return GrowResult(out, plan, plan.bytes_out, time.perf_counter() - start, shards)


def _stats(plan: Plan):
    before = tensor_stats(
        plan.source_tensors.values(),
        source_family(plan),
        plan.source_config,
    )
    after = tensor_stats(plan.tensors, plan.family, plan.config)
    return before, after


def describe(spec: UpcycleSpec) -> str:
    bits = [f"upcycle to {spec.experts} experts top-{spec.top_k}"]
    if spec.granularity > 1:
        bits.append(f"granularity {spec.granularity}")
    bits.append(f"router {spec.router}")
    if spec.noise:
        bits.append(f"noise {spec.noise}")
    if spec.drop:
        bits.append(f"drop {spec.drop}")
    if spec.shared_expert:
        bits.append("shared expert")
    if spec.layers is not None:
        bits.append(f"layers {list(spec.layers)}")
    if spec.sources:
        bits.append(f"{1 + len(spec.sources)} sources, {spec.merge}")
    return ", ".join(bits)


def upcycle_ledger(plan: Plan) -> list[dict]:
    """The dense model's ledger (sunk cost), or its declared base training, plus this stage."""
    spec: UpcycleSpec = plan.spec  # type: ignore[assignment]
    before, after = _stats(plan)
    ledger = ledger_of(Path(plan.source))
    for k, other in enumerate(spec.sources, start=1):  # Branch-Train-MiX: every branch is sunk
        ledger += [{**e, "stage": f"{e.get('stage')} (source {k})"} for e in ledger_of(Path(other))]
    if not ledger and spec.base_tokens:
        fpt = before.flops_per_token(DEFAULT_SEQ_LEN)
        ledger = [
            {
                "stage": "base (declared)",
                "tokens": spec.base_tokens,
                "flops": fpt * spec.base_tokens,
                "note": f"dense {plan.source_config.get('model_type')}, --base-tokens",
                "active_params": before.active,
            }
        ]
    ledger.append(
        {
            "stage": "upcycle",
            "tokens": 0,
            "flops": 0.0,
            "note": describe(spec),
            "active_params": after.active,
        }
    )
    return ledger


def upcycle_card(plan: Plan, source_hashes: dict[str, str], num_shards: int) -> dict:
    before, after = _stats(plan)
    return {
        **card_provenance(plan, source_hashes),
        "upcycle": plan.spec.to_json(),
        "family": plan.family.name,
        "exact": plan.exact,
        "not_exact": plan.not_exact,
        "notes": plan.notes,
        "config_edits": plan.config_edits,
        "params_before": before.to_json(),
        "params_after": after.to_json(),
        "bytes_written": plan.bytes_out,
        "num_shards": num_shards,
        "ledger": upcycle_ledger(plan),
    }


def upcycle_summary(plan: Plan, seq_len: int = DEFAULT_SEQ_LEN) -> dict:
    """What ``moegrow upcycle --plan`` prints, in the shape of ``moegrow plan``'s summary."""
    spec: UpcycleSpec = plan.spec  # type: ignore[assignment]
    before, after = _stats(plan)
    counts = {
        "layers": [len(plan.layer_map)] * 2,
        "experts": ["dense", spec.experts],
        "top_k": ["-", spec.top_k],
        "expert_width": [
            plan.source_config.get("intermediate_size"),
            plan.source_config.get("intermediate_size", 0) // spec.granularity,
        ],
    }
    return {
        "source": plan.source,
        "family": plan.family.name,
        "model_type": f"{plan.source_config.get('model_type')} -> {plan.config['model_type']}",
        "upcycle": spec.to_json(),
        **common_summary(plan, before, after, counts, seq_len),
        "layer_map": plan.layer_map,
    }


def plan_upcycle(src: str | os.PathLike, spec: UpcycleSpec, seq_len: int = DEFAULT_SEQ_LEN):
    with Checkpoint(src) as ckpt:
        return upcycle_summary(make_upcycle_plan(ckpt, spec), seq_len)
