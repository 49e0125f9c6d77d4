"""Benchmark ``moegrow grow`` on a synthetic multi-GB Mixtral checkpoint.

Measures, in one run and on the same disk:

1. ``moegrow grow --depth 2 --width 2`` (defaults: interpose, noise 0.01): bytes written per
   second as a ratio to ``cp`` copying the same number of bytes (target >= 0.85), and the
   grower's peak RSS against the largest single tensor (target <= 2 x largest + 0.5 GB); the
   same growth with ``--noise 0`` and ``--depth 2`` alone show the copy path (target >= 0.9);
   every run is also shown against ``dd oflag=direct`` of as many bytes (what the disk itself
   takes past the page cache: ``cp`` goes through it, and on some machines that is the limit);
2. ``moegrow grow --depth 2`` against mergekit's passthrough merge of the same model written as
   one-layer slices ``[0,1],[0,1],[1,2],[1,2],...`` (target: moegrow >= 3x faster).

``--page-cache`` measures instead where the disk is not the bottleneck: width x2 of a ~1.7 GB
checkpoint with the ``table`` and ``torch`` samplers, with ``--noise 0`` and with ``--io cached``
(through the page cache; the default writes this 3 GB output past it), against ``cp``, with no
final sync (target: noise at >= 0.5 x ``cp``).

The source checkpoint has real Mixtral-8x7B shapes and random bf16 values. It is written shard
by shard with ``safetensors`` (no model is instantiated) and cached in ``--workdir`` for reruns.

Every command runs in a child process whose own peak RSS is measured by GNU time; its time
includes a ``sync`` afterwards, so no run is credited for data still in the page cache. Before
each run the page cache is dropped (when permitted) and the source is read once, so every run
starts with the same warm source. Each run waits (up to 5 minutes) for the rest of the machine
to be quiet; one during which it used over 10% of the CPUs anyway is measured again (up to 3
times in all) and flagged if it stays distorted. With ``--repeat N`` the commands run in N
rounds and the medians are reported. Grown outputs are deleted after measuring unless ``--keep``.

mergekit is an optional benchmark dependency, installed in its own venv::

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install torch==2.13.0 mergekit

Run (about 5 minutes a round; needs 5x the source size free on disk, 9x with ``--keep``)::

    .venv/bin/python bench/grow.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
GB = 10**9
RATIO_TARGET = 0.85
"""Growth with noise (the default 0.01), bytes/s as a ratio to ``cp``."""
COPY_RATIO_TARGET = 0.9
"""Growth without noise (copies, zeros), bytes/s as a ratio to ``cp``."""
CACHED_RATIO_TARGET = 0.5
"""Growth with noise, as a ratio to ``cp``, when the output fits in the page cache."""
SPEEDUP_TARGET = 3.0
RSS_SLACK = GB // 2
GROW_OPTIONS = ("--depth", "2", "--width", "2")
OTHER_CPU_LIMIT = 0.1
ATTEMPTS = 3
QUIET_WAIT_LIMIT = 300.0
GNU_TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Shapes:
    """The shapes of a Mixtral model (everything but the layer count)."""

    hidden: int
    intermediate: int
    experts: int
    top_k: int
    heads: int
    kv_heads: int
    vocab: int


PRESETS = {
    # mistralai/Mixtral-8x7B-v0.1: one layer is ~2.9 GB in bf16.
    "mixtral-8x7b": Shapes(4096, 14336, 8, 2, 32, 8, 32000),
    # ~1.7 GB in 2 layers: a growth whose output fits in the page cache (``--page-cache``).
    "mixtral-cache": Shapes(2048, 7168, 8, 2, 16, 8, 32000),
    # A few MB, to check the script itself quickly.
    "mixtral-tiny": Shapes(256, 512, 8, 2, 8, 2, 1000),
}


@dataclass
class Usage:
    """What a command used."""

    seconds: float
    cpu_seconds: float
    """User + system CPU time of the command (all its threads)."""
    peak_rss: int | None
    other_cpu_seconds: float
    """CPU time the rest of the machine used while the command ran (other processes, kernel
    writeback): a large value means the numbers are distorted by other work."""

    @classmethod
    def total(cls, usages: list[Usage]) -> Usage:
        """Several commands run one after the other."""
        return cls(
            sum(u.seconds for u in usages),
            sum(u.cpu_seconds for u in usages),
            max((u.peak_rss or 0) for u in usages) or None,
            sum(u.other_cpu_seconds for u in usages),
        )


@dataclass
class Run:
    """One measured command: the bytes it wrote and what it used, plus the ``sync`` after it."""

    name: str
    command: str
    bytes: int
    usage: Usage
    sync_seconds: float
    page_cache: str

    @property
    def total_seconds(self) -> float:
        return self.usage.seconds + self.sync_seconds

    @property
    def rate(self) -> float:
        return self.bytes / self.total_seconds

    @property
    def contended(self) -> bool:
        """Whether the rest of the machine used more than :data:`OTHER_CPU_LIMIT` of its CPUs
        (and over a second of CPU time) while the command ran."""
        capacity = self.usage.seconds * (os.cpu_count() or 1)
        return self.usage.other_cpu_seconds > max(1.0, OTHER_CPU_LIMIT * capacity)


# -- the synthetic checkpoint ----------------------------------------------------------------


def tensor_shapes(s: Shapes, layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of a Mixtral checkpoint, in the order of a Hugging Face save."""
    head_dim = s.hidden // s.heads
    out = [("model.embed_tokens.weight", (s.vocab, s.hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (s.hidden,)),
            (p + "self_attn.q_proj.weight", (s.heads * head_dim, s.hidden)),
            (p + "self_attn.k_proj.weight", (s.kv_heads * head_dim, s.hidden)),
            (p + "self_attn.v_proj.weight", (s.kv_heads * head_dim, s.hidden)),
            (p + "self_attn.o_proj.weight", (s.hidden, s.heads * head_dim)),
            (p + "post_attention_layernorm.weight", (s.hidden,)),
            (p + "block_sparse_moe.gate.weight", (s.experts, s.hidden)),
        ]
        for e in range(s.experts):
            q = f"{p}block_sparse_moe.experts.{e}."
            out += [
                (q + "w1.weight", (s.intermediate, s.hidden)),
                (q + "w2.weight", (s.hidden, s.intermediate)),
                (q + "w3.weight", (s.intermediate, s.hidden)),
            ]
    out += [("model.norm.weight", (s.hidden,)), ("lm_head.weight", (s.vocab, s.hidden))]
    return out


def nbytes(shape: tuple[int, ...]) -> int:
    """Bytes of a bf16 tensor."""
    return 2 * torch.Size(shape).numel()


def checkpoint_bytes(s: Shapes, layers: int) -> int:
    return sum(nbytes(shape) for _, shape in tensor_shapes(s, layers))


def layers_for_size(s: Shapes, size: int) -> int:
    """The fewest layers that make a checkpoint of at least ``size`` bytes."""
    layers = 1
    while checkpoint_bytes(s, layers) < size:
        layers += 1
    return layers


def mixtral_config(s: Shapes, layers: int) -> dict:
    """mistralai/Mixtral-8x7B-v0.1's config.json with these shapes and layer count."""
    return {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": s.hidden,
        "initializer_range": 0.02,
        "intermediate_size": s.intermediate,
        "max_position_embeddings": 32768,
        "model_type": "mixtral",
        "num_attention_heads": s.heads,
        "num_experts_per_tok": s.top_k,
        "num_hidden_layers": layers,
        "num_key_value_heads": s.kv_heads,
        "num_local_experts": s.experts,
        "output_router_logits": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.02,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": s.vocab,
    }


def plan_shards(
    tensors: list[tuple[str, tuple[int, ...]]], shard_bytes: int
) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Cut the tensors, in order, into shards of about ``shard_bytes``."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        if shards[-1] and size + nbytes(shape) > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes(shape)
    return shards


def random_tensor(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Random bf16 values: norms near 1, everything else N(0, 0.02^2)."""
    mean = 1.0 if name.endswith("norm.weight") else 0.0
    return torch.empty(shape, dtype=torch.bfloat16).normal_(mean, 0.02, generator=gen)


def build_checkpoint(folder: Path, s: Shapes, layers: int, shard_bytes: int) -> None:
    """Write the checkpoint one shard at a time (one shard in memory at most); a marker file
    written last makes a complete folder reusable."""
    marker = folder / ".bench-complete"
    key = json.dumps({"shapes": asdict(s), "layers": layers, "shard_bytes": shard_bytes})
    if marker.is_file() and marker.read_text() == key:
        print(f"using cached source {folder}")
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shards = plan_shards(tensor_shapes(s, layers), shard_bytes)
    gen = torch.Generator().manual_seed(0)
    weight_map = {}
    start = time.perf_counter()
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: random_tensor(name, shape, gen) for name, shape in shard}
        save_file(tensors, folder / file, metadata={"format": "pt"})
        del tensors
        weight_map.update((name, file) for name, _ in shard)
        print(f"  wrote {file} ({i + 1}/{len(shards)})", flush=True)
    index = {"metadata": {"total_size": checkpoint_bytes(s, layers)}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(mixtral_config(s, layers), indent=2))
    marker.write_text(key)
    print(f"built {folder} in {time.perf_counter() - start:.0f} s")


# -- measuring -------------------------------------------------------------------------------


def prepare_page_cache(src: Path) -> str:
    """Give every run the same start: drop the page cache when permitted, then read the source
    once so that it is cached. Returns how the cache was prepared."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        how = "page cache dropped, then source read once (warm source)"
    except OSError:
        how = "page cache could not be dropped (not permitted); source read once (warm source)"
    buf = bytearray(64 << 20)
    for f in sorted(src.glob("*.safetensors")):
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return how


def warm_page_cache(src: Path) -> str:
    """For outputs that fit in the page cache: write back what earlier runs left dirty (not
    timed), then read the source once so that it is cached."""
    os.sync()
    buf = bytearray(64 << 20)
    for f in sorted(src.glob("*.safetensors")):
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return "dirty pages written back, source read once (warm); no final sync: output in page cache"


def machine_cpu_seconds() -> float:
    """CPU time all CPUs of the machine have spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def run_child(cmd: list[str], log: Path) -> Usage:
    """Run ``cmd`` with its output in ``log`` and measure it. The peak RSS is the command's own,
    from GNU time: ``wait4`` alone would report at least this process's RSS, which a spawned
    child inherits as its high-water mark."""
    rss_file = log.with_suffix(".maxrss")
    with open(log, "wb") as out:
        machine = machine_cpu_seconds()
        start = time.perf_counter()
        pid = os.posix_spawn(
            GNU_TIME,
            [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - start
        machine = machine_cpu_seconds() - machine
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{shlex.join(cmd)} failed with exit code {code}:\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime  # GNU time's and, once reaped, the command's
    peak_rss = int(rss_file.read_text().split()[-1]) * 1024
    return Usage(seconds, cpu, peak_rss, max(machine - cpu, 0.0))


def timed_sync() -> float:
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def measure(
    name: str, cmd: list[str], out: Path, src: Path, logs: Path, keep: bool, cached: bool = False
) -> Run:
    """Run one growth command into ``out`` and measure it; ``out`` is deleted unless ``keep``.
    ``cached``: the output stays in the page cache (no final sync is timed)."""
    shutil.rmtree(out, ignore_errors=True)
    cache = warm_page_cache(src) if cached else prepare_page_cache(src)
    print(f"running {name}: {shlex.join(cmd)}", flush=True)
    u = run_child(cmd, logs / f"{out.name}.log")
    run = Run(name, shlex.join(cmd), folder_bytes(out), u, 0.0 if cached else timed_sync(), cache)
    if not keep:
        shutil.rmtree(out)
    print(f"  {run.bytes / GB:.2f} GB in {run.total_seconds:.1f} s", flush=True)
    return run


def measure_cp(src: Path, dest: Path, target: int, logs: Path, cached: bool = False) -> Run:
    """``cp`` the source shards round-robin into ``dest`` until ``target`` bytes are copied."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files = sorted(src.glob("*.safetensors"))
    cache = warm_page_cache(src) if cached else prepare_page_cache(src)
    print(f"running cp: {target / GB:.2f} GB of source shards, round-robin", flush=True)
    copied = 0
    usages = []
    for i, f in enumerate(itertools.cycle(files)):
        if copied >= target:
            break
        cp = ["cp", str(f), str(dest / f"{i:04d}-{f.name}")]
        usages.append(run_child(cp, logs / "cp.log"))
        copied += f.stat().st_size
    sync = 0.0 if cached else timed_sync()
    run = Run("cp (reference)", "cp SHARD COPY", copied, Usage.total(usages), sync, cache)
    shutil.rmtree(dest)
    print(f"  {run.bytes / GB:.2f} GB in {run.total_seconds:.1f} s", flush=True)
    return run


def measure_disk(src: Path, dest: Path, target: int, logs: Path) -> Run:
    """``dd oflag=direct`` of ``target`` bytes of zeros in 8 MiB blocks into a new file: what
    the disk itself takes in sequential writes past the page cache."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    cache = prepare_page_cache(src)
    blocks = -(-target // (8 << 20))
    cmd = ["dd", "if=/dev/zero", f"of={dest / 'zeros'}", "bs=8M", f"count={blocks}"]
    cmd += ["oflag=direct", "conv=fsync", "status=none"]
    print(f"running {shlex.join(cmd)}", flush=True)
    usage = run_child(cmd, logs / "dd.log")
    run = Run("dd oflag=direct (the disk)", shlex.join(cmd), blocks * (8 << 20), usage,
              timed_sync(), cache)  # fmt: skip
    shutil.rmtree(dest)
    print(f"  {run.bytes / GB:.2f} GB in {run.total_seconds:.1f} s", flush=True)
    return run


def wait_until_quiet(limit: float = QUIET_WAIT_LIMIT) -> None:
    """Wait (up to ``limit`` seconds) until the rest of the machine has used under
    :data:`OTHER_CPU_LIMIT` of the CPUs for 5 seconds in a row."""
    deadline = time.monotonic() + limit
    quiet = 0
    while quiet < 5 and time.monotonic() < deadline:
        before = machine_cpu_seconds()
        time.sleep(1)
        busy = (machine_cpu_seconds() - before) / (os.cpu_count() or 1)
        quiet = quiet + 1 if busy < OTHER_CPU_LIMIT else 0


def uncontended(
    measure_once: Callable[[], Run], wait: float = QUIET_WAIT_LIMIT, attempts: int = ATTEMPTS
) -> Run:
    """Measure once the machine is quiet (waiting up to ``wait`` seconds); measure again (up to
    ``attempts`` times in all) while other work on the machine distorts the measurement."""
    wait_until_quiet(wait)
    run = measure_once()
    for _ in range(attempts - 1):
        if not run.contended:
            break
        print("  other work used the CPUs meanwhile: measuring again", flush=True)
        wait_until_quiet(wait)
        run = measure_once()
    return run


def median(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.total_seconds)[len(runs) // 2]


# -- mergekit --------------------------------------------------------------------------------


def mergekit_version(python: Path | None) -> str | None:
    """The version of mergekit importable by ``python``, or None."""
    if python is None or not python.exists():
        return None
    probe = "import importlib.metadata as m, mergekit; print(m.version('mergekit'))"
    r = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def passthrough_yaml(src: Path, layers: int, depth: int) -> str:
    """A passthrough merge repeating every layer ``depth`` times as one-layer slices."""
    slices = "".join(
        f"  - sources:\n      - model: {src}\n        layer_range: [{i}, {i + 1}]\n"
        for i in range(layers)
        for _ in range(depth)
    )
    return f"merge_method: passthrough\ndtype: bfloat16\nslices:\n{slices}"


def mergekit_command(python: Path, config: Path, out: Path) -> list[str]:
    """``mergekit-yaml`` with the options that made it fastest on CPU here (2 cores, 12 GB out):
    async writes of 1B-parameter shards (loading overlaps writing; larger or smaller shards, more
    write threads or no async were 10-70% slower), and ``--clone-tensors`` (a repeated layer
    shares memory with its twin; without it mergekit clones the whole shard on save)."""
    return [
        str(python.parent / "mergekit-yaml"),
        str(config),
        str(out),
        "--device",
        "cpu",
        "--async-write",
        "--out-shard-size",
        "1B",
        "--clone-tensors",
        "--no-copy-tokenizer",
        "--no-write-model-card",
        "--quiet",
    ]


# -- report ----------------------------------------------------------------------------------


@dataclass
class Check:
    """A measurement against its target."""

    name: str
    value: float
    op: str
    target: float
    unit: str = ""

    @property
    def ok(self) -> bool:
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    def line(self) -> str:
        scale = GB if self.unit == "GB" else 1
        value = f"{self.value / scale:.2f} {self.unit}".strip()
        target = f"{self.op} {self.target / scale:.2f} {self.unit}".strip()
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:<44} {value:>9}   target {target}"


def checks(samples: dict[str, list[Run]], largest: int) -> list[Check]:
    """The project's targets, measured: ratios are medians of the ratios within each round, the
    peak RSS the highest of all rounds."""

    def ratio(key: str) -> float:
        return statistics.median(g.rate / c.rate for g, c in zip(samples[key], samples["cp"]))

    grow = samples["grow"]
    rss = max(g.usage.peak_rss or 0 for g in grow)
    if "torch" in samples:  # --page-cache
        return [
            Check(
                "width x2 noise bytes/s / cp (page cache)", ratio("grow"), ">=", CACHED_RATIO_TARGET
            ),
            Check(
                "grow peak RSS vs 2 x largest tensor + 0.5 GB",
                rss,
                "<=",
                2 * largest + RSS_SLACK,
                "GB",
            ),
        ]
    out = [
        Check("grow (noise) bytes/s as a ratio to cp", ratio("grow"), ">=", RATIO_TARGET),
        Check("grow --noise 0 bytes/s as a ratio to cp", ratio("noise0"), ">=", COPY_RATIO_TARGET),
        Check("grow --depth 2 bytes/s as a ratio to cp", ratio("depth"), ">=", COPY_RATIO_TARGET),
        Check(
            "grow peak RSS vs 2 x largest tensor + 0.5 GB", rss, "<=", 2 * largest + RSS_SLACK, "GB"
        ),
    ]
    if "mergekit" in samples:
        pairs = zip(samples["mergekit"], samples["depth"])
        speedup = statistics.median(m.total_seconds / d.total_seconds for m, d in pairs)
        out.append(Check("depth x2 speedup over mergekit", speedup, ">=", SPEEDUP_TARGET))
    return out


def spread(samples: dict[str, list[Run]]) -> list[str]:
    """Each run's ratio to cp in every round (the spread behind the medians)."""
    return [
        f"{runs[0].name.strip():<34} x cp per round: "
        + ", ".join(f"{r.rate / c.rate:.3f}" for r, c in zip(runs, samples["cp"]))
        for key, runs in samples.items()
        if key != "cp"
    ]


def print_table(runs: dict[str, Run], results: list[Check], largest: int) -> None:
    cp_rate = runs["cp"].rate
    disk = runs.get("disk")
    print()
    print(
        f"{'run':<34} {'GB':>6} {'s':>6} {'sync s':>6} {'cpu s':>6} {'other':>6} {'GB/s':>6} "
        f"{'x cp':>5} {'x disk' if disk else '':>6} {'peak RSS':>9}"
    )
    for r in runs.values():
        u = r.usage
        rss = f"{u.peak_rss / GB:.2f} GB" if u.peak_rss else "-"
        of_disk = f"{r.rate / disk.rate:.2f}" if disk else ""
        print(
            f"{r.name:<34} {r.bytes / GB:>6.2f} {r.total_seconds:>6.1f} {r.sync_seconds:>6.1f} "
            f"{u.cpu_seconds:>6.1f} {u.other_cpu_seconds:>6.1f} {r.rate / GB:>6.3f} "
            f"{r.rate / cp_rate:>5.2f} {of_disk:>6} {rss:>9}"
        )
    print(
        "\ns: wall time including the sync after the command; cpu s: the command's user+system "
        "time;\nother: CPU seconds the rest of the machine used meanwhile (kernel writeback, other "
        f"processes)\neach run: {runs['cp'].page_cache}"
    )
    print(f"largest source tensor: {largest / GB:.3f} GB")
    for r in runs.values():
        if r.contended:
            print(f"WARNING: other work on the machine distorted {r.name!r}")
    print()
    for c in results:
        print(c.line())


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_mk = REPO / ".bench-venv" / "bin" / "python"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir",
        type=Path,
        default=REPO / ".bench-cache",
        help="cached source, outputs, logs and grow_bench.json (default: .bench-cache)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="mixtral-8x7b",
        help="model shapes (mixtral-tiny: a seconds-long check of this script)",
    )
    p.add_argument("--size-gb", type=float, default=4.5, help="smallest source size (GB)")
    p.add_argument("--layers", type=int, help="source layers (default: enough for --size-gb)")
    p.add_argument("--shard-gb", type=float, default=2.0, help="source shard size (GB)")
    p.add_argument(
        "--mergekit-python",
        type=Path,
        default=default_mk if default_mk.exists() else None,
        help="python of a venv with mergekit (default: .bench-venv/bin/python if present)",
    )
    p.add_argument("--skip-mergekit", action="store_true", help="no mergekit comparison")
    p.add_argument(
        "--repeat", type=int, default=1, help="rounds of measurements; medians are reported"
    )
    p.add_argument("--keep", action="store_true", help="keep the grown checkpoints")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT_LIMIT,
        help=f"seconds to wait for a quiet machine before each run (default {QUIET_WAIT_LIMIT:g})",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=ATTEMPTS,
        help=f"runs of a command while other work distorts it (default {ATTEMPTS})",
    )
    p.add_argument(
        "--page-cache",
        action="store_true",
        help="instead: width x2 of a ~1.7 GB checkpoint (preset mixtral-cache, 2 layers) with "
        "the table and torch samplers and --noise 0, against cp, all within the page cache "
        "(no final sync): where the disk is not the bottleneck",
    )
    return p.parse_args(argv)


