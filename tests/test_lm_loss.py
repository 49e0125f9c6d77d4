"""The chunked linear cross-entropy equals cross-entropy of the materialised logits, in value and
gradients, and is used only where the model's logits are exactly hidden states x head weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import build_model

from moegrow.modeling import lm_loss
from moegrow.modeling.lm_loss import NextTokenLoss, linear_cross_entropy


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 tokens at a vocabulary of 50, so every test crosses chunk boundaries."""
    monkeypatch.setitem(lm_loss.CHUNK_BYTES, "cpu", 7 * 4 * 50)


def test_value_and_gradients_match_materialised_logits(small_chunks):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(40, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (40,), generator=gen)

    ref = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    ref_h, ref_w = torch.autograd.grad(3.0 * ref, (hidden, weight))
    ours = linear_cross_entropy(hidden, weight, targets)
    ours_h, ours_w = torch.autograd.grad(3.0 * ours, (hidden, weight))

    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(ours_h, ref_h, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours_w, ref_w, rtol=1e-6, atol=1e-9)
    with torch.no_grad():  # the forward-only path
        assert linear_cross_entropy(hidden, weight, targets).item() == pytest.approx(
            ref.item(), rel=1e-6
        )


def _model_grads(model, loss_fn, ids):
    model.zero_grad(set_to_none=True)
    loss_fn(ids[:, :-1], ids[:, 1:]).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "family,overrides",
    [("mixtral", {}), ("granitemoe", {"logits_scaling": 1.0})],  # granitemoe: tied embeddings
)
def test_fused_loss_matches_the_models_own_loss(small_chunks, family, overrides):
    model = build_model(family, num_layers=2, **overrides).train()
    ids = torch.randint(
        0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1)
    )
    fused = NextTokenLoss(model, ids[:, :-1])
    plain = NextTokenLoss(model, ids[:, :-1], fused=False)
    assert fused.fused and not plain.fused
    assert model.training  # the check leaves the mode as it was

    targets = ids[:, 1:].contiguous()
    expected = model(input_ids=ids[:, :-1], labels=ids[:, :-1], shift_labels=targets).loss
    assert (fused(ids[:, :-1], ids[:, 1:]) / 16).item() == pytest.approx(expected.item(), rel=1e-5)
    grads, ref = _model_grads(model, fused, ids), _model_grads(model, plain, ids)
    assert grads.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "family,overrides",
    [("granitemoe", {}), ("phimoe", {})],  # logits divided by logits_scaling; a head bias
)
def test_models_whose_logits_are_not_hidden_times_head_use_their_logits(family, overrides):
    model = build_model(family, num_layers=2, **overrides)
    ids = torch.randint(
        0, model.config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(2)
    )
    loss = NextTokenLoss(model, ids)
    assert not loss.fused
    logits = model(input_ids=ids[:, :-1]).logits
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[0, 1:], reduction="sum")
    assert loss(ids[:, :-1], ids[:, 1:]).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.fixture
def one_process_group():
    """A gloo process group of this process alone (FSDP2's sharded code path on one CPU)."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "family,overrides",
    [("mixtral", {}), ("granitemoe", {"logits_scaling": 1.0})],  # granitemoe: tied embeddings
)
def test_fused_loss_under_fsdp2_matches_the_unsharded_logits_loss(
    small_chunks, one_process_group, family, overrides
):
    """Under FSDP2 (every layer and the root sharded, as ``moegrow train`` shards) the fused loss
    runs, from the whole model asked for no logits, and its value and gradients are those of the
    unsharded model's logits loss."""
    import copy

    from torch.distributed.fsdp import fully_shard

    model = build_model(family, num_layers=2, **overrides).train()
    reference = copy.deepcopy(model)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    ids = torch.randint(
        0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1)
    )
    fused = NextTokenLoss(model, ids[:, :-1], sharded=True)
    plain = NextTokenLoss(reference, ids[:, :-1], fused=False)
    assert fused.fused and model.training

    for _ in range(2):  # twice: FSDP's state after a backward pass is the steady one
        model.zero_grad(set_to_none=True)
        loss = fused(ids[:, :-1], ids[:, 1:])
        loss.backward()
        ref_grads = _model_grads(reference, plain, ids)
        expected = plain(ids[:, :-1], ids[:, 1:])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
