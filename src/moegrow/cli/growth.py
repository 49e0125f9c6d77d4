"""Subcommands on checkpoints: ``plan``, ``grow``, ``verify``, ``inspect``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from moegrow.cli.options import add_options, from_args, parse_count
from moegrow.errors import MoegrowError
from moegrow.extras import require
from moegrow.flops import DEFAULT_SEQ_LEN
from moegrow.growth.spec import GrowthSpec, parse_factor, parse_layer_map, parse_top_k
from moegrow.io.sequential_writer import IO_MODES

EXIT_NOT_EXACT = 1

DEPTH_FIELDS = ("depth", "depth_method", "keep_first", "keep_last", "layer_map", "zero_init")
WIDTH_FIELDS = ("width", "top_k", "noise", "expert_order", "router", "experts")


def add_growth_options(p: argparse.ArgumentParser) -> None:
    """Every :class:`GrowthSpec` field, in a depth and a width group; ``--seed`` last."""
    parsers: dict[str, Callable[[str], Any]] = {
        "depth": lambda text: parse_factor("--depth", text),
        "width": lambda text: parse_factor("--width", text),
        "top_k": parse_top_k,
        "layer_map": parse_layer_map,
    }
    metavars = {"depth": "K", "width": "M", "layer_map": "I,J,...", "noise": "ALPHA"}
    for title, fields in (("depth growth", DEPTH_FIELDS), ("width growth", WIDTH_FIELDS)):
        add_options(
            p.add_argument_group(title), GrowthSpec, only=fields, parsers=parsers, metavars=metavars
        )
    grouped = {*DEPTH_FIELDS, *WIDTH_FIELDS}
    add_options(p, GrowthSpec, skip=grouped)


def add_output_options(p: argparse.ArgumentParser) -> None:
    """How and where a growth or an upcycling writes its output folder."""
    p.add_argument("--max-shard-size", default="5GB", help="largest output shard (default 5GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--io",
        choices=IO_MODES,
        default="auto",
        help="write the shards past the page cache (direct), through it (cached), or past it "
        "for outputs of 1 GiB and more (auto, the default); direct falls back to cached where "
        "the file system refuses it",
    )


def spec_from_args(a: argparse.Namespace) -> GrowthSpec:
    spec = from_args(GrowthSpec, a)
    if not (spec.grows_depth or spec.grows_width):
        raise MoegrowError(
            "nothing to grow: give --depth K, --width M, --layer-map and/or --top-k N"
        )
    return spec


def cmd_plan(a: argparse.Namespace) -> int:
    from moegrow.growth.config_only import open_for_plan
    from moegrow.growth.plan import make_plan
    from moegrow.growth.report import plan_summary, render_plan

    spec = spec_from_args(a)
    with open_for_plan(a.src) as ckpt:
        summary = plan_summary(make_plan(ckpt, spec), seq_len=a.seq_len)
    print(json.dumps(summary, indent=2) if a.json else render_plan(summary))
    return 0


def cmd_grow(a: argparse.Namespace) -> int:
    from moegrow.growth.grow import bound_malloc_retention, grow

    spec = spec_from_args(a)
    bound_malloc_retention()
    result = grow(
        a.src,
        a.out,
        spec,
        max_shard_size=a.max_shard_size,
        overwrite=a.overwrite,
        progress=not a.quiet,
        io=a.io,
    )
    print(render_grow(a.src, result))
    return 0


def render_grow(src: str, result) -> str:
    return f"grew {src} -> {result.out}: {len(result.plan.layer_map)} layers, {_written(result)}"


def _written(result) -> str:
    """What a growth or an upcycling wrote, how fast, and whether it is exact."""
    from moegrow.growth.report import human

    plan = result.plan
    rate = result.bytes_written / max(result.seconds, 1e-9)
    return (
        f"{len(plan.tensors)} tensors, {human(result.bytes_written, 'B')} in {result.num_shards} "
        f"shard(s), {result.seconds:.1f} s ({human(rate, 'B')}/s); exact: "
        + ("yes" if plan.exact else "no (" + "; ".join(plan.not_exact) + ")")
    )


def cmd_upcycle(a: argparse.Namespace) -> int:
    from moegrow.growth.grow import bound_malloc_retention
    from moegrow.growth.report import render_plan
    from moegrow.growth.upcycle_run import plan_upcycle, upcycle
    from moegrow.growth.upcycle_spec import UpcycleSpec

    spec = from_args(UpcycleSpec, a)
    if a.plan:
        summary = plan_upcycle(a.src, spec, seq_len=a.seq_len)
        print(json.dumps(summary, indent=2) if a.json else render_plan(summary))
        return 0
    if a.out is None:
        raise MoegrowError("upcycle: give an output folder OUT (or --plan to only print the plan)")
    bound_malloc_retention()
    result = upcycle(
        a.src,
        a.out,
        spec,
        max_shard_size=a.max_shard_size,
        overwrite=a.overwrite,
        progress=not a.quiet,
        io=a.io,
    )
    print(render_upcycle(a.src, spec, result))
    return 0


def render_upcycle(src: str, spec, result) -> str:
    return (
        f"upcycled {src} -> {result.out} ({result.plan.config['model_type']}): "
        f"{spec.experts} experts, top-{spec.top_k}, {_written(result)}"
    )


def cmd_verify(a: argparse.Namespace) -> int:
    from moegrow.growth.verify import verify

    r = verify(a.src, a.grown, batch=a.batch, seq_len=a.seq_len, seed=a.seed)
    if a.json:
        print(json.dumps(r.to_json(), indent=2))
    else:
        print(render_verify(r))
    return 0 if r.ok else EXIT_NOT_EXACT


def render_verify(r) -> str:
    expectation = {True: "exact", False: "not exact", None: "unknown (no growth card)"}
    lines = [
        f"max |delta logits|   {r.max_abs_diff:.3e}",
        f"KL(source || grown)  {r.kl:.3e}",
        f"expected             {expectation[r.expected_exact]}",
    ]
    if r.expected_exact:
        verdict = "exact" if r.ok else "NOT exact"
        verdict += f" (tolerance {r.tolerance:.2g}: 1e-5 x max(1, max |logit|))"
        lines.append(f"result               {verdict}")
    return "\n".join(lines)


def cmd_inspect(a: argparse.Namespace) -> int:
    from moegrow.growth.inspect import inspect_checkpoint

    if a.plot:
        require("matplotlib", "plot", "moegrow inspect --plot")
    info = inspect_checkpoint(a.src, seq_len=a.seq_len)
    print(json.dumps(info, indent=2) if a.json else render_inspect(info))
    if a.plot:
        from moegrow.growth.norms import LayerNorm, plot_profile

        plot_profile({info["source"]: [LayerNorm(**p) for p in info["norm_profile"]]}, a.plot)
        print(f"wrote {a.plot}", file=sys.stderr)
    return 0


def render_inspect(info: dict) -> str:
    from moegrow.growth.report import human

    seq_len = info["flops_per_token_seq_len"]
    lines = [
        f"{info['source']}: {info['model_type']} (family {info['family']})",
        f"  layers {info['layers']}"
        + (f", experts {info['experts']}, top-k {info['top_k']}" if "experts" in info else ""),
        f"  params {human(info['total_params'])} total, {human(info['active_params'])} active",
        f"  FLOPs/token {human(info['flops_per_token'])} (T={seq_len}), "
        f"Chinchilla F_c {human(info['chinchilla_flops'])}",
        "  layer  kind   weight RMS",
    ]
    lines += [f"  {p['layer']:>5}  {p['kind']:<5}  {p['value']:.6f}" for p in info["norm_profile"]]
    return "\n".join(lines)


def add_parsers(sub) -> None:
    from moegrow.growth.upcycle_spec import UpcycleSpec, parse_layers

    p = sub.add_parser("plan", help="print what a growth would produce; writes nothing")
    p.add_argument("src", help="source checkpoint folder")
    add_growth_options(p)
    p.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULT_SEQ_LEN,
        help="sequence length of the attention FLOPs term (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("grow", help="grow a checkpoint folder into a new folder")
    p.add_argument("src", help="source checkpoint folder")
    p.add_argument("out", help="output folder (must not exist unless --overwrite)")
    add_growth_options(p)
    add_output_options(p)
    p.set_defaults(func=cmd_grow)

    p = sub.add_parser(
        "upcycle",
        help="turn a dense checkpoint into an MoE (experts = copies or slices of its MLP)",
    )
    p.add_argument("src", help="dense source checkpoint folder")
    p.add_argument("out", nargs="?", help="output folder (not needed with --plan)")
    add_options(
        p,
        UpcycleSpec,
        parsers={"layers": parse_layers, "base_tokens": parse_count},
        metavars={
            "experts": "E",
            "top_k": "K",
            "granularity": "G",
            "noise": "ALPHA",
            "drop": "RATIO",
            "layers": "I,J|I-J",
            "sources": "DIR",
            "target": "MODEL_TYPE",
        },
        flags={"sources": "--from"},
    )
    p.add_argument("--plan", action="store_true", help="print the plan; write nothing")
    p.add_argument(
        "--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="attention FLOPs term (--plan)"
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON (--plan)")
    add_output_options(p)
    p.set_defaults(func=cmd_upcycle)

    p = sub.add_parser("verify", help="compare a grown checkpoint's logits with its source's")
    p.add_argument("src")
    p.add_argument("grown")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("inspect", help="family, counts, parameters and weight-norm profile")
    p.add_argument("src")
    p.add_argument("--plot", metavar="FILE.png", help="draw the weight-norm profile")
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
