"""Benchmark ``moegrow train`` against a plain transformers + AdamW loop on the same model.

For each preset (tiny, small) one checkpoint is initialised (same seed) and trained, in the same
process, on exactly the same batches by three loops:

* ``moegrow``: :func:`moegrow.training.train.train` as shipped. Per step it also computes the expert
  loads of every router, the global-batch balance loss, the aux-loss-free bias update (when the
  router has a bias), the LR schedule, balance metrics and a JSONL metrics line; it runs a
  validation pass and saves a checkpoint at the end (both excluded from the timing);
* ``plain``: ``AutoModelForCausalLM.from_pretrained(dir, dtype=float32)`` with transformers'
  default experts implementation, ``torch.optim.AdamW(lr, betas=(0.9, 0.95),
  weight_decay=0.1)``, ``model(input_ids, labels=...)``, backward, ``clip_grad_norm_(1.0)``,
  step, zero_grad, ``loss.item()``;
* ``plain-eager``: the same plain loop with ``experts_implementation="eager"`` (the kernel
  moegrow picks on a CPU), so that its ratio isolates loop overhead from kernel choice.

The loops are interleaved step by step, so that all three see the same load on a shared,
noisy machine: before moegrow's step s, one step of each plain loop runs on batch s (their order
alternates), called from the moegrow loop's request for the step's learning rate (``lr_at``). A
moegrow step is timed from the end of those plain steps to the next request (everything moegrow
does per step, metrics logging included); its last step, which also runs the validation pass, is
not timed. A plain step is timed around the whole iteration. The first ``--warmup`` steps of
every run are dropped; each loop's tokens/s is from the best of its ``--repeats`` runs' median
step times. MFU = tokens/s x FLOPs per token (:mod:`moegrow.flops`, the same for every
loop) / the fp32 matmul peak measured once in this process
(:func:`moegrow.training.perf.measured_matmul_peak`), so MFU ratios equal throughput ratios.

With ``--device cuda`` every loop runs on the GPU with bf16 autocast (weights and optimizer in
float32, as ``moegrow train`` does there), step times include a device synchronisation, and MFU
is against the bf16 peak of 8192^3 matmuls measured in the same process.

Run (about five minutes on two idle cores)::

    .venv/bin/python bench/train.py

The data folder (from the standard library's pydoc topics, no download), the checkpoints and
``train_bench.json`` live in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import torch
import transformers

import moegrow.modeling.loading
import moegrow.training.train
from moegrow.data.sampling import BlockSampler
from moegrow.families import family_for
from moegrow.flops import ParamStats, param_stats
from moegrow.io.checkpoint import Checkpoint
from moegrow.modeling.presets import init_checkpoint
from moegrow.training.perf import measured_matmul_peak
from moegrow.training.train import TrainOptions, train

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.0
LOOPS = ("moegrow", "plain", "plain-eager")
DESCRIPTIONS = {
    "moegrow": "moegrow.training.train.train(): forward with router logits, fused head + "
    "CE (lm_loss.py) "
    "+ balance loss, expert loads, backward, clip 1.0, fused AdamW (no decay on norms), LR "
    "schedule, metrics JSONL line",
    "plain": "from_pretrained (transformers' default experts kernel), model(input_ids, labels) "
    "loss, backward, clip 1.0, AdamW(0.9, 0.95, wd 0.1) step, zero_grad, loss.item()",
    "plain-eager": "the plain loop with experts_implementation='eager'",
}
LR = 3e-4
SEED = 0


@dataclass
class LoopResult:
    """One loop on one preset: the best (lowest) of its repeats' median step times."""

    loop: str
    experts: str
    step_seconds: float
    tokens_per_s: float
    mfu: float
    first_loss: float
    repeat_medians: list[float]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=REPO / ".bench-cache" / "train")
    p.add_argument("--data", type=Path, help="a prepared data folder (default: pydoc topics)")
    p.add_argument("--vocab", type=int, default=8192, help="vocabulary of the default data")
    p.add_argument("--presets", nargs="+", choices=["tiny", "small"], default=["tiny", "small"])
    p.add_argument("--tiny-steps", type=int, default=30)
    p.add_argument("--small-steps", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--warmup", type=int, default=3, help="steps dropped from each run")
    p.add_argument("--repeats", type=int, default=2, help="runs of each loop per preset")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: every loop runs on the GPU with bf16 autocast; MFU against the bf16 peak",
    )
    args = p.parse_args(argv)
    if min(args.tiny_steps, args.small_steps) < args.warmup + 2:
        p.error("every preset needs at least --warmup + 2 steps")
    return args


# -- data and models ---------------------------------------------------------------------------


