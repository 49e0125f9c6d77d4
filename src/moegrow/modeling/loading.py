"""Loading checkpoints into transformers' model classes for training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from moegrow.errors import CheckpointError
from moegrow.modeling import experts_kernel

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


#: What transformers raises for a folder it cannot make a model of (bad config values, shapes
#: that disagree with the config, unknown classes); the user's input, not a bug of moegrow.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError)


@contextmanager
def transformers_errors(folder: Path, what: str = "load") -> Iterator[None]:
    """Turn transformers' errors about ``folder`` into one-line CheckpointErrors; errors of the
    environment (full disk, memory) pass through to the CLI's own message."""
    from moegrow.io.resources import environment_message

    try:
        yield
    except LOAD_ERRORS as e:
        if environment_message(e) is not None:
            raise
        text = " ".join(str(e).split())
        raise CheckpointError(
            f"{folder}: transformers cannot {what} it ({type(e).__name__}: {text[:300]}); "
            "check config.json against the tensors"
        ) from None


def config_param_count(folder: Path) -> int:
    """Parameters and buffers of the model config.json describes, counted on the meta device
    (nothing allocated): what loading will allocate, whatever the shards hold."""
    from transformers import AutoConfig

    from moegrow.modeling.variants import register

    register()

    with transformers_errors(folder, "build a model from"):
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = auto_model_class(folder).from_config(config)
    return sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers())


def load_model(folder: Path, device: torch.device) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    from moegrow.modeling.variants import register

    register()  # moegrow's own model types, known to transformers' Auto classes

    # CPU: the eager expert loop is the fastest correct kernel (grouped_mm ~20% slower,
    # batched_mm ~80x slower: ECOSYSTEM.md §4); GPU: transformers' default grouped_mm, made
    # autocast-aware (experts_kernel.py).
    kwargs = {"experts_implementation": "eager"} if device.type == "cpu" else {}
    with transformers_errors(folder):
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
        except (TypeError, ValueError):
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if device.type == "cuda":
        experts_kernel.use_for_training(model)  # grouped_mm, in bf16 under autocast
    # transformers annotates .to() narrowly; a torch.device is what it takes at run time
    return model.to(device)  # type: ignore[arg-type]


def auto_model_class(folder: Path):
    """transformers' auto class that builds the checkpoint with its language-model head: the
    causal LM, or for a multimodal wrapper without one (Qwen3-VL-MoE, GLM-4.5V) the
    image-text-to-text model, run here on text alone."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(folder)
    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        if type(config) in auto._model_mapping:
            return auto
    return AutoModelForCausalLM  # whose error lists the model types it knows
