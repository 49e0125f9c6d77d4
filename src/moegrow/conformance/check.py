"""Grow a tiny instance of a model type every way and compare transformers' logits.

One tiny random instance (:mod:`moegrow.conformance.tiny`) is saved with ``save_pretrained`` and
loaded back once for the reference logits; then width x2 ``--noise 0``, depth x2 ``--zero-init``
and both are grown with :func:`moegrow.growth.grow.grow`, each output is loaded by transformers
(no missing or unexpected keys allowed) and its float32 logits compared with the tolerance of
:mod:`moegrow.growth.verify`. Each growth ends as ``exact``, ``delta`` (grown, logits differ),
``refused`` (moegrow declined, with its one-line reason) or ``error`` (anything else).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moegrow.growth.spec import GrowthSpec

GROWTHS: dict[str, GrowthSpec] = {
    "width": GrowthSpec(width=2, noise=0.0),
    "depth": GrowthSpec(depth=2, zero_init=True),
    "both": GrowthSpec(depth=2, zero_init=True, width=2, noise=0.0),
}
BATCH, SEQ_LEN = 2, 16


@dataclass
class Outcome:
    growth: str
    status: str
    """``exact``, ``delta``, ``refused`` or ``error``."""
    max_diff: float | None = None
    tolerance: float | None = None
    detail: str = ""

    def line(self) -> str:
        if self.max_diff is None:
            return f"{self.growth:6s} {self.status:8s} {self.detail}".rstrip()
        return (
            f"{self.growth:6s} {self.status:8s} |delta logits| {self.max_diff:.3g} "
            f"(tolerance {self.tolerance:.3g}) {self.detail}".rstrip()
        )


@dataclass
class TypeReport:
    model_type: str
    family: str | None
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""
    """Why no growth could be tried (the tiny instance did not build, save or load)."""

    @property
    def exact(self) -> bool:
        """Every growth exact, or refused by a declared family (never grown wrongly)."""
        if self.error or self.family is None:
            return False
        return all(o.status in ("exact", "refused") for o in self.outcomes) and any(
            o.status == "exact" for o in self.outcomes
        )

    def status(self, growth: str) -> str:
        return next((o.status for o in self.outcomes if o.growth == growth), "error")


def _load(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    loaded: Any = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, output_loading_info=True
    )
    model, info = loaded
    bad = {k: sorted(v)[:3] for k, v in info.items() if k in ("missing_keys", "unexpected_keys")}
    bad = {k: v for k, v in bad.items() if v}
    return model.eval(), bad


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float()


def check_model_type(
    model_type: str,
    workdir: str | Path | None = None,
    *,
    growths: tuple[str, ...] = tuple(GROWTHS),
    seed: int = 0,
    **overrides,
) -> TypeReport:
    """Grow a tiny ``model_type`` every way of ``growths`` and report each (see module doc)."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="moegrow-check-") as tmp:
            return check_model_type(model_type, tmp, growths=growths, seed=seed, **overrides)
    import torch

    from moegrow.conformance.discovery import one_line
    from moegrow.conformance.tiny import build_tiny
    from moegrow.errors import MoegrowError
    from moegrow.families import BY_MODEL_TYPE
    from moegrow.growth.grow import grow
    from moegrow.growth.verify import EXACT_TOLERANCE

    family = BY_MODEL_TYPE.get(model_type)
    report = TypeReport(model_type, family.name if family else None)
    src = Path(workdir) / model_type
    try:
        model = build_tiny(model_type, seed=seed, **overrides)
        model.save_pretrained(src)
        vocab = model.config.get_text_config().vocab_size
        del model
        ids = torch.randint(0, vocab, (BATCH, SEQ_LEN), generator=torch.Generator().manual_seed(0))
        ref_model, bad = _load(src)
        if bad:
            raise RuntimeError(f"the source itself reloads with {bad}")
        ref = _logits(ref_model, ids)
        del ref_model
    except Exception as e:  # a foreign constructor / save / load failing is reported, not raised
        report.error = one_line(e).replace(str(src), model_type)
        return report
    tolerance = EXACT_TOLERANCE * max(1.0, ref.abs().max().item())
    for name in growths:
        out = src.with_name(f"{model_type}-{name}")
        try:
            result = grow(src, out, GROWTHS[name], progress=False, overwrite=True)
        except MoegrowError as e:
            report.outcomes.append(
                Outcome(name, "refused", detail=str(e).replace(str(src), model_type))
            )
            continue
        except Exception as e:
            report.outcomes.append(Outcome(name, "error", detail=f"grow: {one_line(e)}"))
            continue
        try:
            grown, bad = _load(out)
            diff = (_logits(grown, ids) - ref).abs().max().item()
        except Exception as e:
            report.outcomes.append(Outcome(name, "error", detail=f"load: {one_line(e)}"))
            continue
        if bad:
            report.outcomes.append(Outcome(name, "error", diff, tolerance, f"loads with {bad}"))
            continue
        ok = diff <= tolerance
        note = "" if result.plan.exact else f"(plan: not exact: {'; '.join(result.plan.not_exact)})"
        report.outcomes.append(Outcome(name, "exact" if ok else "delta", diff, tolerance, note))
    return report


def check_all(model_types: list[str], workdir: str | Path | None = None) -> dict[str, TypeReport]:
    """:func:`check_model_type` for each of ``model_types``, in one work folder."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="moegrow-check-") as tmp:
            return check_all(model_types, tmp)
    return {t: check_model_type(t, workdir) for t in model_types}