def pydoc_data(workdir: Path, vocab: int) -> Path:
    """A prepared data folder of the standard library's pydoc topics (cached in ``workdir``)."""
    import pydoc_data.topics

    from moegrow.data.prepare import prepare

    out = workdir / f"pydoc-v{vocab}"
    if (out / "manifest.json").is_file():
        return out
    texts = workdir / "pydoc-texts"
    texts.mkdir(parents=True, exist_ok=True)
    for i, (name, text) in enumerate(sorted(pydoc_data.topics.topics.items())):
        (texts / f"{i:03d}-{name}.txt").write_text(text)
    prepare(out, texts=[str(texts / "*.txt")], vocab_size=vocab, progress=False, overwrite=True)
    return out


def model_stats(model_dir: Path) -> ParamStats:
    """Parameter counts and FLOPs per token of a checkpoint, as ``moegrow train`` counts them."""
    with Checkpoint(model_dir) as ckpt:
        tensors = ((i.name, i.dtype, i.shape) for i in ckpt.tensors.values())
        return param_stats(tensors, family_for(ckpt.config), ckpt.config)


def moegrow_experts(model_dir: Path, device: torch.device) -> str:
    """The experts implementation ``moegrow train`` loads ``model_dir`` with on ``device``."""
    return moegrow.modeling.loading.load_model(model_dir, device).config._experts_implementation


def token_blocks(data_dir: Path, steps: int, batch: int, seq_len: int) -> list[torch.Tensor]:
    """The ``[batch, seq_len + 1]`` token blocks moegrow's training loop takes at each step."""
    from moegrow.data.token_shards import TokenData

    sampler = BlockSampler(TokenData(data_dir).split("train"), seq_len, SEED)
    return [sampler.rows(step * batch, batch) for step in range(steps)]


# -- the loops ---------------------------------------------------------------------------------


