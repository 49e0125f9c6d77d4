"""An autocast-aware grouped experts kernel, for training MoE models on GPUs.

``moegrow train`` keeps float32 master weights and runs forward passes under bf16 autocast.
Autocast casts the weights of every ``nn.Linear`` to bf16 for the matmul, but transformers'
``grouped_mm`` experts kernel is not autocast-aware: it casts the tokens to the experts' weight
dtype (PyTorch issue 174763), so the experts, most of an MoE's FLOPs, run in float32.

:func:`autocast_grouped_mm_forward` runs transformers' own ``grouped_mm`` experts forward on a
view of the experts module whose floating-point parameters are cast to the autocast dtype, the
way autocast treats ``nn.Linear`` (the cast is differentiable, so float32 gradients reach the
master weights). Outside autocast it is transformers' kernel unchanged. It is registered with
transformers' ``ExpertsInterface`` under :data:`NAME` and switched on by :func:`use_for_training`.
"""

from __future__ import annotations

import torch

NAME = "moegrow_autocast_grouped_mm"


class _AutocastWeights:
    """Attribute access to an experts module, with its floating-point parameters cast."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype):
        self._module = module
        self._dtype = dtype

    def __getattr__(self, name: str):
        value = getattr(self._module, name)
        if isinstance(value, torch.nn.Parameter) and value.is_floating_point():
            return value.to(self._dtype)
        return value


def autocast_grouped_mm_forward(self, hidden_states, top_k_index, top_k_weights):
    """transformers' ``grouped_mm`` experts forward, in the autocast dtype when autocast is on."""
    from transformers.integrations.moe import grouped_mm_experts_forward

    device = hidden_states.device.type
    experts = self
    if torch.is_autocast_enabled(device):
        experts = _AutocastWeights(self, torch.get_autocast_dtype(device))
    return grouped_mm_experts_forward(experts, hidden_states, top_k_index, top_k_weights)


def register() -> None:
    from transformers.integrations.moe import ExpertsInterface

    ExpertsInterface.register(NAME, autocast_grouped_mm_forward)


def use_for_training(model) -> str | None:
    """Switch ``model``'s experts from ``grouped_mm`` to the autocast-aware kernel; returns the
    implementation it replaced (to restore before saving), or None when the model's experts use
    another kernel (or it has none)."""
    config = model.config
    if getattr(config, "_experts_implementation", None) != "grouped_mm":
        return None
    register()
    config._experts_implementation = NAME
    return "grouped_mm"
