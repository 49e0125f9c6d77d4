"""What upcycling a user asked for: the options of ``moegrow upcycle``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

from moegrow.errors import GrowthError
from moegrow.growth.spec import SAMPLERS, Sampler

UpcycleRouter = Literal["random", "zero"]
Merge = Literal["average", "first"]
ROUTER_INITS: tuple[str, ...] = get_args(UpcycleRouter)
MERGES: tuple[str, ...] = get_args(Merge)


@dataclass(frozen=True)
class UpcycleSpec:
    """A dense -> MoE upcycling request."""

    experts: int
    """Routed experts per MoE layer: ``copies x granularity``."""
    top_k: int
    """Experts each token is routed to (a multiple of ``granularity`` for an exact upcycling)."""
    granularity: int = 1
    """G: the dense FFN's intermediate dimension is cut into G slices; every expert is one slice
    (width I/G) of one copy of the dense MLP."""
    router: UpcycleRouter = "random"
    """``random``: N(0, std^2) rows (std = the config's ``initializer_range``), one row per copy
    of the dense MLP, shared by that copy's G slices; ``zero``: zero rows."""
    noise: float = 0.0
    """Relative noise on the copies after the first: std = noise x the dense matrix's std."""
    drop: float = 0.0
    """Drop-Upcycling: fraction of each expert's intermediate neurons re-initialised from
    N(mean, std^2) of the dense matrix (different neurons per expert)."""
    shared_expert: bool = False
    """Keep the dense MLP as the shared expert (targets with one)."""
    layers: tuple[int, ...] | None = None
    """Layers to upcycle (None: all); the others stay dense where the target allows it."""
    sources: tuple[str, ...] = ()
    """Further dense checkpoints of the same architecture (Branch-Train-MiX): the copies are
    split evenly between the source and these, in order."""
    merge: Merge = "average"
    """With ``sources``: attention, norms and embeddings are their ``average`` or the
    ``first`` source's."""
    target: str | None = None
    """Target model_type (None: the source's MoE twin)."""
    seed: int = 0
    """Seed of the noise, the dropped neurons and the random router rows."""
    sampler: Sampler = "table"
    """How noise and random router rows are drawn (see ``moegrow grow --sampler``)."""
    base_tokens: int | None = None
    """Tokens the dense source was trained on, recorded as sunk cost when it has no ledger."""

    def __post_init__(self) -> None:
        _positive("--experts", self.experts)
        _positive("--top-k", self.top_k)
        _positive("--granularity", self.granularity)
        if self.seed < 0:
            raise GrowthError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.sampler not in SAMPLERS:
            raise GrowthError(
                f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}"
            )
        if self.router not in ROUTER_INITS:
            raise GrowthError(
                f"--router must be one of {', '.join(ROUTER_INITS)}, got {self.router!r}"
            )
        if not (isinstance(self.noise, (int, float)) and self.noise >= 0):
            raise GrowthError(f"--noise must be a number >= 0, got {self.noise!r}")
        if not (isinstance(self.drop, (int, float)) and 0 <= self.drop < 1):
            raise GrowthError(f"--drop must be a ratio in [0, 1), got {self.drop!r}")
        if self.top_k > self.experts:
            raise GrowthError(
                f"--top-k: {self.top_k} experts per token is more than the {self.experts} "
                "experts (--experts)"
            )
        if self.experts % self.granularity:
            raise GrowthError(
                f"--experts {self.experts} is not a multiple of --granularity "
                f"{self.granularity}: experts are copies x slices; use e.g. --experts "
                f"{self.granularity * max(1, self.experts // self.granularity)}"
            )
        if self.merge not in MERGES:
            raise GrowthError(f"--merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        n_src = 1 + len(self.sources)
        if self.copies % n_src:
            raise GrowthError(
                f"--experts {self.experts} with --granularity {self.granularity} makes "
                f"{self.copies} copies, which cannot be split evenly between the {n_src} "
                f"sources (--from); use a multiple of {n_src * self.granularity} experts"
            )
        if self.layers is not None and not self.layers:
            raise GrowthError("--layers is empty: give layer indices, e.g. 1,2,3")
        if self.base_tokens is not None and self.base_tokens < 0:
            raise GrowthError(f"--base-tokens must be >= 0, got {self.base_tokens!r}")

    @property
    def copies(self) -> int:
        return self.experts // self.granularity

    @property
    def copies_per_source(self) -> int:
        return self.copies // (1 + len(self.sources))

    # Attributes the shard writer reads from any plan's spec.
    @property
    def grows_depth(self) -> bool:
        return False

    def to_json(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        d["sources"] = list(self.sources)
        return d


def _positive(option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GrowthError(f"{option} must be an integer >= 1, got {value!r}")


def parse_layers(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` or ``"1-3"`` -> (1, 2, 3)."""
    out: list[int] = []
    try:
        for item in text.replace(" ", "").split(","):
            lo, sep, hi = item.partition("-")
            out += range(int(lo), int(hi) + 1) if sep else [int(lo)]
    except ValueError:
        raise GrowthError(
            f"--layers must be layer indices like 1,2,3 or 1-3; got {text!r}"
        ) from None
    return tuple(sorted(set(out)))
