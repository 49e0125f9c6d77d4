"""Continued pre-training of any checkpoint moegrow reads or writes, on transformers' model classes.

One process (CPU or GPU) or several under ``torchrun`` (PyTorch FSDP2, data parallel). AdamW,
constant / cosine / WSD schedules, gradient accumulation, the global-batch load-balancing loss
and the aux-loss-free expert-bias update, checkpoints that resume bit for bit on CPU, metrics as
JSONL, and the FLOPs ledger carried in the checkpoint's card.

Batches are a pure function of the step (:mod:`moegrow.data.sampling`): a resumed run needs only the
step to continue.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from moegrow.data.sampling import BlockSampler
from moegrow.data.tokenizer import copy_tokenizer_files, has_tokenizer
from moegrow.errors import MoegrowError
from moegrow.families import family_for
from moegrow.flops import tensor_stats
from moegrow.growth.plan import validate_source
from moegrow.io.atomic import clean_partials_in, exclusive
from moegrow.io.card import CARD_NAME, write_json
from moegrow.io.checkpoint import Checkpoint
from moegrow.ledger import with_stage
from moegrow.modeling.lm_loss import NextTokenLoss
from moegrow.modeling.loading import load_model, pick_device
from moegrow.training import distributed as ddp
from moegrow.training.options import TrainOptions, check_options
from moegrow.training.perf import measured_matmul_peak
from moegrow.training.router_stats import (
    RouterCapture,
    balance_loss,
    balance_metrics,
    expert_bias_buffers,
    expert_loads,
    router_kind,
    update_expert_biases,
)
from moegrow.training.run_dir import RunDir
from moegrow.training.schedule import lr_at
from moegrow.training.train_state import (
    check_optimizer,
    check_state,
    load_checkpoint,
    save_checkpoint,
)


@dataclass
class TrainResult:
    final: Path
    steps: int
    tokens: int
    flops: float
    metrics: list[dict]
    val_loss: float | None


def _param_groups(model, weight_decay: float) -> list[dict]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@contextmanager
def _tf32_matmuls(device: torch.device) -> Iterator[None]:
    """On CUDA, let the float32 matmuls that autocast leaves (experts kernels other than the
    autocast-aware ``grouped_mm`` of :mod:`moegrow.modeling.experts_kernel`, for instance) use TF32
    tensor cores while training: 1.58x over plain float32 experts (``bench/experts_gpu.py``)."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class _StopRequest:
    """Ctrl-C / SIGTERM during training: finish the current step, save, then stop."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handler(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _init_run(run: RunDir, model_dir: Path, data_dir: Path, opts: TrainOptions, resume: bool):
    """Reopen the run folder (or check that a new one may be made there); returns (options,
    model folder to load, data folder, restored checkpoint state or None)."""
    if resume:
        meta = run.read_run(TrainOptions)
        saved = dict(meta["options"])
        # What to train is the run's; how this invocation behaves is the caller's.
        saved.update(stop_after=opts.stop_after, progress=opts.progress)
        try:
            opts = TrainOptions(**saved)
        except TypeError as e:
            raise MoegrowError(f"{run.run_file}: options do not fit this version ({e})") from None
        try:
            check_options(opts)
        except MoegrowError as e:
            raise MoegrowError(f"{run.run_file}: options: {e}") from None
        newest = run.newest_complete()
        if newest is None:
            return opts, Path(meta["model"]), Path(meta["data"]), None
        state, optim_state, rng = load_checkpoint(newest)
        return opts, newest, Path(meta["data"]), (state, optim_state, rng)
    if run.path.exists() and any(run.path.iterdir()):
        raise MoegrowError(
            f"{run.path}: already exists and is not empty; pass --resume {run.path} to continue it"
        )
    return opts, model_dir, data_dir, None


def _create_run(run: RunDir, model_dir: Path, data_dir: Path, opts: TrainOptions) -> None:
    """Write the new run's folder and run.json, once the model and data have been checked."""
    ddp.barrier()  # every process has looked at the run folder before rank 0 writes into it
    run.path.mkdir(parents=True, exist_ok=True)
    # Absolute, resolved paths: the run resumes from any working directory.
    meta = {
        "model": str(model_dir.resolve()),
        "data": str(data_dir.resolve()),
        "options": asdict(opts),
    }
    if ddp.world()[0] == 0:
        run.write_run(meta)


def _one_writer_per_run(fn):
    """Run ``fn`` holding the run folder's lock (first rank only), after checking the options
    and removing what interrupted runs left in the folder."""

    @functools.wraps(fn)
    def locked(model_dir, data_dir, run, opts=None, *, resume=False):
        if opts is not None and not resume:  # refused before the run folder is touched
            opts.check()
            check_options(opts)
        if os.environ.get("RANK", "0") != "0":
            return fn(model_dir, data_dir, run, opts, resume=resume)
        with exclusive(Path(run), what="run folder"):
            if Path(run).is_dir():
                clean_partials_in(Path(run))
            return fn(model_dir, data_dir, run, opts, resume=resume)

    return locked


