"""Running experiments of ``moegrow repro`` and writing their outcomes."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.experiments.repro import ALL, CAMPAIGN_GROUP
from moegrow.experiments.repro.depth_causes import CAMPAIGN
from moegrow.experiments.repro.experiments import DEFAULT_SEEDS, EXPERIMENTS, Outcome
from moegrow.experiments.repro.report import write_outcome
from moegrow.experiments.repro.runs import RunStore
from moegrow.experiments.repro.scales import get_scale
from moegrow.experiments.repro.upcycling import UPCYCLE
from moegrow.modeling.quiet import quiet_transformers

DEFAULT_OUT = "moegrow-repro"


#: Every experiment by name: the paper's seven, the finding-1 campaign, then the others.
REGISTRY = {**EXPERIMENTS, **CAMPAIGN, **UPCYCLE}


def expand(experiments: str | list[str]) -> list[str]:
    """Experiment names in the order given, the groups ``all`` (the paper's seven) and
    ``depth-campaign`` (the finding-1 campaign, decisive comparison first) expanded."""
    out: list[str] = []
    for name in [experiments] if isinstance(experiments, str) else experiments:
        if name == ALL:
            group = list(EXPERIMENTS)
        elif name == CAMPAIGN_GROUP:
            group = list(CAMPAIGN)
        elif name in REGISTRY:
            group = [name]
        else:
            raise MoegrowError(
                f"experiment {name!r}: unknown; choose from {', '.join(REGISTRY)}, {ALL} or "
                f"{CAMPAIGN_GROUP}"
            )
        out += [n for n in group if n not in out]
    return out


@quiet_transformers()
def run_repro(
    experiment: str | list[str],
    scale: str = "micro",
    *,
    out: str | Path = DEFAULT_OUT,
    seeds: int | None = None,
    texts: list[str] | None = None,
    device: str = "auto",
    layers: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> list[Outcome]:
    """Run experiments (names or groups, in the given order) at ``scale``; returns the outcomes
    it wrote. ``layers``: a base model of this many layers instead of the preset's (its own
    runs)."""
    from dataclasses import replace

    names = expand(experiment)
    if seeds is not None and seeds < 1:
        raise MoegrowError(f"--seeds must be >= 1, got {seeds}")
    if layers is not None and layers < 1:
        raise MoegrowError(f"--layers must be >= 1, got {layers}")
    sc = replace(get_scale(scale), device=device, layers=layers)
    if sc.plan_only and texts is None:
        raise MoegrowError(sc.plan_only)
    root = Path(out) / sc.label
    store = RunStore(root, sc, texts=texts, progress=progress, stop_after=stop_after)
    outcomes, pages = [], []
    for name in names:
        n = seeds if seeds is not None else DEFAULT_SEEDS.get(name, 1)
        command = _command(name, scale, out, seeds, texts, layers)
        if progress:
            print(f"[repro] {name} at scale {scale}, {n} seed(s)", flush=True)
        t0 = time.perf_counter()
        outcome = REGISTRY[name](store, list(range(n)))
        md = write_outcome(outcome, root / name, command)
        outcomes.append(outcome)
        pages.append(md.read_text().replace("](", f"]({name}/"))
        if progress:
            print(md.read_text(), flush=True)
            print(
                f"[repro] {name}: {time.perf_counter() - t0:.0f} s; wrote {md.parent}", flush=True
            )
    if len(names) > 1:
        (root / "results.md").write_text("\n".join(pages))
    return outcomes


def _command(
    name: str, scale: str, out, seeds: int | None, texts: list[str] | None, layers: int | None
) -> str:
    args = ["moegrow", "repro", name, "--scale", scale]
    if str(out) != DEFAULT_OUT:
        args += ["--out", str(out)]
    if layers is not None:
        args += ["--layers", str(layers)]
    if seeds is not None:
        args += ["--seeds", str(seeds)]
    for t in texts or []:
        args += ["--text", t]
    return shlex.join(args)
