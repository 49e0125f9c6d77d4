"""The autocast-aware experts kernel multiplies in the autocast dtype, leaves float32 gradients
on the master weights, and is transformers' grouped_mm kernel unchanged outside autocast."""

from __future__ import annotations

import pytest
import torch
import transformers.integrations.moe as hf_moe
from tiny_models import build_model

from moegrow.modeling import experts_kernel


def _step(model, ids, autocast: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if "experts" in n}
    return loss.detach(), grads


@pytest.fixture
def weight_dtypes(monkeypatch):
    """The weight dtypes transformers' grouped matmul is called with."""
    seen: list[torch.dtype] = []
    inner = hf_moe._grouped_mm

    def spy(input, weight, offs):
        seen.append(weight.dtype)
        return inner(input, weight, offs=offs)

    monkeypatch.setattr(hf_moe, "_grouped_mm", spy)
    return seen


def test_experts_run_in_the_autocast_dtype_with_float32_gradients(weight_dtypes, tmp_path):
    model = build_model("qwen3_moe", num_layers=2).train()
    model.config._experts_implementation = "grouped_mm"
    ids = torch.randint(
        0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0)
    )
    plain_eager, _ = _step(model, ids, autocast=False)
    plain_loss, plain_grads = _step(model, ids, autocast=True)
    assert set(weight_dtypes) == {torch.float32}  # transformers' kernel ignores autocast

    assert experts_kernel.use_for_training(model) == "grouped_mm"
    weight_dtypes.clear()
    ours_eager, _ = _step(model, ids, autocast=False)
    assert set(weight_dtypes) == {torch.float32} and torch.equal(ours_eager, plain_eager)
    weight_dtypes.clear()
    loss, grads = _step(model, ids, autocast=True)
    assert set(weight_dtypes) == {torch.bfloat16}
    assert loss.item() == pytest.approx(plain_loss.item(), rel=1e-2)
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name
        assert ((grad - plain_grads[name]).norm() / plain_grads[name].norm()).item() < 5e-2, name

    model.save_pretrained(tmp_path)  # the kernel is a run-time choice, never saved
    assert experts_kernel.NAME not in (tmp_path / "config.json").read_text()


def test_only_grouped_mm_models_are_switched():
    model = build_model("qwen3_moe", num_layers=1)
    model.config._experts_implementation = "eager"
    assert experts_kernel.use_for_training(model) is None
    assert model.config._experts_implementation == "eager"
