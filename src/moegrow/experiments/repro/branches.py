"""Cooldown branches: a run read annealed at a budget, not only at its constant LR.

A continued run of ``moegrow repro`` trains at a constant LR (the paper's rule after growth),
so its loss at a budget B carries the LR's noise floor; an annealed reading can rank variants
differently. A *cooldown branch* of a run at budget B starts from the run's checkpoint at the
beginning of the last ``scale.cooldown_fraction`` of B, keeps its weights, optimizer state, RNG
and data order, and decays the LR linearly from the peak to ``scale.cooldown_min_ratio`` x peak
at B (the WSD schedule's decay, placed at B). Its loss at B is the run's annealed value at B.

The parent run keeps a copy of its checkpoint at each branch step (``branch-STEP/``), taken
by stopping the training there and resuming it, which on CPU is bit for bit the uninterrupted
run. A branch is a run of its own: keyed by (parent, budget, fraction, floor), cached and
resumable.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.training.run_dir import RunDir

BRANCH_PREFIX = "branch-"


class MissingBranch(MoegrowError):
    """The run kept no checkpoint to branch this cooldown from (it was trained, or cached,
    without that cooldown budget)."""


def cooldown_steps(store, budget_fc: float, flops_per_token: float) -> tuple[int, int]:
    """(first decay step, last step) of a cooldown at ``budget_fc`` x F_c: the last step is
    the one a run with that budget ends at; the decay covers ``cooldown_fraction`` of it."""
    end = store.steps_for(budget_fc * store.chinchilla_flops, flops_per_token)
    decay = max(round(end * store.scale.cooldown_fraction), 1)
    if decay >= end:
        raise MoegrowError(
            f"cooldown at {budget_fc:g} x F_c: only {end} steps, too few to branch a decay of "
            f"{decay}; use a larger budget"
        )
    return end - decay, end


def branch_dir(folder: Path, step: int) -> Path:
    return folder / f"{BRANCH_PREFIX}{step:07d}"


def train_keeping(store, init: Path, folder: Path, opts, keep: list[int]):
    """Train ``folder/run`` from ``init`` with ``opts``, stopping at each step of ``keep`` to
    copy its checkpoint to ``folder/branch-STEP`` (resuming is exact, so the stops do not
    change the run). Honours ``store.stop_after`` over the whole call."""
    from moegrow.experiments.repro.runs import RunIncomplete
    from moegrow.training.train import train

    run = RunDir(folder / "run")
    total = opts.tokens // store.tokens_per_step
    allowance = store.stop_after
    res = None
    for target in [*(k for k in keep if k < total), total]:
        if target < total and branch_dir(folder, target).is_dir():
            continue
        done = run.last_step()
        if done > target:
            raise MoegrowError(
                f"{run.path}: trained to step {done} without keeping step {target} for a cooldown "
                f"branch; delete {folder} to retrain it"
            )
        if done < target or target == total:
            limit = target - done if target < total else None
            if allowance is not None:
                if allowance <= 0:
                    raise RunIncomplete(f"{run.path}: stopped at step {done} of {total}; run again")
                limit = min(limit or allowance, allowance)
            opts.stop_after = limit
            res = train(init, store.data, run.path, opts, resume=run.is_run())
            if allowance is not None:
                allowance -= res.steps - done
            if res.steps < target:
                raise RunIncomplete(
                    f"{run.path}: stopped at step {res.steps} of {total}; run again"
                )
        if target < total:
            _copy_atomic(run.checkpoint(target), branch_dir(folder, target))
    return res


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    tmp.rename(dst)


def cooldown(store, run, budget_fc: float, label: str):
    """The cooldown branch of ``run`` (a :class:`~.runs.RunResult`) at ``budget_fc`` x F_c."""
    from moegrow.experiments.repro.runs import (
        HELDOUT_FILE,
        RESULT_FILE,
        RunIncomplete,
        RunResult,
        _locked,
        _write_atomic,
        digest,
    )
    from moegrow.training.options import TrainOptions
    from moegrow.training.train import train

    s = store.scale
    key = store._key(
        "cooldown",
        parent=run.key,
        budget_fc=round(budget_fc, 9),
        fraction=s.cooldown_fraction,
        min_lr_ratio=s.cooldown_min_ratio,
    )
    done = store.root / "runs" / f"cooldown-{digest(key)}" / RESULT_FILE
    if done.is_file():  # also where the parent's folder is not there (results copied in)
        return RunResult.from_json(json.loads(done.read_text()))
    fpt = store._report(run.folder / "init")["flops_per_token"]
    start, end = cooldown_steps(store, budget_fc, fpt)
    if end > run.steps:
        raise MoegrowError(
            f"{label}: a cooldown at {budget_fc:g} x F_c ends at step {end}, past the "
            f"{run.steps} steps of {run.folder}; branch at a budget within the run"
        )
    source = branch_dir(run.folder, start)
    if not source.is_dir():
        raise MissingBranch(
            f"{run.folder}: no checkpoint at step {start} to branch a cooldown at "
            f"{budget_fc:g} x F_c (the run was trained without that cooldown budget); "
            f"delete {run.folder} and run again to keep it"
        )
    folder = store._folder(key)
    with _locked(folder):
        if (folder / RESULT_FILE).is_file():
            return RunResult.from_json(json.loads((folder / RESULT_FILE).read_text()))
        mine = RunDir(folder / "run")
        if not mine.is_run():
            parent = RunDir(run.folder / "run")
            meta = parent.read_run(TrainOptions)
            mine.path.mkdir(exist_ok=True)
            target = mine.checkpoint(start)
            if not target.is_dir():
                _copy_atomic(source, target)
            mine.write_metrics(parent.read_metrics(upto=start))
            options = dict(meta["options"])
            options.update(
                tokens=end * store.tokens_per_step,
                flops=None,
                schedule="wsd",
                decay_fraction=(end - start) / end,
                min_lr_ratio=s.cooldown_min_ratio,
                eval_every=0,
                stop_after=None,
            )
            mine.write_run({**meta, "options": options})
        store._say(f"{label}: cooldown from step {start} to {end}")
        t0 = time.perf_counter()
        opts = TrainOptions(tokens=1, stop_after=store.stop_after, progress=store.progress)
        res = train(None, None, mine.path, opts, resume=True)
        if res.steps < end:
            raise RunIncomplete(f"{mine.path}: stopped at step {res.steps} of {end}; run again")
        branch_flops = start * store.tokens_per_step * fpt
        curve = [p for p in run.curve if p[0] <= branch_flops * (1 + 1e-12)]
        val = res.val_loss if res.val_loss is not None else res.metrics[-1]["val_loss"]
        result = RunResult(
            kind="cooldown",
            label=label,
            folder=folder,
            final=res.final,
            key=key,
            budget_flops=budget_fc * store.chinchilla_flops,
            extra_flops=res.flops,
            sunk_flops=run.sunk_flops,
            start_val_loss=run.start_val_loss,
            val_loss=val,
            loss_at_budget=val,
            curve=[*curve, (res.flops, val)],
            train_losses=[m["loss"] for m in res.metrics],
            steps=res.steps,
            tokens_per_step=store.tokens_per_step,
            seconds=time.perf_counter() - t0,
            extra={"branch_step": start, "parent": str(run.folder)},
            heldout=store.heldout(res.final, folder / HELDOUT_FILE),
        )
        _write_atomic(folder / RESULT_FILE, result.to_json())
        return result
