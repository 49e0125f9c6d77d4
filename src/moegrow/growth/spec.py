"""What growth a user asked for: the options of ``moegrow plan`` and ``moegrow grow``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from moegrow.errors import GrowthError

DepthMethod = Literal["interpose", "stack"]
ExpertOrder = Literal["append", "interleave"]
RouterInit = Literal["copy", "random", "random-all"]
ExpertInit = Literal["copy", "random"]
TopKRule = Literal["scale", "keep"]
Sampler = Literal["table", "torch"]  # as in moegrow.growth.sampler (no numpy import here)

DEPTH_METHODS: tuple[str, ...] = get_args(DepthMethod)
EXPERT_ORDERS: tuple[str, ...] = get_args(ExpertOrder)
ROUTER_INITS: tuple[str, ...] = get_args(RouterInit)
EXPERT_INITS: tuple[str, ...] = get_args(ExpertInit)
TOP_K_RULES: tuple[str, ...] = get_args(TopKRule)
SAMPLERS: tuple[str, ...] = get_args(Sampler)


@dataclass(frozen=True)
class GrowthSpec:
    """A growth request. The defaults grow nothing; see each field."""

    depth: int = 1
    """Depth factor K: each (not kept) source layer appears K times. 1 = no depth growth."""
    depth_method: DepthMethod = "interpose"
    """``interpose``: new layer j copies source layer j // K (l0 l0 l1 l1 ...), the paper's
    method; ``stack``: the block of layers is repeated (l0 l1 l0 l1), as in LLaMA-Pro/SOLAR."""
    keep_first: int = 0
    """Leave this many first source layers un-duplicated."""
    keep_last: int = 0
    """Leave this many last source layers un-duplicated."""
    layer_map: tuple[int, ...] | None = None
    """Explicit map: output layer j copies source layer ``layer_map[j]`` (overrides depth)."""
    zero_init: bool = False
    """Zero the copies' residual output projections, so the grown model computes exactly what
    the source did (the paper's main method does not: plain copies)."""
    width: int = 1
    """Width factor M: E experts -> M*E. 1 = no width growth."""
    top_k: TopKRule | int = "scale"
    """``scale``: k -> M*k (the paper's rule, needed for exactness); ``keep``: k unchanged; or
    an explicit number."""
    noise: float = 0.01
    """Relative noise on copied experts and router rows: std = noise x the copied tensor's std."""
    expert_order: ExpertOrder = "append"
    """``append``: copy of expert i is expert E+i; ``interleave``: copies follow their original."""
    experts: ExpertInit = "copy"
    """``copy``: new experts copy their originals (plus noise); ``random``: new experts freshly
    initialised, N(0, initializer_range^2) like the model's own init (the paper's random-experts
    baseline)."""
    router: RouterInit = "copy"
    """``copy``: copied router rows (+ noise); ``random``: N(0, 0.02^2) rows and zero biases for
    the new experts only; ``random-all``: the whole router re-initialised, original experts'
    rows too (the authors' random-router baseline). moegrow's ``random`` keeps the trained rows
    so that only the new experts' routing is unknown."""
    balance_bias_noise: bool = False
    """Add the ``--noise`` (alpha x the std of the whole bias) to the copies of the aux-loss-free
    selection bias (DeepSeek-V3's ``e_score_correction_bias``), as the authors' reference does.
    Off by default: an exact copy keeps each copy selected exactly when its original is."""
    seed: int = 0
    """Seed of the noise; each tensor's noise is seeded by (seed, the tensor's name in the width
    growth of the source), so the copies of a layer under depth growth carry the same noise."""
    sampler: Sampler = "table"
    """How the noise and random rows are drawn: ``table`` (a counter-based hash through a table
    of normal quantiles, fast) or ``torch`` (``torch.normal_`` per chunk: the bytes of releases
    before the ``table`` sampler). See :mod:`moegrow.growth.sampler`."""

    def __post_init__(self) -> None:
        _check_int("--depth", self.depth, minimum=1)
        _check_int("--width", self.width, minimum=1)
        _check_int("--keep-first", self.keep_first, minimum=0)
        _check_int("--keep-last", self.keep_last, minimum=0)
        _check_int("--seed", self.seed, minimum=0)
        _check_choice("--depth-method", self.depth_method, DEPTH_METHODS)
        _check_choice("--expert-order", self.expert_order, EXPERT_ORDERS)
        _check_choice("--router", self.router, ROUTER_INITS)
        _check_choice("--experts", self.experts, EXPERT_INITS)
        _check_choice("--sampler", self.sampler, SAMPLERS)
        if isinstance(self.top_k, str):
            _check_choice("--top-k", self.top_k, TOP_K_RULES)
        else:
            _check_int("--top-k", self.top_k, minimum=1)
        if not (isinstance(self.noise, (int, float)) and 0 <= self.noise < math.inf):
            raise GrowthError(f"--noise must be a finite number >= 0, got {self.noise!r}")
        if self.layer_map is not None:
            if self.depth != 1:
                raise GrowthError("--layer-map and --depth both given: use one of them")
            if not self.layer_map:
                raise GrowthError("--layer-map is empty: give source layer indices, e.g. 0,0,1,1")

    @property
    def grows_depth(self) -> bool:
        return self.depth > 1 or self.layer_map is not None

    @property
    def grows_width(self) -> bool:
        """Experts multiplied, or only top-k changed (an explicit ``--top-k`` at width 1)."""
        return self.width > 1 or not isinstance(self.top_k, str)

    def to_json(self) -> dict:
        d = asdict(self)
        d["layer_map"] = list(self.layer_map) if self.layer_map is not None else None
        return d


def _check_int(option: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GrowthError(f"{option} must be an integer >= {minimum}, got {value!r}")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GrowthError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def parse_layer_map(text: str) -> tuple[int, ...]:
    """``"0,0,1,1"`` -> (0, 0, 1, 1)."""
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        raise GrowthError(
            f"--layer-map must be comma-separated source layer indices like 0,0,1,1; got {text!r}"
        ) from None


def parse_factor(option: str, text: str) -> int:
    """Parse ``--depth``/``--width``: an integer >= 2."""
    try:
        value = int(text)
    except ValueError:
        raise GrowthError(f"{option} must be an integer >= 2, got {text!r}") from None
    if value < 2:
        raise GrowthError(f"{option} must be an integer >= 2, got {text!r}")
    return value


def parse_top_k(text: str) -> TopKRule | int:
    if text == "scale":
        return "scale"
    if text == "keep":
        return "keep"
    try:
        return int(text)
    except ValueError:
        raise GrowthError(f"--top-k must be scale, keep or a number, got {text!r}") from None