def default_aux_loss_coef(config: dict, model_config) -> float:
    """The load-balancing coefficient of a checkpoint: config.json's ``router_aux_loss_coef``,
    else its config class's default (an upcycled or hand-written config.json may leave it out;
    reading that as 0 would silently train without a balance loss)."""
    value = config.get("router_aux_loss_coef")
    if value is None:
        value = getattr(model_config.get_text_config(), "router_aux_loss_coef", None)
    return float(value or 0.0)


@_one_writer_per_run
def train(
    model_dir: str | Path | None,
    data_dir: str | Path | None,
    run: str | Path,
    opts: TrainOptions | None = None,
    *,
    resume: bool = False,
) -> TrainResult:
    """Train ``model_dir`` on the prepared data ``data_dir``, writing into the folder ``run``
    (``resume=True`` continues ``run`` from its last checkpoint with its own options).

    One process trains a run folder at a time: the first rank holds the run's lock throughout,
    and removes what interrupted runs left in it."""
    from moegrow.data.token_shards import TokenData
    from moegrow.training.evaluate import check_vocab, validation_loss

    run_dir = RunDir(run)
    opts = opts or TrainOptions()
    device = ddp.init_from_env(pick_device(opts.device))
    rank, world_size = ddp.world()
    opts, load_from, data_dir, restored = _init_run(
        run_dir, Path(model_dir or "."), Path(data_dir or "."), opts, resume
    )
    # The ledger continues the one of the model the run started from, not of its checkpoints.
    origin = Path(run_dir.read_run(TrainOptions)["model"]) if resume else load_from
    opts.check()
    check_options(opts)
    if opts.batch_size % (opts.grad_accum * world_size):
        raise MoegrowError(
            f"--batch-size {opts.batch_size} must be a multiple of --grad-accum x processes "
            f"({opts.grad_accum} x {world_size})"
        )
    data = TokenData(data_dir)
    data.split("train")  # opened (and checked) before the run folder is written
    val = data.split("val")
    if len(val) < opts.seq_len + 1:  # found now, not after training every step
        raise MoegrowError(
            f"{data_dir}: the validation split has {len(val)} tokens, fewer than one sequence of "
            f"{opts.seq_len + 1} (--seq-len {opts.seq_len}); prepare more data or a larger "
            "--val-fraction, or use a smaller --seq-len"
        )
    with Checkpoint(load_from) as ckpt:
        config = ckpt.config
        family = family_for(config, where=str(ckpt.folder / "config.json"))
        validate_source(ckpt, family)  # missing tensors would be initialised at random
        stats = tensor_stats(ckpt.tensors.values(), family, config)
    check_vocab(config, data, load_from)
    if not resume:
        _create_run(run_dir, load_from, Path(data_dir), opts)
    flops_per_token = stats.flops_per_token(opts.seq_len)
    tokens_per_step = opts.batch_size * opts.seq_len
    if opts.tokens is not None:
        budget: float = opts.tokens
    else:
        assert opts.flops is not None  # TrainOptions.check: exactly one of them
        budget = opts.flops / flops_per_token
    total_steps = max(math.ceil(budget / tokens_per_step), 1)

    torch.manual_seed(opts.seed)
    model = load_model(load_from, device)
    kind = router_kind(config)
    biases = expert_bias_buffers(model, config)
    capture = RouterCapture(model) if kind is not None else None
    coef = opts.aux_loss_coef
    if coef is None:
        coef = default_aux_loss_coef(config, model.config) if kind else 0.0
    ddp.shard(model)
    # The fused kernel updates every parameter in one call (CPU and CUDA): on the tiny preset
    # the per-tensor loop of the default implementation costs several ms a step.
    optimizer = torch.optim.AdamW(
        _param_groups(model, opts.weight_decay),
        lr=opts.lr,
        betas=(opts.beta1, opts.beta2),
        fused=device.type in ("cpu", "cuda"),
    )
    step = 0
    if restored is not None:
        state, optim_state, rng = restored
        check_state(
            load_from, state, tokens_per_step=tokens_per_step, logged_steps=run_dir.logged_steps()
        )
        check_optimizer(load_from, optim_state, model, state["step"])
        ddp.load_optimizer(model, optimizer, optim_state)
        torch.set_rng_state(rng)
        step = state["step"]
    sampler = BlockSampler(data.split("train"), opts.seq_len, opts.seed)
    next_token_loss = NextTokenLoss(
        model, sampler.rows(0, 1)[:, :-1].to(device), compile=opts.compile, sharded=ddp.sharded()
    )
    if capture is not None:
        capture.take()  # the check's forward passes
    peak = measured_matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    history = run_dir.read_metrics(upto=step)
    if rank == 0:
        run_dir.write_metrics(history)  # steps past the checkpoint are trained (logged) again
    writer = _tensorboard(run_dir) if opts.tensorboard and rank == 0 else None
    micro = opts.batch_size // (opts.grad_accum * world_size)
    autocast = device.type == "cuda"
    start_step = step
    last_val = None

    def save(final: bool = False) -> Path:
        model_state, optim_state = ddp.full_state(model, optimizer)
        target = None
        if rank == 0:
            unwrapped = model

            def save_model(folder: Path) -> None:
                unwrapped.save_pretrained(folder, state_dict=model_state)
                _copy_tokenizer(load_from, data, folder)
                tokens = step * tokens_per_step
                stage = {
                    "stage": "train",
                    "tokens": tokens,
                    "flops": tokens * flops_per_token,
                    "active_params": stats.active,
                    "flops_per_token": flops_per_token,
                    "seq_len": opts.seq_len,
                }
                write_json(folder / CARD_NAME, with_stage(origin, stage))

            state = {
                "step": step,
                "tokens": step * tokens_per_step,
                "flops": step * tokens_per_step * flops_per_token,
            }
            target = save_checkpoint(
                run_dir.path, step, save_model, optim_state, state, opts.keep_checkpoints
            )
        ddp.barrier()
        return target or run_dir.checkpoint(step)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps,
        initial=step,
        desc="train",
        unit="step",
        disable=not opts.progress or rank != 0,
    )
    stopped = False
    with _StopRequest() as stop, bar, _tf32_matmuls(device):
        while step < total_steps:
            t0 = time.perf_counter()
            lr = lr_at(
                step,
                total_steps=total_steps,
                peak=opts.lr,
                schedule=opts.schedule,
                warmup_steps=opts.warmup_steps,
                min_ratio=opts.min_lr_ratio,
                decay_fraction=opts.decay_fraction,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Losses stay on the device until the step is done: reading them earlier would make
            # the host wait for each forward pass before it can queue the backward pass.
            ce_sum = torch.zeros((), device=device)
            aux_sum = torch.zeros((), device=device)
            step_loads = None
            for m in range(opts.grad_accum):
                first = step * opts.batch_size + m * micro * world_size + rank * micro
                rows = sampler.rows(first, micro).to(device)
                with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
                    ce = next_token_loss(rows[:, :-1], rows[:, 1:]) / rows[:, 1:].numel()
                loss = ce
                router_logits = capture.take() if capture is not None else ()
                if router_logits:
                    assert kind is not None  # router logits come only from MoE routers
                    loads = expert_loads(router_logits, kind, biases or [None] * len(router_logits))
                    step_loads = loads if step_loads is None else step_loads + loads
                    aux = balance_loss(router_logits, kind, loads)
                    loss = loss + coef * aux
                    aux_sum += aux.detach()
                (loss / opts.grad_accum).backward()
                ce_sum += ce.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if (
                step_loads is not None
                and opts.expert_bias_rate > 0
                and any(b is not None for b in biases)
            ):
                update_expert_biases(biases, step_loads, opts.expert_bias_rate)
            step += 1
            ce_mean, aux_mean = (
                v / (opts.grad_accum * world_size)
                for v in ddp.all_sum([ce_sum.item(), aux_sum.item()])
            )
            dt = time.perf_counter() - t0
            record = {
                "step": step,
                "tokens": step * tokens_per_step,
                "flops": step * tokens_per_step * flops_per_token,
                "loss": ce_mean,
                "aux_loss": aux_mean,
                "lr": lr,
                "grad_norm": float(
                    grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
                ),
                "tokens_per_s": tokens_per_step / dt,
                "mfu": tokens_per_step * flops_per_token / dt / (peak * world_size),
                "fused_loss": next_token_loss.fused,
            }
            if step_loads is not None:
                record.update(balance_metrics(step_loads))
            is_last = step == total_steps
            if (opts.eval_every and step % opts.eval_every == 0) or is_last:
                ev = validation_loss(
                    model,
                    val,
                    next_token_loss=next_token_loss,
                    seq_len=opts.seq_len,
                    tokens=opts.eval_tokens,
                    batch=micro,
                    device=device,
                    kind=kind,
                    biases=biases,
                    capture=capture,
                    autocast=autocast,
                )
                record.update(ev)
                last_val = ev["val_loss"]
            history.append(record)
            if rank == 0:
                run_dir.append_metrics(record)
                if writer is not None:
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != "step":
                            writer.add_scalar(k, v, step)
            bar.set_postfix(loss=f"{ce_mean:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
            if opts.save_every and step % opts.save_every == 0 and not is_last:
                save()
            interrupted = ddp.any_rank(stop.requested)
            if interrupted or (
                opts.stop_after and step - start_step >= opts.stop_after and not is_last
            ):
                save()
                stopped = True
                break
    final = save(final=True) if not stopped else run_dir.checkpoints()[-1]
    if writer is not None:
        writer.close()
    if stopped and stop.requested:
        if rank == 0:
            print(f"stopped at step {step}: saved {final}; continue with --resume {run_dir.path}")
        raise KeyboardInterrupt
    return TrainResult(
        final,
        step,
        step * tokens_per_step,
        step * tokens_per_step * flops_per_token,
        history,
        last_val,
    )


def _tensorboard(run: RunDir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MoegrowError(
            "--tensorboard needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(str(run.tensorboard_dir))


def _copy_tokenizer(model_dir: Path, data, folder: Path) -> None:
    """Checkpoints carry a tokenizer: the model's own, else the data's."""
    source = Path(model_dir)
    copy_tokenizer_files(source if has_tokenizer(source) else data.tokenizer_dir, folder)