class PlainLoop:
    """A plain transformers + AdamW training loop that runs one timed step per call."""

    def __init__(self, model_dir: Path, experts: str | None, device: torch.device):
        """``experts``: the experts implementation to ask for (None: transformers' default)."""
        from transformers import AutoModelForCausalLM

        kwargs = {"experts_implementation": experts} if experts else {}
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)
        self.model.to(device).train()
        self.device = device
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1
        )
        self.experts: str = self.model.config._experts_implementation
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, rows: torch.Tensor) -> None:
        """One optimizer step on the ``[batch, seq_len + 1]`` token block ``rows``."""
        t0 = time.perf_counter()
        rows = rows.to(self.device)
        inputs, targets = rows[:, :-1], rows[:, 1:].contiguous()
        # shift_labels: predict rows[:, 1:], every position of the block, as moegrow does.
        with torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(input_ids=inputs, labels=inputs, shift_labels=targets, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.losses.append(out.loss.item())
        self.times.append(time.perf_counter() - t0)


def interleaved_run(
    model_dir: Path, data_dir: Path, run_dir: Path, plains: list[PlainLoop], steps: int, args
) -> tuple[list[float], float]:
    """Train ``model_dir`` with moegrow for ``steps`` steps, running one step of every plain
    loop on the same batch before each moegrow step (so that all loops see the same load on a
    shared machine). Returns moegrow's step times (all but the last) and its first loss.

    The plain steps run inside the loop's call of ``lr_at``, so moegrow's own ``tokens_per_s``
    and ``mfu`` metrics include them; the times returned here do not."""
    blocks = token_blocks(data_dir, steps, args.batch_size, args.seq_len)
    device = torch.device(args.device)
    lr_at = moegrow.training.train.lr_at
    times: list[float] = []
    resumed: float | None = None  # when the current moegrow step resumed after the plain steps

    def interleave(step: int, **kwargs) -> float:
        nonlocal resumed
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # a step's time includes all of its kernels
        if resumed is not None:
            times.append(time.perf_counter() - resumed)
        for plain in plains if step % 2 == 0 else plains[::-1]:
            plain.step(blocks[step])
        resumed = time.perf_counter()
        return lr_at(step, **kwargs)

    opts = TrainOptions(
        tokens=steps * args.batch_size * args.seq_len,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=LR,
        seed=SEED,
        eval_tokens=args.batch_size * args.seq_len,
        device=args.device,
        progress=False,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        with mock.patch.object(moegrow.training.train, "lr_at", interleave):
            result = train(model_dir, data_dir, run_dir, opts)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return times, result.metrics[0]["loss"]


# -- measuring and reporting ---------------------------------------------------------------


def bench_preset(preset: str, data_dir: Path, peak: float, args) -> dict:
    """Run the three loops, interleaved, ``--repeats`` times on ``preset``; results for the
    table and the JSON report."""
    work = args.workdir.resolve()
    model_dir = init_checkpoint(
        work / "models" / preset, preset, tokenizer=data_dir, seed=SEED, overwrite=True
    )
    stats = model_stats(model_dir)
    flops_per_token = stats.flops_per_token(args.seq_len)
    steps = args.tiny_steps if preset == "tiny" else args.small_steps
    device = torch.device(args.device)
    repeat_medians: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    for r in range(args.repeats):
        plains = {
            "plain": PlainLoop(model_dir, None, device),
            "plain-eager": PlainLoop(model_dir, "eager", device),
        }
        run_dir = work / "runs" / preset
        moegrow_times, moegrow_loss = interleaved_run(
            model_dir, data_dir, run_dir, list(plains.values()), steps, args
        )
        timed = {"moegrow": moegrow_times} | {k: p.times for k, p in plains.items()}
        for loop, loop_times in timed.items():
            repeat_medians[loop].append(statistics.median(loop_times[args.warmup :]))
        medians = ", ".join(f"{k} {v[-1]:.4f} s" for k, v in repeat_medians.items())
        print(f"  {preset} repeat {r + 1}: median step {medians}")
    first_loss = {"moegrow": moegrow_loss} | {k: p.losses[0] for k, p in plains.items()}
    experts = {"moegrow": moegrow_experts(model_dir, device)} | {
        k: p.experts for k, p in plains.items()
    }
    tokens_per_step = args.batch_size * args.seq_len
    loops = {}
    for loop in LOOPS:
        best = min(repeat_medians[loop])
        rate = tokens_per_step / best
        loops[loop] = LoopResult(
            loop=loop,
            experts=experts[loop],
            step_seconds=best,
            tokens_per_s=rate,
            mfu=rate * flops_per_token / peak,
            first_loss=first_loss[loop],
            repeat_medians=repeat_medians[loop],
        )
    return {
        "preset": preset,
        "steps": steps,
        "total_params": stats.total,
        "active_params": stats.active,
        "flops_per_token": flops_per_token,
        "loops": {k: asdict(v) for k, v in loops.items()},
        "ratio_vs_plain": loops["moegrow"].tokens_per_s / loops["plain"].tokens_per_s,
        "ratio_vs_plain_eager": loops["moegrow"].tokens_per_s / loops["plain-eager"].tokens_per_s,
    }


def print_table(rows: list[dict], peak: float, device: str) -> None:
    """The results as a fixed-width table."""
    header = (
        f"{'preset':<7}{'params total/active':>22}{'tok/s moegrow':>15}{'tok/s plain':>13}"
        f"{'tok/s eager':>13}{'x plain':>9}{'x eager':>9}{'MFU moegrow':>13}{'MFU plain':>11}"
        f"{'MFU eager':>11}"
    )
    kind = "bf16 matmul peak (8192^3" if device == "cuda" else "fp32 matmul peak (1024^3"
    print(f"\n{kind}, measured in this run): {peak / 1e9:.1f} GFLOP/s")
    print(header)
    print("-" * len(header))
    for row in rows:
        loops = row["loops"]
        params = f"{row['total_params'] / 1e6:.2f}M/{row['active_params'] / 1e6:.2f}M"
        print(
            f"{row['preset']:<7}{params:>22}"
            f"{loops['moegrow']['tokens_per_s']:>15.0f}{loops['plain']['tokens_per_s']:>13.0f}"
            f"{loops['plain-eager']['tokens_per_s']:>13.0f}"
            f"{row['ratio_vs_plain']:>8.2f}x{row['ratio_vs_plain_eager']:>8.2f}x"
            f"{loops['moegrow']['mfu']:>13.2%}{loops['plain']['mfu']:>11.2%}"
            f"{loops['plain-eager']['mfu']:>11.2%}"
        )
    print()
    for loop, text in DESCRIPTIONS.items():
        print(f"{loop:<11} [{rows[0]['loops'][loop]['experts']} experts] {text}")
    for row in rows:
        losses = ", ".join(f"{k} {v['first_loss']:.4f}" for k, v in row["loops"].items())
        print(f"{row['preset']}: first-step loss (same batch, same weights): {losses}")
    worst = min(min(r["ratio_vs_plain"], r["ratio_vs_plain_eager"]) for r in rows)
    verdict = "meets" if worst >= TARGET else "MISSES"
    print(f"target moegrow >= {TARGET:.1f}x plain: {verdict} (worst ratio {worst:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    transformers.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_dir = args.data.resolve() if args.data else pydoc_data(work, args.vocab)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    peak = measured_matmul_peak(args.device, dtype, seconds=2.0)
    print(
        f"data {data_dir}; batch {args.batch_size} x seq {args.seq_len}; "
        f"{torch.get_num_threads()} threads; warm-up {args.warmup} steps; "
        f"{args.repeats} repeats"
    )
    rows = [bench_preset(preset, data_dir, peak, args) for preset in args.presets]
    print_table(rows, peak, args.device)
    report = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "data": str(data_dir),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "peak_flops": peak,
        "target": TARGET,
        "loops": DESCRIPTIONS,
        "presets": rows,
    }
    out = work / ("train_bench.json" if args.device == "cpu" else "train_bench_cuda.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
