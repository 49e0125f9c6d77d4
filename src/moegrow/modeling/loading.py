"""Loading checkpoints into transformers' model classes for training and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from moegrow.modeling import experts_kernel

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(folder: Path, device: torch.device) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    from moegrow.modeling.variants import register

    register()  # moegrow's own model types, known to transformers' Auto classes

    # CPU: the eager expert loop is the fastest correct kernel (grouped_mm ~20% slower,
    # batched_mm ~80x slower: ECOSYSTEM.md §4); GPU: transformers' default grouped_mm, made
    # autocast-aware (experts_kernel.py).
    kwargs = {"experts_implementation": "eager"} if device.type == "cpu" else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except (TypeError, ValueError):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if device.type == "cuda":
        experts_kernel.use_for_training(model)  # grouped_mm, in bf16 under autocast
    # transformers annotates .to() narrowly; a torch.device is what it takes at run time
    return model.to(device)  # type: ignore[arg-type]