def make_benches(
    args: argparse.Namespace, src: Path, layers: int, work: Path, mergekit: str | None
) -> dict[str, Callable[[], Run]]:
    """Each measured command, as a function measuring it once. ``cp`` copies as many bytes as
    the last growth wrote."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    grown: list[Run] = []

    def moegrow(name: str, out: Path, *options: str) -> Callable[[], Run]:
        cmd = [sys.executable, "-m", "moegrow", "grow", str(src), str(out), *options, "--quiet"]
        return lambda: measure(name, cmd, out, src, logs, args.keep)

    def grow() -> Run:
        grown.append(moegrow("moegrow depth x2 + width x2", work / "out-grow", *GROW_OPTIONS)())
        return grown[-1]

    if args.page_cache:
        width = ("--width", "2")

        def cached(name: str, out: Path, *options: str) -> Callable[[], Run]:
            cmd = [sys.executable, "-m", "moegrow", "grow", str(src), str(out), *options, "--quiet"]
            return lambda: measure(name, cmd, out, src, logs, args.keep, cached=True)

        def grow_cached() -> Run:
            grown.append(cached("width x2 (noise, table sampler)", work / "out-cw", *width)())
            return grown[-1]

        return {
            "grow": grow_cached,
            "torch": cached("  ... --sampler torch", work / "out-ct", *width, "--sampler", "torch"),
            "noise0": cached("  ... --noise 0", work / "out-c0", *width, "--noise", "0"),
            "io-cached": cached("  ... --io cached", work / "out-cc", *width, "--io", "cached"),
            "cp": lambda: measure_cp(src, work / "out-cp", grown[-1].bytes, logs, cached=True),
        }
    benches = {
        "grow": grow,
        "noise0": moegrow(
            "  ... with --noise 0 (copies only)", work / "out-noise0", *GROW_OPTIONS, "--noise", "0"
        ),
        "cp": lambda: measure_cp(src, work / "out-cp", grown[-1].bytes, logs),
        "disk": lambda: measure_disk(src, work / "out-dd", grown[-1].bytes, logs),
        "depth": moegrow("moegrow depth x2", work / "out-depth", "--depth", "2"),
    }
    if mergekit:
        config = work / "mergekit-passthrough.yml"
        config.write_text(passthrough_yaml(src, layers, depth=2))
        out = work / "out-mergekit"
        cmd = mergekit_command(args.mergekit_python, config, out)
        name = f"mergekit {mergekit} passthrough"
        benches["mergekit"] = lambda: measure(name, cmd, out, src, logs, args.keep)
    return benches


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} (GNU time) is needed to measure peak RSS: apt install time")
    if args.page_cache:
        if args.preset == "mixtral-8x7b":  # the default: the page-cache-sized one instead
            args.preset = "mixtral-cache"
        args.layers, args.skip_mergekit = args.layers or 2, True
    shapes = PRESETS[args.preset]
    layers = args.layers or layers_for_size(shapes, int(args.size_gb * GB))
    work = args.workdir.resolve()
    src = work / f"src-{args.preset}-{layers}L"
    size = checkpoint_bytes(shapes, layers)
    print(f"source: {args.preset} shapes, {layers} layers, {size / GB:.2f} GB bf16")
    build_checkpoint(src, shapes, layers, int(args.shard_gb * GB))
    largest = max(nbytes(shape) for _, shape in tensor_shapes(shapes, layers))

    version = None if args.skip_mergekit else mergekit_version(args.mergekit_python)
    if not (version or args.skip_mergekit):
        print(
            f"mergekit comparison skipped: no mergekit importable by {args.mergekit_python}; "
            "install it with: python3 -m venv .bench-venv && "
            ".bench-venv/bin/pip install torch==2.13.0 mergekit"
        )
    benches = make_benches(args, src, layers, work, version)
    samples: dict[str, list[Run]] = {key: [] for key in benches}
    for i in range(args.repeat):  # rounds, so that a drift of the machine's speed hits all alike
        if args.repeat > 1:
            print(f"round {i + 1} of {args.repeat}")
        for key, measure_once in benches.items():
            samples[key].append(uncontended(measure_once, args.quiet_wait, args.attempts))
    runs = {key: median(s) for key, s in samples.items()}

    results = checks(samples, largest)
    print_table(runs, results, largest)
    print("\n".join(["", *spread(samples)]))
    report = {
        "source": {"preset": args.preset, "layers": layers, "bytes": size, "path": str(src)},
        "largest_tensor_bytes": largest,
        "runs": {
            k: asdict(r)
            | {"total_seconds": r.total_seconds, "bytes_per_s": r.rate, "contended": r.contended}
            for k, r in runs.items()
        },
        "seconds_per_round": {k: [r.total_seconds for r in v] for k, v in samples.items()},
        "ratio_to_cp_per_round": {
            k: [r.rate / c.rate for r, c in zip(v, samples["cp"])] for k, v in samples.items()
        },
        "ratio_to_disk_per_round": {
            k: [r.rate / d.rate for r, d in zip(v, samples["disk"])] for k, v in samples.items()
        }
        if "disk" in samples
        else None,
        "checks": [asdict(c) | {"ok": c.ok} for c in results],
        "mergekit_version": version,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "torch": torch.__version__,
    }
    name = "grow_bench_page_cache.json" if args.page_cache else "grow_bench.json"
    (work / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {work / name}")


if __name__ == "__main__":
    main()
