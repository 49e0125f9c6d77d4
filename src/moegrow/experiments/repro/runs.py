"""The runs of ``moegrow repro``, each cached by its full configuration.

A run is a folder ``ROOT/runs/{kind}-{digest}`` where the digest is a hash of everything that
decides what the run computes: the scale's training settings, the data, the checkpoint it starts
from (itself a key, recursively), the growth and the budget. ``key.json`` holds that
configuration; ``result.json`` appears, atomically, only when the run is complete. So a repeated
invocation reuses every finished run, experiments that need the same run share it, and a killed
invocation continues where it stopped: growth and initialisation are atomic, and training resumes
from its last checkpoint (on CPU bit for bit, so the cached result is the one an uninterrupted run
would have given).

Kinds of run:

- ``base``: one pretraining run (WSD schedule over ``scale.base_fc`` x F_c) whose checkpoints at
  ``scale.points`` are the growth points; it is trained only as far as a requested point (of
  the scale's preset, or of its dense twin: a source for upcycling); points past its constant
  phase come from a longer base run (``scale.long_points``);
- ``grown``: grow a checkpoint (a base point or another run's final model), evaluate it, and train
  it with a fixed extra budget at constant LR (weights only; the optimizer starts fresh);
- ``scratch``: a freshly initialised model of a given shape, trained with a given budget;
- ``upcycled``: a dense checkpoint upcycled to an MoE (``moegrow upcycle``), then trained like a
  grown run; ``continued``: a checkpoint trained on as it is, like a grown run (fresh optimizer);
- ``cooldown``: a branch of a grown or scratch run that decays its LR over the last part of a
  budget it is read at, keeping the run's optimizer state (:mod:`.branches`).

Budgets are FLOPs in multiples of the *base model's* F_c, converted to steps with each model's
own FLOPs per token (from its ledger's parameter counts), so runs of different sizes are compared
at equal extra FLOPs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.experiments.repro.scales import Scale
from moegrow.growth.spec import GrowthSpec
from moegrow.growth.upcycle_spec import UpcycleSpec
from moegrow.training.run_dir import RunDir

#: Bump when a change makes earlier cached results wrong to reuse.
CACHE_VERSION = 2
KEY_FILE = "key.json"
RESULT_FILE = "result.json"
#: The final model's held-out scores (:meth:`RunStore.heldout`), cached beside its result.
HELDOUT_FILE = "heldout.json"
LOCK_FILE = ".lock"
#: Steps of a base run's training loss averaged into its "level" before a growth point.
LEVEL_WINDOW = 20


def growth_key(spec: GrowthSpec) -> dict:
    """``spec`` as a run's cache key: its options, less those that cannot change the grown
    bytes. The sampler draws only for noised width copies, and ``balance_bias_noise=False`` is
    what every growth did before the option existed. Leaving them out where they have no effect
    keeps runs cached before these options existed valid (depth-only runs of the finding-1
    campaign), and never lets two different computations share a key."""
    key = spec.to_json()
    if not (spec.width > 1 and spec.noise > 0):
        key.pop("sampler")
    if not spec.balance_bias_noise:
        key.pop("balance_bias_noise")
    return key


def digest(key: dict) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the run folder's lock: concurrent invocations on one output wait for each other's
    run instead of training it twice into the same folder."""
    fd = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@dataclass
class Source:
    """A checkpoint that runs start from: a base growth point or a run's final model."""

    path: Path
    key: dict
    sunk_flops: float
    """Everything its ledger says was spent to make it."""
    val_loss: float
    loss_level: float
    """Mean training loss of its last steps (the level a grown run must recover to)."""
    step: int


