"""Sizes of ``moegrow repro``: every budget is a multiple of the base model's Chinchilla point
F_c = 6 N_a (20 N_a), so that the experiments keep the paper's proportions at any size.

``micro`` is sized for 2 CPU cores (the whole suite in well under the 4 hours allowed);
``deep`` is an 8-layer base for the depth findings (about 1.6 CPU-minutes of one core per F_c,
measured); ``small`` is plan-only: its base run alone is 4 x F_c = 604 M tokens, about 216
passes over the built-in corpus (docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from moegrow.errors import MoegrowError


@dataclass(frozen=True)
class Scale:
    name: str
    preset: str
    vocab: int
    """BPE vocabulary of the default corpus (small, so embeddings don't dominate)."""
    seq_len: int
    batch_size: int
    lr: float
    """Peak LR of the base runs and the constant LR of every continued run (PAPER.md: grown
    models continue at a constant LR)."""
    base_warmup_steps: int
    grown_warmup_steps: int
    """Optimizer state starts fresh after growth (PAPER.md), so a short warmup."""
    base_fc: float
    """Length of the base run (WSD schedule), in F_c."""
    decay_fraction: float
    """WSD: the last fraction of the base run is the decay (annealing) phase."""
    points: tuple[float, ...]
    """Checkpoints kept along the base run, in F_c (growth points)."""
    early: float
    """A base before 1 x F_c (experiment depth-method)."""
    late: float
    """A base well past F_c: the "converged" base of most experiments."""
    mid: float
    """Growth point of the post-norm experiment (both bases trained this far)."""
    extra_fc: float
    """Extra training budget of every grown run, in F_c of the base model."""
    total_fc: float
    """Total budget (sunk + extra) of the total-budget experiment, in F_c."""
    total_points: tuple[float, ...]
    """Growth points of the total-budget experiment, in F_c."""
    eval_points: int
    """Validation evaluations per continued run."""
    eval_tokens: int
    heldout_tokens: int = 65536
    """Validation tokens, in windows spread over the whole split, on which each continued run's
    final model is scored (loss, next-token accuracy, loss per document group;
    :meth:`~.runs.RunStore.heldout`). An evaluation of the
    finished model, not part of any run's key: it changes nothing a run computes."""
    device: str = "auto"
    layers: int | None = None
    """Decoder layers of the base model, instead of the preset's (a deeper base for the depth
    experiments)."""
    cooldown_fraction: float = 0.2
    """A cooldown branch decays the LR over this last fraction of the budget it is read at."""
    cooldown_min_ratio: float = 0.1
    """... linearly down to this fraction of the peak LR."""
    plan_only: str | None = None
    """Set for a scale that cannot run on the built-in corpus: what it would need."""
    upcycle_point: float | None = None
    """Where the dense base of the ``upcycle`` experiment stops, in F_c (None: ``late``)."""
    long_base_fc: float | None = None
    """Length of a second, longer base run (same settings, WSD over this many F_c), for growth
    points past the first run's constant phase; it is trained only as far as a point asks."""
    long_points: tuple[float, ...] = ()
    """Growth points of the longer base run, in F_c."""

    def base_key(self) -> dict:
        """The fields that change what a base run computes (its cache key): the fields a later
        version adds for continued runs leave the base runs valid."""
        keys = ("preset", "vocab", "seq_len", "batch_size", "lr", "base_warmup_steps")
        d = {k: getattr(self, k) for k in (*keys, "base_fc", "decay_fraction", "eval_tokens")}
        if self.layers is not None:
            d["layers"] = self.layers
        return d

    def continued_key(self) -> dict:
        """The fields that change what a grown, scratch or cooldown run computes."""
        d = {k: getattr(self, k) for k in ("preset", "vocab", "seq_len", "batch_size", "lr")}
        d.update(
            grown_warmup_steps=self.grown_warmup_steps,
            eval_points=self.eval_points,
            eval_tokens=self.eval_tokens,
        )
        if self.layers is not None:
            d["layers"] = self.layers
        return d

    def base_run(self, point: float) -> Scale:
        """The scale whose base run has a checkpoint at ``point`` x F_c: this one, or its
        longer base run (``long_base_fc``, ``long_points``)."""
        if point in self.points:
            return self
        if point in self.long_points and self.long_base_fc is not None:
            return replace(
                self,
                base_fc=self.long_base_fc,
                points=self.long_points,
                long_base_fc=None,
                long_points=(),
            )
        raise MoegrowError(
            f"growth point {point} x F_c is not one of the scale's "
            f"{tuple(sorted(self.points + self.long_points))}"
        )

    @property
    def label(self) -> str:
        """Folder name of this scale's runs and outcomes."""
        return self.name if self.layers is None else f"{self.name}-{self.layers}layers"

    @property
    def decay_start(self) -> float:
        return self.base_fc * (1.0 - self.decay_fraction)


MICRO = Scale(
    name="micro",
    preset="tiny",
    vocab=512,
    seq_len=128,
    batch_size=16,
    lr=3e-3,
    base_warmup_steps=50,
    grown_warmup_steps=20,
    base_fc=4.0,
    decay_fraction=0.2,
    points=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    early=0.5,
    late=3.0,
    mid=1.5,
    extra_fc=0.5,
    total_fc=2.0,
    total_points=(0.5, 1.0, 1.5),
    eval_points=6,
    eval_tokens=8192,
    upcycle_point=2.0,
)
DEEP = Scale(
    name="deep",
    preset="deep",
    vocab=320,
    seq_len=128,
    batch_size=16,
    lr=3e-3,
    base_warmup_steps=100,
    grown_warmup_steps=20,
    base_fc=15.0,
    decay_fraction=0.2,
    points=(0.5, 1.0, 2.0, 3.0, 6.0, 9.0, 12.0, 13.5, 15.0),
    early=0.5,
    late=6.0,
    mid=3.0,
    extra_fc=1.0,
    total_fc=6.0,
    total_points=(1.0, 2.0, 3.0),
    eval_points=8,
    eval_tokens=65536,
    long_base_fc=30.0,
    long_points=(24.0,),
)
#: What the ``small`` scale needs (docs/RESULTS.md: measured on an H200 at batch 8 x 256).
SMALL_NEEDS = (
    "scale 'small' is plan-only: its base (7.55 M active parameters) has F_c = 151 M tokens "
    "(6.8e15 FLOPs), so the base run alone (4 x F_c) is 604 M tokens, about 216 passes over the "
    "built-in corpus (2.8 M tokens at vocabulary 8192), and about 4.8 h of one H200 at the 34.8 k "
    "tokens/s measured. Pass --text with a corpus of at least ~600 M tokens and run it on a GPU, "
    "or use --scale deep (8 layers, about 1.6 CPU-minutes per F_c) or --scale micro on a CPU"
)
SCALES = {
    "micro": MICRO,
    "deep": DEEP,
    "small": replace(
        MICRO,
        name="small",
        preset="small",
        vocab=8192,
        seq_len=256,
        batch_size=32,
        lr=1e-3,
        base_warmup_steps=100,
        grown_warmup_steps=50,
        eval_points=8,
        eval_tokens=32768,
        plan_only=SMALL_NEEDS,
    ),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise MoegrowError(f"--scale {name!r}: unknown; choose one of {', '.join(SCALES)}")
    return SCALES[name]
