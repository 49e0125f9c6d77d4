"""Check a grown checkpoint against its source through transformers' own model classes.

Both models are loaded on CPU in float32 and run on the same token batch; the result is the
largest absolute logit difference and KL(source || grown). Whether the growth was meant to be
exact comes from the growth card that ``moegrow grow`` wrote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.families import family_for
from moegrow.flops import tensor_stats
from moegrow.io.card import read_card
from moegrow.io.checkpoint import Checkpoint

#: Largest |delta logits| (float32) accepted for a growth that is meant to be exact, relative to
#: the largest |logit| when that exceeds 1: duplicated experts sum their halves in another
#: order, and float32 rounding grows with the magnitude of what is summed (a trained tiny model
#: with logits up to ~15 shows |delta| ~1e-5 with KL ~2e-8).
EXACT_TOLERANCE = 1e-5
#: Most tokens one verify batch may hold (the logits alone are batch x seq x vocab floats).
MAX_TOKENS = 1 << 14


@dataclass
class VerifyResult:
    max_abs_diff: float
    kl: float
    expected_exact: bool | None
    tolerance: float

    @property
    def ok(self) -> bool:
        return not self.expected_exact or self.max_abs_diff <= self.tolerance

    def to_json(self) -> dict:
        return {
            "max_abs_diff": self.max_abs_diff,
            "kl_source_grown": self.kl,
            "expected_exact": self.expected_exact,
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else physical)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def float32_bytes(folder: Path) -> int:
    """Bytes of the model in float32: the larger of what the headers hold and what config.json
    makes transformers allocate (they differ when the config disagrees with the tensors)."""
    from moegrow.growth.plan import validate_source
    from moegrow.modeling.loading import config_param_count

    with Checkpoint(folder) as ckpt:
        fam = family_for(ckpt.config, where=str(ckpt.folder / "config.json"))
        validate_source(ckpt, fam)  # missing tensors would be initialised at random by loading
        stats = tensor_stats(ckpt.tensors.values(), fam, ckpt.config)
    return 4 * max(stats.total, config_param_count(folder))


def verify(
    src: str | os.PathLike,
    grown: str | os.PathLike,
    *,
    batch: int = 2,
    seq_len: int = 32,
    seed: int = 0,
    tolerance: float = EXACT_TOLERANCE,
) -> VerifyResult:
    """Compare the logits of ``grown`` with those of ``src`` on one random token batch."""
    src, grown = Path(src), Path(grown)
    for option, value in (("--batch", batch), ("--seq-len", seq_len)):
        if not 1 <= value <= MAX_TOKENS:
            raise MoegrowError(f"verify: {option} must be in 1..{MAX_TOKENS}, got {value}")
    if batch * seq_len > MAX_TOKENS:
        raise MoegrowError(
            f"verify: --batch x --seq-len = {batch * seq_len} tokens, more than {MAX_TOKENS}; "
            "a few short sequences show any difference"
        )
    need = float32_bytes(src) + float32_bytes(grown)
    # Both models in float32, plus loading overhead and activations: refuse before crashing.
    estimate = int(need * 1.25) + 512 * 2**20
    have = available_memory()
    if estimate > have:
        raise MoegrowError(
            f"verify: loading {src} and {grown} in float32 needs about {estimate / 2**30:.1f} GiB, "
            f"but {have / 2**30:.1f} GiB is available; run it on a machine with more memory"
        )
    import torch

    from moegrow.modeling.variants import register

    register()  # moegrow's own model types, known to transformers' Auto classes
    from moegrow.modeling.loading import auto_model_class, transformers_errors

    card = read_card(grown)
    expected_exact = card.get("exact") if card else None
    torch.manual_seed(seed)
    with torch.no_grad():
        with transformers_errors(src):
            model = auto_model_class(src).from_pretrained(src, dtype=torch.float32)
        model.eval()
        vocab = model.config.get_text_config().vocab_size
        ids = torch.randint(
            0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(seed)
        )
        with transformers_errors(src, "run"):
            ref = model(ids).logits.float()
        del model
        with transformers_errors(grown):
            model = auto_model_class(grown).from_pretrained(grown, dtype=torch.float32)
        model.eval()
        if model.config.get_text_config().vocab_size != vocab:
            raise MoegrowError(
                f"{grown}: vocabulary {model.config.get_text_config().vocab_size} differs from "
                f"{src}'s {vocab}; the logits cannot be compared"
            )
        with transformers_errors(grown, "run"):
            out = model(ids).logits.float()
        del model
    diff = (out - ref).abs().max().item()
    logp, logq = ref.log_softmax(-1), out.log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1).mean().item()
    scale = max(1.0, ref.abs().max().item())
    return VerifyResult(diff, kl, expected_exact, tolerance * scale)