@dataclass
class RunResult:
    kind: str
    label: str
    folder: Path
    final: Path
    key: dict
    budget_flops: float
    extra_flops: float
    """FLOPs this run trained for (>= budget by less than one step)."""
    sunk_flops: float
    """FLOPs spent on the checkpoint it started from (0 for scratch)."""
    start_val_loss: float
    val_loss: float
    """At the end of the run."""
    loss_at_budget: float
    """Interpolated at exactly ``budget_flops``: the equal-FLOPs comparison value."""
    curve: list[tuple[float, float]]
    """(extra FLOPs, validation loss), starting at 0 with the loss before training."""
    train_losses: list[float]
    steps: int
    tokens_per_step: int
    seconds: float
    extra: dict = field(default_factory=dict)
    heldout: dict | None = None
    """The final model on ``scale.heldout_tokens`` validation tokens: ``tokens``, ``loss``,
    ``accuracy`` and ``groups`` (group -> tokens, loss, accuracy; None where the data does not
    name its documents). None for results cached before it was measured."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["folder"], d["final"] = str(self.folder), str(self.final)
        return d

    @classmethod
    def from_json(cls, d: dict) -> RunResult:
        d = dict(d)
        d["folder"], d["final"] = Path(d["folder"]), Path(d["final"])
        d["curve"] = [tuple(p) for p in d["curve"]]
        return cls(**d)

    def as_source(self) -> Source:
        level = self.train_losses[-LEVEL_WINDOW:]
        return Source(
            self.final,
            {"run": self.key},
            self.sunk_flops + self.extra_flops,
            self.val_loss,
            sum(level) / len(level),
            self.steps,
        )


class RunIncomplete(MoegrowError):
    """A run stopped before its budget (``stop_after``); the next invocation continues it."""


class RunStore:
    """Creates, caches and resumes the runs of one scale under ``root``.

    ``stop_after``: stop every training run after this many steps of this invocation, leaving
    it resumable (as an interrupt does); raises :class:`RunIncomplete`.
    """

    def __init__(
        self,
        root: str | Path,
        scale: Scale,
        *,
        texts: list[str] | None = None,
        progress: bool = True,
        stop_after: int | None = None,
    ):
        self.root = Path(root)
        self.scale = scale
        self.texts = texts
        self.progress = progress
        self.stop_after = stop_after
        self._data: Path | None = None
        self._fc: float | None = None

    # -- data and the base model's F_c ---------------------------------------------------------

    def data_key(self) -> dict:
        return {"texts": self.texts, "vocab": self.scale.vocab}

    @property
    def data(self) -> Path:
        if self._data is None:
            from moegrow.data.prepare import prepare
            from moegrow.data.token_shards import MANIFEST_NAME

            folder = self.root / f"data-{digest(self.data_key())}"
            self.root.mkdir(parents=True, exist_ok=True)
            with _locked(self.root):
                if not (folder / MANIFEST_NAME).is_file():
                    prepare(
                        folder,
                        texts=self.texts,
                        vocab_size=self.scale.vocab,
                        progress=self.progress,
                    )
            self._data = folder
        return self._data

    def _key(self, kind: str, base_scale: Scale | None = None, **parts) -> dict:
        """A run's configuration, as JSON gives it back (tuples become lists); a base run's
        settings are those of ``base_scale`` (default: the scale's first base run)."""
        if kind == "base":
            scale = (base_scale or self.scale).base_key()
        else:
            scale = self.scale.continued_key()
        key = {
            "cache_version": CACHE_VERSION,
            "kind": kind,
            "scale": scale,
            "data": self.data_key(),
            **parts,
        }
        return json.loads(json.dumps(key))

    def _folder(self, key: dict) -> Path:
        folder = self.root / "runs" / f"{key['kind']}-{digest(key)}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / KEY_FILE).write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
        return folder

    def _init(
        self,
        folder: Path,
        norm: str,
        seed: int,
        overrides: dict | None = None,
        dense: bool = False,
    ) -> Path:
        """The run's initial model (its init ``seed``; ``dense``: the preset's dense twin)."""
        from moegrow.modeling.presets import init_checkpoint

        init = folder / "init"
        if self.scale.layers is not None:
            overrides = {"num_hidden_layers": self.scale.layers, **(overrides or {})}
        if not init.exists():
            init_checkpoint(
                init,
                self.scale.preset,
                tokenizer=str(self.data),
                norm=norm,
                seed=seed,
                overrides=overrides,
                dense=dense,
            )
        return init

    @property
    def chinchilla_flops(self) -> float:
        """F_c of the base model (the unit of every budget)."""
        if self._fc is None:
            folder = self._base_folder("pre")
            with _locked(folder):
                init = self._init(folder, "pre", 0)
            self._fc = self._report(init)["chinchilla_flops"]
        return self._fc

    def _report(self, folder: Path) -> dict:
        from moegrow.ledger import flops_report

        return flops_report(folder, seq_len=self.scale.seq_len)

    @property
    def tokens_per_step(self) -> int:
        return self.scale.batch_size * self.scale.seq_len

    def steps_for(self, flops: float, flops_per_token: float) -> int:
        return max(math.ceil(flops / flops_per_token / self.tokens_per_step - 1e-9), 1)

    # -- base runs -------------------------------------------------------------------------------

    def _base_key(
        self, norm: str, seed: int = 0, dense: bool = False, scale: Scale | None = None
    ) -> dict:
        # the MoE bases' keys predate dense bases: only a dense one says so
        model = {"model": "dense"} if dense else {}
        return self._key("base", scale, norm=norm, seed=seed, **model)

    def _base_folder(
        self, norm: str, seed: int = 0, dense: bool = False, scale: Scale | None = None
    ) -> Path:
        return self._folder(self._base_key(norm, seed, dense, scale))

    def base(
        self, point: float, norm: str = "pre", seed: int = 0, *, dense: bool = False
    ) -> Source:
        """The base run's checkpoint at ``point`` x F_c, training the base as far as needed.
        ``seed``: the base's initialisation and data order (another base run); ``dense``: a
        base of the preset's dense twin (budgets still in F_c of the preset's model)."""
        s = self.scale.base_run(point)
        fc = self.chinchilla_flops  # before taking the lock: it may take the pre base's
        folder = self._base_folder(norm, seed, dense, s)
        with _locked(folder):
            return self._base_locked(s, folder, point, norm, fc, seed, dense)

    def _base_locked(
        self, s: Scale, folder: Path, point: float, norm: str, fc: float, seed: int, dense: bool
    ) -> Source:
        from moegrow.training.train import train

        init = self._init(folder, norm, seed=seed, dense=dense)
        fpt = self._report(init)["flops_per_token"]
        total = self.steps_for(s.base_fc * fc, fpt)
        run = RunDir(folder / "run")
        for p in sorted(q for q in s.points if q <= point):
            target = self.steps_for(p * fc, fpt)
            ckpt = run.checkpoint(target)
            if ckpt.is_dir():
                continue
            done = run.last_step()
            if done > target and p < point:
                continue  # an earlier growth point's checkpoint is not needed for this one
            if done > target:
                raise MoegrowError(
                    f"{run.path}: has a checkpoint past step {target} but not at it; delete "
                    f"{folder} to retrain this base"
                )
            opts = self._options(
                tokens=total * self.tokens_per_step,
                schedule="wsd",
                warmup_steps=s.base_warmup_steps,
                decay_fraction=s.decay_fraction,
                seed=seed,
                eval_every=max(self.steps_for(0.25 * fc, fpt), 1),
                keep_checkpoints=0,
                stop_after=min(target - done, self.stop_after or target),
            )
            what = "dense" if dense else f"{norm}-norm"
            self._say(f"base ({what}): training to {p} x F_c (step {target} of {total})")
            train(init, self.data, run.path, opts, resume=run.is_run())
            if not ckpt.is_dir():
                raise RunIncomplete(
                    f"{run.path}: stopped before step {target}; run again to continue"
                )
        target = self.steps_for(point * fc, fpt)
        before = run.read_metrics(upto=target)
        level = [m["loss"] for m in before[-LEVEL_WINDOW:]]
        val = [m["val_loss"] for m in before if "val_loss" in m and m["step"] == target]
        ckpt = run.checkpoint(target)
        return Source(
            ckpt,
            {"base": self._base_key(norm, seed, dense, s), "point": point},
            self._report(ckpt)["sunk_flops"],
            val[0] if val else self._evaluate(ckpt, run.path / f"val-{target}.json"),
            sum(level) / len(level),
            target,
        )

    def base_curve(self, norm: str = "pre") -> list[tuple[float, float]]:
        """(FLOPs, validation loss) of the base run as far as it has been trained."""
        metrics = RunDir(self._base_folder(norm) / "run").read_metrics()
        return [(m["flops"], m["val_loss"]) for m in metrics if "val_loss" in m]

    # -- grown and scratch runs ------------------------------------------------------------------

    def grown(
        self,
        parent: Source,
        spec: GrowthSpec,
        extra_fc: float,
        seed: int,
        label: str,
        *,
        lr: float | None = None,
        cooldowns: tuple[float, ...] = (),
    ) -> RunResult:
        """Grow ``parent`` by ``spec`` (its seed replaced by ``seed``) and train it with
        ``extra_fc`` x F_c extra FLOPs (training seed ``seed``) at constant LR ``lr`` (default
        the scale's). ``cooldowns``: budgets (x F_c) at which :meth:`cooldown` may branch it,
        besides ``extra_fc`` itself (their branch checkpoints are kept; they do not change what
        the run computes)."""
        from moegrow.growth.grow import grow

        spec = GrowthSpec(**{**spec.to_json(), "seed": seed, "layer_map": spec.layer_map})

        def make(init: Path) -> None:
            self._say(f"{label}: growing {parent.path}")
            grow(parent.path, init, spec, progress=False)

        return self._from_parent(
            "grown", parent, extra_fc, seed, label, make, lr, cooldowns, growth=growth_key(spec)
        )

    def upcycled(
        self,
        parent: Source,
        spec: UpcycleSpec,
        extra_fc: float,
        seed: int,
        label: str,
        *,
        cooldowns: tuple[float, ...] = (),
        train: dict | None = None,
    ) -> RunResult:
        """Upcycle the dense ``parent`` by ``spec`` (its seed replaced by ``seed``) and train
        the MoE like a grown run. ``train``: training options that differ from the scale's
        (e.g. ``aux_loss_coef``: an upcycled config carries no ``router_aux_loss_coef``)."""
        from moegrow.growth.upcycle_run import upcycle

        spec = replace(spec, seed=seed)

        def make(init: Path) -> None:
            self._say(f"{label}: upcycling {parent.path}")
            upcycle(parent.path, init, spec, progress=False)

        return self._from_parent(
            "upcycled",
            parent,
            extra_fc,
            seed,
            label,
            make,
            None,
            cooldowns,
            train,
            upcycle=spec.to_json(),
        )

    def continued(
        self,
        parent: Source,
        extra_fc: float,
        seed: int,
        label: str,
        *,
        cooldowns: tuple[float, ...] = (),
    ) -> RunResult:
        """Train ``parent`` on as it is, like a grown run (its weights, a fresh optimizer, the
        same warm-up and constant LR): the no-growth reference at equal extra FLOPs."""
        return self._from_parent(
            "continued",
            parent,
            extra_fc,
            seed,
            label,
            partial(_copy_model, parent.path),
            None,
            cooldowns,
        )

    def _from_parent(
        self,
        kind: str,
        parent: Source,
        extra_fc: float,
        seed: int,
        label: str,
        make_init: Callable[[Path], None],
        lr: float | None = None,
        cooldowns: tuple[float, ...] = (),
        train: dict | None = None,
        **parts,
    ) -> RunResult:
        """A run that starts from ``parent`` through ``make_init(folder / "init")`` (which must
        write it atomically) and trains ``extra_fc`` x F_c; ``parts``: what else keys it."""
        if lr is not None:
            parts["lr"] = lr
        if train:
            parts["train"] = train
        key = self._key(kind, parent=parent.key, extra_fc=round(extra_fc, 9), seed=seed, **parts)
        folder = self._folder(key)
        with _locked(folder):
            if (folder / RESULT_FILE).is_file():
                return RunResult.from_json(json.loads((folder / RESULT_FILE).read_text()))
            init = folder / "init"
            if not init.exists():
                make_init(init)
            return self._train(
                kind,
                label,
                key,
                folder,
                init,
                extra_fc,
                seed,
                parent.sunk_flops,
                lr,
                cooldowns,
                train,
            )

    def scratch(
        self,
        shape: dict,
        budget_fc: float,
        seed: int,
        label: str,
        norm: str = "pre",
        *,
        cooldowns: tuple[float, ...] = (),
    ) -> RunResult:
        """The preset with ``shape`` overrides, from scratch, trained with ``budget_fc`` x F_c."""
        key = self._key("scratch", shape=shape, norm=norm, budget_fc=round(budget_fc, 9), seed=seed)
        folder = self._folder(key)
        with _locked(folder):
            if (folder / RESULT_FILE).is_file():
                return RunResult.from_json(json.loads((folder / RESULT_FILE).read_text()))
            init = self._init(folder, norm, seed=1000 + seed, overrides=shape)
            return self._train(
                "scratch", label, key, folder, init, budget_fc, seed, 0.0, None, cooldowns
            )

    def cooldown(self, run: RunResult, budget_fc: float, label: str) -> RunResult:
        """``run`` read annealed at ``budget_fc`` x F_c: a branch from its checkpoint at the
        start of the last ``cooldown_fraction`` of that budget, whose LR decays linearly to
        ``cooldown_min_ratio`` x peak at the budget, with the run's optimizer state and data
        order (cached and resumable like every run; :mod:`.branches`)."""
        from moegrow.experiments.repro.branches import cooldown

        return cooldown(self, run, budget_fc, label)

    def _train(
        self,
        kind: str,
        label: str,
        key: dict,
        folder: Path,
        init: Path,
        budget_fc: float,
        seed: int,
        sunk: float,
        lr: float | None = None,
        cooldowns: tuple[float, ...] = (),
        train: dict | None = None,
    ) -> RunResult:
        import time

        from moegrow.experiments.curves import loss_at
        from moegrow.experiments.repro.branches import cooldown_steps, train_keeping

        s = self.scale
        budget = budget_fc * self.chinchilla_flops
        fpt = self._report(init)["flops_per_token"]
        steps = self.steps_for(budget, fpt)
        start = self._evaluate(init, folder / "start.json")
        eval_every = max(steps // s.eval_points, 1)
        opts = self._options(
            tokens=steps * self.tokens_per_step,
            schedule="constant",
            warmup_steps=min(s.grown_warmup_steps, steps // 10),
            seed=seed,
            eval_every=eval_every,
            save_every=eval_every,
            keep_checkpoints=1,
        )
        if lr is not None:
            opts.lr = lr
        opts = replace(opts, **(train or {}))
        keep = {cooldown_steps(self, b, fpt)[0] for b in cooldowns if b <= budget_fc + 1e-9}
        if steps > 1:
            # every run can be read annealed at its own budget, also by an experiment that
            # finds it cached by another (a run resumed past that step is not stopped for it)
            own = cooldown_steps(self, budget_fc, fpt)[0]
            if RunDir(folder / "run").last_step() <= own:
                keep.add(own)
        self._say(f"{label}: {steps} steps")
        t0 = time.perf_counter()
        res = train_keeping(self, init, folder, opts, sorted(keep))
        if res.steps < steps:
            raise RunIncomplete(f"{folder}: stopped at step {res.steps} of {steps}; run again")
        curve = [(0.0, start)]
        curve += [(m["flops"], m["val_loss"]) for m in res.metrics if "val_loss" in m]
        at_budget = loss_at(curve, budget)
        result = RunResult(
            kind=kind,
            label=label,
            folder=folder,
            final=res.final,
            key=key,
            budget_flops=budget,
            extra_flops=res.flops,
            sunk_flops=sunk,
            start_val_loss=start,
            val_loss=res.val_loss if res.val_loss is not None else curve[-1][1],
            loss_at_budget=at_budget if at_budget is not None else curve[-1][1],
            curve=curve,
            train_losses=[m["loss"] for m in res.metrics],
            steps=res.steps,
            tokens_per_step=self.tokens_per_step,
            seconds=time.perf_counter() - t0,
            heldout=self.heldout(res.final, folder / HELDOUT_FILE),
        )
        _write_atomic(folder / RESULT_FILE, result.to_json())
        return result

    def _options(self, **options):
        """Training options of a run: the scale's batch, sequence, LR and evaluation size."""
        from moegrow.training.options import TrainOptions

        s = self.scale
        return TrainOptions(
            batch_size=s.batch_size,
            seq_len=s.seq_len,
            lr=s.lr,
            eval_tokens=s.eval_tokens,
            device=s.device,
            progress=self.progress,
            **options,
        )

    def _evaluate(self, model: Path, cache: Path) -> float:
        if cache.is_file():
            return json.loads(cache.read_text())["val_loss"]
        result = self._score(model, self.scale.eval_tokens, scores=False)
        _write_atomic(cache, {"val_loss": result["val_loss"]})
        return result["val_loss"]

    def heldout(self, model: Path, cache: Path) -> dict:
        """``model`` scored on ``scale.heldout_tokens`` validation tokens in windows spread over
        the whole split (not only its first documents): loss, next-token accuracy
        and both per document group (cached in ``cache``)."""
        if cache.is_file():
            return json.loads(cache.read_text())
        ev = self._score(model, self.scale.heldout_tokens, spread=True)
        scores = {
            "tokens": ev["val_tokens"],
            "loss": ev["val_loss"],
            "accuracy": ev["val_accuracy"],
            "groups": ev["val_groups"],
        }
        _write_atomic(cache, scores)
        return scores

    def _score(self, model: Path, tokens: int, **options) -> dict:
        """``moegrow eval`` of ``model`` on ``tokens`` validation tokens at the scale's shapes."""
        from moegrow.training.evaluate import evaluate

        s = self.scale
        return evaluate(
            model,
            self.data,
            seq_len=s.seq_len,
            tokens=tokens,
            batch=s.batch_size,
            device=s.device,
            **options,
        )

    def _say(self, text: str) -> None:
        if self.progress:
            print(f"  {text}", flush=True)


def _copy_model(src: Path, dst: Path) -> None:
    """The model of checkpoint ``src`` (weights, config, tokenizer, card; no optimizer state),
    copied to ``dst`` atomically."""
    from moegrow.training.run_dir import OPTIMIZER_FILE, RNG_FILE, STATE_FILE

    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(OPTIMIZER_FILE, RNG_FILE, STATE_FILE))
    tmp.rename(dst)
