"""The next-token loss of a causal LM, computed from its last hidden states chunk by chunk.

A transformers ``...ForCausalLM`` writes the logits of every position (``tokens x vocab``
float32: 64 MiB for 2048 tokens of a vocabulary of 8192), then cross-entropy reads them, writes
log-probabilities, and the backward pass reads and writes them again. On a CPU that memory
traffic, not arithmetic, dominates small models: on the ``tiny`` preset the head and its loss
took about 80% of a training step. :func:`linear_cross_entropy` instead takes the hidden states
and the head's weight and, for one chunk of tokens at a time, computes the logits, their
log-sum-exp and the loss, and at once the gradient of the loss with respect to the chunk's
hidden states and the head's weight (softmax minus one-hot), so the logits never exist for the
whole batch and are read while they are still in cache. The backward pass only scales the
gradients already computed. This is the fused linear cross-entropy of Liger Kernel
(arXiv 2410.10989) and of Cut Cross-Entropy (arXiv 2411.09009), written here for PyTorch
tensors on any device.

:class:`NextTokenLoss` uses it only where the model's logits are exactly its base model's last
hidden states times the head's weight (a bias-free ``nn.Linear``, no logit scaling or soft-
capping), which it checks numerically on a sample before trusting it; otherwise it computes the
loss from the model's logits as usual. Under FSDP2 the whole model runs (so that its sharded
parameters are gathered) asked for the logits of no position, and the fused loss takes the body's
output from a hook and the head's weight as the root module gathered it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Logits of one chunk, in bytes: small enough for a CPU's caches, large enough for a GPU to
# see the whole batch at once.
CHUNK_BYTES = {"cpu": 16 << 20, "cuda": 1 << 30}
CHECK_RTOL = 1e-4


def _chunk_tokens(device: torch.device, vocab: int) -> int:
    return max(1, CHUNK_BYTES.get(device.type, 1 << 30) // (4 * vocab))


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype autocast would run the head's matmul in (``dtype`` when autocast is off)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Logits, softmax and the head's gradient: float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def _chunks(hidden, w, targets, dtype):
    """Per chunk of tokens: ``(start, hidden chunk, targets, logits, log-sum-exp, loss sum)``,
    with ``w`` the head weight already in ``dtype``; the logits in the accumulation dtype,
    computed with autocast off."""
    step = _chunk_tokens(hidden.device, w.shape[0])
    with torch.autocast(hidden.device.type, enabled=False):
        for start in range(0, hidden.shape[0], step):
            h = hidden[start : start + step].to(dtype)
            t = targets[start : start + step]
            logits = (h @ w.T).to(_accumulation_dtype(dtype))
            lse = torch.logsumexp(logits, dim=-1)
            loss = (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            yield start, h, t, logits, lse, loss


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``; the gradients are
    computed in the forward pass, chunk by chunk (module docstring)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype):
        acc = _accumulation_dtype(dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=acc)
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        w = weight.to(dtype)
        for start, h, t, logits, lse, loss in _chunks(hidden, w, targets, dtype):
            total += loss
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            probs[torch.arange(len(t), device=t.device), t] -= 1.0  # d loss / d logits
            g = probs.to(dtype)
            with torch.autocast(hidden.device.type, enabled=False):
                grad_hidden[start : start + len(t)] = g @ w
                if dtype == acc:
                    grad_weight.addmm_(g.T, h)
                else:
                    grad_weight += (g.T @ h).to(acc)
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total.to(acc)

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output, grad_weight * grad_output, None, None


@torch.no_grad()
def _chunked_loss_sum(hidden, weight, targets, dtype) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64, device=hidden.device)
    for *_, loss in _chunks(hidden, weight.to(dtype), targets, dtype):
        total += loss
    return total.to(_accumulation_dtype(dtype))


@torch.no_grad()
def linear_token_scores(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token, the cross-entropy of ``hidden @ weight.T`` against ``targets`` (accumulation
    dtype) and whether the target is the arg-max logit, without materialising the logits."""
    dtype = _compute_dtype(hidden.device, weight.dtype)
    losses, hits = [], []
    for _, _, t, logits, lse, _ in _chunks(hidden, weight.to(dtype), targets, dtype):
        losses.append(lse - logits.gather(1, t[:, None]).squeeze(1))
        hits.append(logits.argmax(dim=-1) == t)
    return torch.cat(losses), torch.cat(hits)


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets, reduction="sum")`` without materialising
    the logits. ``hidden``: ``[N, H]``; ``weight``: ``[V, H]``; ``targets``: ``[N]``. Under
    autocast the matmuls run in its dtype; log-sum-exp and the sum in float32 at least."""
    dtype = _compute_dtype(hidden.device, weight.dtype)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, dtype)
    return _chunked_loss_sum(hidden, weight, targets, dtype)


class NextTokenLoss:
    """``loss(input_ids, targets)`` -> summed next-token cross-entropy of ``model`` (call it
    under the same autocast as a forward pass). Each call is one forward pass of the model, as
    router hooks see it; the check at construction runs two more, which callers that collect
    router logits discard."""

    def __init__(
        self,
        model,
        sample_ids: torch.Tensor,
        *,
        compile: bool = False,
        fused: bool = True,
        sharded: bool = False,
    ):
        """``sample_ids``: a ``[rows, T]`` batch on the model's device, used once to check that
        the fused head reproduces the model's logits; ``fused=False`` always uses the logits.

        ``sharded``: the model is sharded with FSDP2 (its root module holding the embeddings and
        the head). Its parameters are whole only from the root's forward on, so the body is not
        called alone: the whole model runs, asked for the logits of no position, and the body's
        output is taken by a forward hook. The head's weight is then the root's unsharded
        weight (FSDP2 keeps the root's parameters gathered from its forward to its backward),
        and its gradient reaches FSDP's reduce-scatter like any other: no communication is
        added, and no rank ever holds the logits of its whole batch."""
        self.model = model
        self.head = model.get_output_embeddings()
        self.body = getattr(model, "base_model", None)
        self.sharded = sharded
        self._no_positions = torch.empty(0, dtype=torch.long, device=sample_ids.device)
        self.fused = fused and self._fused_head_matches(sample_ids[:1])
        target = self.body if self.fused and not sharded else model
        self.forward: Any = torch.compile(target) if compile else target

    def _fused_hidden(self, input_ids: torch.Tensor, module) -> torch.Tensor:
        """The body's last hidden states for ``input_ids``, from ``module``: the body itself, or
        (``sharded``) the whole model asked for the logits of no position, whose body output a
        forward hook takes."""
        if not self.sharded:
            return module(input_ids=input_ids, use_cache=False).last_hidden_state
        assert self.body is not None  # checked before the fused loss is chosen
        taken: list[torch.Tensor] = []

        def take(body, args, output) -> None:
            taken.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

        handle = self.body.register_forward_hook(take)
        try:
            module(input_ids=input_ids, use_cache=False, logits_to_keep=self._no_positions)
        finally:
            handle.remove()
        return taken[-1]

    @torch.no_grad()
    def _fused_head_matches(self, sample_ids: torch.Tensor) -> bool:
        head, body = self.head, self.body
        plain_head = isinstance(head, torch.nn.Linear) and head.bias is None
        if not plain_head or body is None or body is self.model:
            return False
        was_training = self.model.training
        self.model.eval()
        try:
            ref = self.model(input_ids=sample_ids, use_cache=False).logits.float()
            try:
                hidden = self._fused_hidden(sample_ids, self.model if self.sharded else body)
                ours = (hidden @ head.weight.T).float()
            except (AttributeError, TypeError, ValueError, RuntimeError):
                return False  # a model that cannot be called like this: use the logits
        finally:
            self.model.train(was_training)
        if ours.shape != ref.shape:
            return False
        atol = CHECK_RTOL * float(ref.abs().max())
        return bool(torch.allclose(ours, ref, rtol=CHECK_RTOL, atol=atol))

    def __call__(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.reshape(-1)
        if self.fused:
            hidden = self._fused_hidden(input_ids, self.forward)
            return linear_cross_entropy(
                hidden.reshape(-1, hidden.shape[-1]), self.head.weight, targets
            )
        logits = self.forward(input_ids=input_ids, use_cache=False).logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="sum")

    @torch.no_grad()
    def token_scores(
        self, input_ids: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: each target token's cross-entropy and whether it is the model's
        top prediction (flattened over the batch), from the fused head where it is exact."""
        targets = targets.reshape(-1)
        if self.fused:
            hidden = self._fused_hidden(input_ids, self.forward)
            return linear_token_scores(
                hidden.reshape(-1, hidden.shape[-1]), self.head.weight, targets
            )
        logits = self.forward(input_ids=input_ids, use_cache=False).logits.float()
        logits = logits.reshape(-1, logits.shape[-1])
        losses = F.cross_entropy(logits, targets, reduction="none")
        return losses, logits.argmax(dim=-1) == targets
