"""Router statistics during training: expert loads, the load-balancing loss, balance metrics and
the aux-loss-free expert-bias update.

All of them start from the raw router logits transformers returns with
``output_router_logits=True`` (one ``[tokens, E]`` tensor per MoE layer). Expert loads are
summed over every process (``all_reduce``) so that the balance loss and the bias update see the
global batch, as in the paper ("global-batch load-balancing loss", PAPER.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from moegrow.families import family_for


@dataclass(frozen=True)
class RouterKind:
    """How routers of a model choose experts."""

    scoring: str
    """``softmax`` (incl. top-k-then-softmax: the choice is the same) or ``sigmoid``."""
    top_k: int
    num_experts: int


def selection_scores(logits: torch.Tensor, kind: RouterKind, bias: torch.Tensor | None):
    """Scores whose top-k is the router's choice (softmax is monotonic: logits suffice)."""
    if kind.scoring == "sigmoid":
        scores = torch.sigmoid(logits.float())
        return scores + bias.float() if bias is not None else scores
    return logits.float()


def expert_loads(
    router_logits: tuple[torch.Tensor, ...],
    kind: RouterKind,
    biases: list[torch.Tensor | None],
    *,
    reduce: bool = True,
) -> torch.Tensor:
    """Tokens routed to each expert, per MoE layer: ``[layers, E]`` float64, summed over
    processes unless ``reduce`` is False. All layers are handled in one batched top-k."""
    if not router_logits:
        return torch.zeros(0, kind.num_experts, dtype=torch.float64)
    with torch.no_grad():
        logits = torch.stack([t.reshape(-1, kind.num_experts) for t in router_logits])  # (L, T, E)
        bias = None
        if any(b is not None for b in biases):
            bias = torch.stack(
                [b if b is not None else torch.zeros(kind.num_experts) for b in biases]
            ).to(logits.device)[:, None, :]  # (L, 1, E)
        choice = selection_scores(logits, kind, bias).topk(kind.top_k, dim=-1).indices
        layers = choice.shape[0]
        total = torch.zeros(layers, kind.num_experts, dtype=torch.float64, device=logits.device)
        total.scatter_add_(
            1,
            choice.reshape(layers, -1),
            torch.ones_like(choice, dtype=torch.float64).reshape(layers, -1),
        )
    if reduce and dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
    return total


def balance_loss(
    router_logits: tuple[torch.Tensor, ...], kind: RouterKind, loads: torch.Tensor
) -> torch.Tensor:
    """Switch-Transformer load-balancing loss ``E * sum_i f_i * P_i`` averaged over layers
    (Fedus et al. 2021, arXiv 2101.03961, eq. 4): f_i the global fraction of routed tokens
    (no gradient), P_i the mean routing probability of expert i on this process's tokens (its
    gradient is averaged over processes like every other gradient)."""
    if not router_logits:
        return torch.zeros(())
    logits = torch.stack([t.reshape(-1, kind.num_experts) for t in router_logits]).float()
    if kind.scoring == "sigmoid":
        s = torch.sigmoid(logits)
        probs = s / s.sum(-1, keepdim=True)
    else:
        probs = logits.softmax(-1)  # (L, T, E)
    f = (loads / loads.sum(-1, keepdim=True).clamp(min=1)).to(probs)  # (L, E)
    return (kind.num_experts * (f * probs.mean(1)).sum(-1)).mean()


class RouterCapture:
    """Collects every router's logits during a forward pass with forward hooks, as
    transformers' own ``output_router_logits`` does (same module class and output index, read
    from the model's ``_can_record_outputs``), but without transformers also computing its own
    auxiliary loss, which moegrow replaces with the global-batch one."""

    def __init__(self, model):
        spec = getattr(model, "_can_record_outputs", None) or {}
        spec = spec.get("router_logits")
        self.logits: list[torch.Tensor] = []
        self.handles = []
        if spec is None:
            return
        target, index = (
            (spec.target_class, spec.index) if hasattr(spec, "target_class") else (spec, 0)
        )
        self.index = index
        for module in model.modules():
            if isinstance(module, target):
                self.handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module, args, output) -> None:
        self.logits.append(output[self.index] if isinstance(output, (tuple, list)) else output)

    def take(self) -> tuple[torch.Tensor, ...]:
        """The logits captured since the last call, in layer order."""
        out, self.logits = tuple(self.logits), []
        return out


def balance_metrics(loads: torch.Tensor) -> dict[str, list[float]]:
    """Per layer: ``load_max`` = busiest expert's share x E (1 = perfectly even) and
    ``load_entropy`` = entropy of the load distribution / log E (1 = perfectly even)."""
    if loads.numel() == 0:
        return {"load_max": [], "load_entropy": []}
    frac = loads / loads.sum(-1, keepdim=True).clamp(min=1)
    num_experts = loads.shape[-1]
    entropy = -(frac * frac.clamp(min=1e-30).log()).sum(-1) / math.log(num_experts)
    return {
        "load_max": [round(float(v), 4) for v in frac.max(-1).values * num_experts],
        "load_entropy": [round(float(v), 4) for v in entropy],
    }


@torch.no_grad()
def update_expert_biases(biases: list[torch.Tensor | None], loads: torch.Tensor, rate: float):
    """Aux-loss-free balancing (DeepSeek-V3; PAPER.md): ``b_i += rate * sign(mean_load -
    load_i)``: under-loaded experts become more likely to be chosen."""
    for bias, load in zip(biases, loads):
        if bias is not None:
            step = rate * torch.sign(load.mean() - load)
            bias.add_(step.to(device=bias.device, dtype=bias.dtype))


def router_kind(config: dict) -> RouterKind | None:
    family = family_for(config)
    if family.experts is None or family.router is None:
        return None
    scoring = family.router.scoring_for(family.text_of(config))
    num_experts, top_k = family.expert_counts(config)
    return RouterKind("sigmoid" if scoring == "sigmoid" else "softmax", top_k, num_experts)


def expert_bias_buffers(model, config: dict) -> list[torch.Tensor | None]:
    """The expert-bias buffer of every router, in layer order (None where a router has none).
    Routers are found by the family's declared router tensor name, never by class name."""
    family = family_for(config)
    if family.router is None:
        return []
    suffix = "." + family.router.weight.rsplit(".", 1)[0]
    routers = [m for name, m in model.named_modules() if name.endswith(suffix)]
    return [getattr(m, "e_score_correction_bias", None) for m in routers]
