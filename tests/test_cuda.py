"""Training and evaluation on a CUDA GPU: bf16 autocast, the GPU experts kernel, the fused
head loss, ``--compile`` and resume. Skipped on machines without a GPU (CI has none); run with
``pytest tests/test_cuda.py`` where one is present."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec
from moegrow.training.evaluate import evaluate
from moegrow.training.train import TrainOptions, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAST = dict(seq_len=32, batch_size=8, lr=3e-3, progress=False, eval_tokens=2048)
# bf16 autocast against float32 on the CPU: the same weights and batch agree to about 1e-2.
BF16_REL = 2e-2


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_cuda_training_agrees_with_cpu_and_lowers_loss(base_model, data_dir, tmp_path):
    opts = dict(tokens=30 * 8 * 32, **FAST)
    cpu = train(base_model, data_dir, tmp_path / "cpu", TrainOptions(**opts, device="cpu"))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    gpu = train(base_model, data_dir, tmp_path / "gpu", TrainOptions(**opts, device="cuda"))
    assert torch.backends.cuda.matmul.allow_tf32 == tf32  # TF32 only while training
    before = evaluate(base_model, data_dir, seq_len=32, tokens=2048, device="cuda")["val_loss"]
    assert gpu.val_loss < before - 0.5, (before, gpu.val_loss)
    first_cpu, first_gpu = cpu.metrics[0]["loss"], gpu.metrics[0]["loss"]
    assert _rel(first_gpu, first_cpu) < BF16_REL, (first_gpu, first_cpu)
    assert _rel(gpu.val_loss, cpu.val_loss) < 0.05, (gpu.val_loss, cpu.val_loss)
    assert 0 < gpu.metrics[-1]["mfu"] < 1
    # Weights are kept and saved in float32 (autocast only computes in bf16).
    saved = load_file(str(gpu.final / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}


def test_cuda_eval_agrees_with_cpu(base_model, data_dir):
    cpu = evaluate(base_model, data_dir, seq_len=32, tokens=2048, device="cpu")
    gpu = evaluate(base_model, data_dir, seq_len=32, tokens=2048, device="cuda")
    assert _rel(gpu["val_loss"], cpu["val_loss"]) < BF16_REL, (gpu, cpu)


def test_cuda_compile_agrees_with_eager(base_model, data_dir, tmp_path):
    opts = dict(tokens=6 * 8 * 32, device="cuda", **FAST)
    eager = train(base_model, data_dir, tmp_path / "eager", TrainOptions(**opts))
    compiled = train(
        base_model, data_dir, tmp_path / "compiled", TrainOptions(**opts, compile=True)
    )
    for a, b in zip(_losses(tmp_path / "compiled"), _losses(tmp_path / "eager")):
        assert _rel(a, b) < BF16_REL, (a, b)
    assert compiled.metrics[-1]["loss"] < compiled.metrics[0]["loss"]
    assert eager.steps == compiled.steps == 6


def test_cuda_resume_continues_the_run(base_model, data_dir, tmp_path):
    opts = dict(tokens=10 * 8 * 32, schedule="wsd", warmup_steps=2, device="cuda", **FAST)
    train(base_model, data_dir, tmp_path / "full", TrainOptions(**opts))
    train(base_model, data_dir, tmp_path / "cut", TrainOptions(**opts, stop_after=4))
    train(None, None, tmp_path / "cut", TrainOptions(progress=False), resume=True)
    full, cut = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert len(full) == len(cut) == 10
    # GPU kernels need not be bitwise deterministic (atomics in the experts' backward); the
    # resumed run must still follow the uninterrupted one closely.
    for a, b in zip(cut, full):
        assert _rel(a, b) < 1e-3, (cut, full)


def test_sigmoid_router_and_grown_model_train_on_cuda(data_dir, tmp_path):
    from moegrow.modeling.presets import init_checkpoint

    model = init_checkpoint(tmp_path / "m", "tiny", tokenizer=str(data_dir), router="sigmoid")
    opts = dict(tokens=6 * 8 * 32, device="cuda", **FAST)
    r = train(model, data_dir, tmp_path / "run", TrainOptions(**opts))
    assert r.metrics[-1]["loss"] < r.metrics[0]["loss"]
    grow(r.final, tmp_path / "g", GrowthSpec(depth=2, width=2, noise=0.01), progress=False)
    g = train(tmp_path / "g", data_dir, tmp_path / "run2", TrainOptions(**opts))
    assert g.metrics[-1]["loss"] < g.metrics[0]["loss"]


def test_fused_head_loss_under_autocast_matches_materialised_logits():
    from moegrow.modeling.lm_loss import linear_cross_entropy

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(4096, 256, generator=gen).cuda().requires_grad_()
    weight = (0.05 * torch.randn(8192, 256, generator=gen)).cuda().requires_grad_()
    targets = torch.randint(0, 8192, (4096,), generator=gen).cuda()
    with torch.autocast("cuda", torch.bfloat16):
        logits = torch.nn.functional.linear(hidden, weight).float()
        ref = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        ours = linear_cross_entropy(hidden, weight, targets)
    ref_grads = torch.autograd.grad(ref, (hidden, weight))
    our_grads = torch.autograd.grad(ours, (hidden, weight))
    assert _rel(ours.item(), ref.item()) < 1e-3
    for a, b in zip(our_grads, ref_grads):
        assert a.dtype == b.dtype == torch.float32
        assert ((a - b).norm() / b.norm()).item() < 2e-2
