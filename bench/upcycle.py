"""Benchmark ``moegrow upcycle`` against ``moegrow grow`` writing the same bytes.

The dense source is a synthetic Llama checkpoint (Llama-3-8B-like shapes without the large
vocabulary: hidden 4096, MLP 14336, 32/8 heads, vocab 32000, random bf16) with enough layers to
reach ``--size-gb`` (default 4 GB). The reference is the same model written as a Mixtral with a
single expert (the dense MLP as expert 0, a one-row router), grown with ``--width 8``: its output
has exactly the tensors, shapes and bytes of the dense model upcycled to 8 experts (up to the
router's 8 rows), and both go through the same writer. Measured, one after the other:

1. ``grow --width 8 --noise 0`` vs ``upcycle --experts 8 --top-k 2`` (copies: kernel copies);
2. ``grow --width 8 --noise 0.01`` vs ``upcycle ... --noise 0.01`` (noise on 7 of 8 copies);
3. ``upcycle ... --granularity 2`` (down-projections sliced by columns and scaled: computed).

Target: every upcycling within 1.2 x the time of its grow reference; peak RSS is reported.
Runs, measuring (GNU time, sync afterwards, warm source) and reporting are those of
bench/grow.py. Needs about 2 x the source on disk plus the largest output (~6 x the source).

    .venv/bin/python bench/upcycle.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grow as gb  # noqa: E402  (bench/grow.py: measuring helpers)

RATIO_TARGET = 1.2
EXPERTS = 8
PRESETS = {
    "llama-8b": gb.Shapes(4096, 14336, 1, 1, 32, 8, 32000),
    "llama-tiny": gb.Shapes(256, 512, 1, 1, 8, 2, 1000),
}


def dense_tensors(s: gb.Shapes, layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """The tensors of the dense model, named as Llama, in the order of a Hugging Face save."""
    out = []
    for name, shape in gb.tensor_shapes(s, layers):
        if ".block_sparse_moe.gate." in name:
            continue
        for moe, dense in (("experts.0.w1", "gate_proj"), ("experts.0.w3", "up_proj")):
            name = name.replace(f"block_sparse_moe.{moe}", f"mlp.{dense}")
        name = name.replace("block_sparse_moe.experts.0.w2", "mlp.down_proj")
        out.append((name, shape))
    return out


def build(folder: Path, tensors, config: dict, shard_bytes: int) -> None:
    """Write a checkpoint (one shard in memory at most), cached by a marker file. Values are
    seeded by tensor name, so the dense and the one-expert model hold the same numbers."""
    marker = folder / ".bench-complete"
    key = json.dumps({"tensors": tensors, "config": config, "shard": shard_bytes})
    if marker.is_file() and marker.read_text() == key:
        print(f"using cached source {folder}")
        return
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shards = gb.plan_shards(tensors, shard_bytes)
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        gen = torch.Generator().manual_seed(i)
        data = {name: gb.random_tensor(name, shape, gen) for name, shape in shard}
        save_file(data, folder / file, metadata={"format": "pt"})
        del data
        weight_map.update((name, file) for name, _ in shard)
        print(f"  wrote {folder.name}/{file} ({i + 1}/{len(shards)})", flush=True)
    total = sum(gb.nbytes(shape) for _, shape in tensors)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    marker.write_text(key)


def llama_config(s: gb.Shapes, layers: int) -> dict:
    cfg = gb.mixtral_config(s, layers)
    for key in ("num_local_experts", "num_experts_per_tok", "router_aux_loss_coef"):
        del cfg[key]
    del cfg["output_router_logits"], cfg["sliding_window"]
    return cfg | {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=gb.REPO / ".bench-cache")
    p.add_argument("--preset", choices=sorted(PRESETS), default="llama-8b")
    p.add_argument("--size-gb", type=float, default=4.0, help="smallest dense source size (GB)")
    p.add_argument("--shard-gb", type=float, default=2.0)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="most seconds to wait for a quiet machine before each run",
    )
    p.add_argument("--skip-granularity", action="store_true")
    p.add_argument(
        "--repeat", type=int, default=1, help="rounds (each runs every command); medians"
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    s = PRESETS[args.preset]
    layers = 1
    while sum(gb.nbytes(sh) for _, sh in dense_tensors(s, layers)) < args.size_gb * gb.GB:
        layers += 1
    work = args.workdir.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    dense = work / f"dense-{args.preset}-{layers}L"
    one = work / f"mixtral1-{args.preset}-{layers}L"
    shard = int(args.shard_gb * gb.GB)
    size = sum(gb.nbytes(sh) for _, sh in dense_tensors(s, layers))
    print(f"dense source: {args.preset} shapes, {layers} layers, {size / gb.GB:.2f} GB bf16")
    build(dense, dense_tensors(s, layers), llama_config(s, layers), shard)
    build(one, gb.tensor_shapes(s, layers), gb.mixtral_config(s, layers), shard)
    largest = max(gb.nbytes(sh) for _, sh in dense_tensors(s, layers))

    py = [sys.executable, "-m", "moegrow"]
    up = [*py, "upcycle", str(dense)]
    grow = [*py, "grow", str(one)]
    e = str(EXPERTS)
    runs = {
        "grow": ("grow --width 8 --noise 0", one, [*grow, "OUT", "--width", e, "--noise", "0"]),
        "upcycle": ("upcycle 8 experts", dense, [*up, "OUT", "--experts", e, "--top-k", "2"]),
        "grow-noise": (
            "grow --width 8 --noise 0.01",
            one,
            [*grow, "OUT", "--width", e, "--noise", "0.01"],
        ),
        "upcycle-noise": (
            "upcycle 8 experts --noise 0.01",
            dense,
            [*up, "OUT", "--experts", e, "--top-k", "2", "--noise", "0.01"],
        ),
    }
    if not args.skip_granularity:
        runs["upcycle-g2"] = (
            "upcycle 8 experts --granularity 2",
            dense,
            [*up, "OUT", "--experts", e, "--top-k", "2", "--granularity", "2"],
        )
    samples: dict[str, list[gb.Run]] = {key: [] for key in runs}
    for i in range(args.repeat):  # rounds: a drift of the machine's speed hits all alike
        if args.repeat > 1:
            print(f"round {i + 1} of {args.repeat}", flush=True)
        for key, (name, src, cmd) in runs.items():
            out = work / f"out-{key}"
            cmd = [str(out) if c == "OUT" else c for c in cmd] + ["--quiet"]
            gb.wait_until_quiet(args.quiet_wait)
            samples[key].append(gb.measure(name, cmd, out, src, logs, keep=False))
    results = {key: gb.median(s) for key, s in samples.items()}

    def ratio(a: str, b: str) -> float:  # median over rounds of the ratio within each round
        return statistics.median(
            x.total_seconds / y.total_seconds for x, y in zip(samples[a], samples[b])
        )

    print(f"\n{'run':<36} {'GB':>6} {'s':>7} {'cpu s':>7} {'other':>7} {'peak RSS':>9}")
    for r in results.values():
        u = r.usage
        print(
            f"{r.name:<36} {r.bytes / gb.GB:>6.2f} {r.total_seconds:>7.1f} {u.cpu_seconds:>7.1f} "
            f"{u.other_cpu_seconds:>7.1f} {(u.peak_rss or 0) / gb.GB:>7.2f} GB"
        )
    checks = [
        gb.Check(
            "upcycle time / grow time (copies)",
            ratio("upcycle", "grow"),
            "<=",
            RATIO_TARGET,
        ),
        gb.Check(
            "upcycle time / grow time (noise 0.01)",
            ratio("upcycle-noise", "grow-noise"),
            "<=",
            RATIO_TARGET,
        ),
    ]
    print(
        f"\nlargest dense tensor: {largest / gb.GB:.3f} GB; each run: {results['grow'].page_cache}"
    )
    for r in results.values():
        if r.contended:
            print(f"note: other work on the machine used CPU during {r.name!r}")
    for c in checks:
        print(c.line())
    report = {
        "source": {"preset": args.preset, "layers": layers, "bytes": size},
        "runs": {k: asdict(r) | {"total_seconds": r.total_seconds} for k, r in results.items()},
        "seconds_per_round": {k: [r.total_seconds for r in v] for k, v in samples.items()},
        "checks": [asdict(c) | {"ok": c.ok} for c in checks],
        "machine": {"cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (work / "upcycle_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {work / 'upcycle_bench.json'}")


if __name__ == "__main__":
    main()
