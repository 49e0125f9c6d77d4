"""Continued pre-training: loss goes down, resume is exact, FSDP2 matches one process, the
FLOPs ledger adds up, and the analytic FLOPs match torch's counter."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec
from moegrow.ledger import flops_report
from moegrow.training.evaluate import evaluate
from moegrow.training.train import TrainOptions, train

FAST = dict(seq_len=32, batch_size=8, lr=3e-3, progress=False, eval_tokens=2048)


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_thirty_steps_lower_validation_loss(base_model, data_dir, tmp_path):
    before = evaluate(base_model, data_dir, seq_len=32, tokens=2048, device="cpu")["val_loss"]
    result = train(base_model, data_dir, tmp_path / "run", TrainOptions(tokens=30 * 8 * 32, **FAST))
    assert result.steps == 30
    assert result.val_loss < before - 0.5, (before, result.val_loss)
    m = result.metrics[-1]
    for key in (
        "step",
        "tokens",
        "flops",
        "loss",
        "lr",
        "grad_norm",
        "load_max",
        "load_entropy",
        "tokens_per_s",
        "mfu",
        "val_loss",
    ):
        assert key in m, key
    assert 0 < m["mfu"] < 1


def test_resume_reproduces_uninterrupted_run_exactly(base_model, data_dir, tmp_path):
    opts = dict(tokens=12 * 8 * 32, schedule="wsd", warmup_steps=2, grad_accum=2, **FAST)
    full = train(base_model, data_dir, tmp_path / "full", TrainOptions(**opts))
    train(base_model, data_dir, tmp_path / "cut", TrainOptions(**opts, stop_after=5))
    assert len(_losses(tmp_path / "cut")) == 5
    resumed = train(None, None, tmp_path / "cut", TrainOptions(progress=False), resume=True)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")
    assert resumed.val_loss == full.val_loss
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        a, b = load_file(full.final / name), load_file(resumed.final / name)
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name


@pytest.mark.parametrize("procs", [2, 1])
def test_fsdp2_two_processes_match_one(base_model, data_dir, tmp_path, procs):
    """Two processes, and one process sharded all the same (MOEGROW_FSDP=1, the FSDP2 path on
    one GPU), match an unsharded process."""
    args = [
        "--data",
        str(data_dir),
        "--tokens",
        str(5 * 8 * 32),
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--quiet",
        "--eval-tokens",
        "512",
    ]
    train(
        base_model,
        data_dir,
        tmp_path / "one",
        TrainOptions(tokens=5 * 8 * 32, **{**FAST, "eval_tokens": 512}),
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOEGROW_FSDP": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={procs}",
        "--standalone",  # a free port: concurrent runs must not collide
        "-m",
        "moegrow",
        "train",
        str(base_model),
        "--out",
        str(tmp_path / "two"),
        *args,
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 5
    rows = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(row)["fused_loss"] for row in rows)  # the fused head loss under FSDP2
    for a, b in zip(one, two):
        assert abs(a - b) / abs(a) < 1e-4, (a, b)


def test_ledger_adds_up_through_init_train_grow_train(base_model, data_dir, tmp_path):
    first = train(base_model, data_dir, tmp_path / "r1", TrainOptions(tokens=4 * 8 * 32, **FAST))
    grow(first.final, tmp_path / "grown", GrowthSpec(depth=2, width=2), progress=False)
    second = train(
        tmp_path / "grown", data_dir, tmp_path / "r2", TrainOptions(tokens=3 * 8 * 32, **FAST)
    )
    report = flops_report(second.final)
    stages = [e["stage"] for e in report["ledger"]]
    assert stages == ["init", "train", "grow", "train"]
    assert report["sunk_flops"] == pytest.approx(first.flops + second.flops)
    assert report["sunk_tokens"] == first.tokens + second.tokens
    assert (
        second.flops / second.tokens > 1.5 * first.flops / first.tokens
    )  # the grown model costs more


def test_analytic_flops_match_torch_flop_counter(base_model):
    """6 x active matmul params + attention (per token) vs FlopCounterMode's forward count x 3."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    from moegrow.families import family_for
    from moegrow.flops import param_stats
    from moegrow.io.checkpoint import Checkpoint

    seq = 64
    with Checkpoint(base_model) as ckpt:
        stats = param_stats(
            ((i.name, i.dtype, i.shape) for i in ckpt.tensors.values()),
            family_for(ckpt.config),
            ckpt.config,
        )
    # eager attention: its score and value matmuls are visible to the counter (CPU sdpa is not)
    model = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=torch.float32, experts_implementation="eager", attn_implementation="eager"
    )
    ids = torch.randint(0, model.config.vocab_size, (4, seq))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids, use_cache=False)
    measured = 3 * counter.get_total_flops() / ids.numel()
    analytic = stats.flops_per_token(seq)
    assert abs(analytic - measured) / measured < 0.10, (analytic, measured)


def test_train_refuses_model_whose_vocab_misses_data_ids(data_dir, tmp_path, run_cli):
    from moegrow.modeling.presets import init_checkpoint

    small = init_checkpoint(tmp_path / "m", "tiny", vocab_size=64)
    code, _, err = run_cli(
        "train", small, "--data", data_dir, "--out", tmp_path / "run", "--tokens", "1000", "--quiet"
    )
    assert code == 2 and "vocab_size 64" in err


@pytest.mark.parametrize("router,norm", [("sigmoid", "pre"), ("softmax", "post")])
def test_variants_train_grow_and_reload(data_dir, tmp_path, router, norm):
    from moegrow.modeling.presets import init_checkpoint

    model = init_checkpoint(
        tmp_path / "m", "tiny", tokenizer=str(data_dir), router=router, norm=norm
    )
    r = train(model, data_dir, tmp_path / "run", TrainOptions(tokens=6 * 8 * 32, **FAST))
    assert r.metrics[-1]["loss"] < r.metrics[0]["loss"]
    grow(r.final, tmp_path / "g", GrowthSpec(width=2, noise=0.0), progress=False)
    after = evaluate(tmp_path / "g", data_dir, seq_len=32, tokens=2048, device="cpu")["val_loss"]
    assert after == pytest.approx(r.val_loss, abs=1e-4)  # width growth is exact for both
    train(tmp_path / "g", data_dir, tmp_path / "run2", TrainOptions(tokens=2 * 8 * 32, **FAST))


def test_flops_and_eval_commands(base_model, data_dir, run_cli):
    code, out, _ = run_cli("flops", base_model)
    assert code == 0 and "Chinchilla F_c" in out and "advice" in out
    code, out, _ = run_cli("flops", base_model, "--json", "--base-tokens", "1e6")
    report = json.loads(out)
    assert report["sunk_tokens"] == 1_000_000 and report["sunk_over_chinchilla"] > 0
    code, out, _ = run_cli(
        "eval",
        base_model,
        "--data",
        data_dir,
        "--seq-len",
        "32",
        "--tokens",
        "1024",
        "--json",
        "--device",
        "cpu",
    )
    result = json.loads(out)
    assert code == 0 and result["val_loss"] > 0 and len(result["val_load_max"]) >= 1
    code, _, err = run_cli(
        "eval", base_model, "--data", data_dir, "--lm-eval", "x", "--device", "cpu"
    )
    assert code == 2
    if importlib.util.find_spec("lm_eval") is None:
        assert "needs lm-evaluation-harness: pip install" in err
    else:
        assert "unknown task(s) x" in err


def test_balance_loss_coefficient_defaults_to_the_config_class():
    """A config.json without ``router_aux_loss_coef`` (an upcycled checkpoint's) trains with its
    config class's default, not silently without a balance loss; an explicit value wins."""
    from transformers import Qwen3MoeConfig

    from moegrow.training.train import default_aux_loss_coef

    cls_default = Qwen3MoeConfig().router_aux_loss_coef
    assert cls_default > 0
    assert default_aux_loss_coef({}, Qwen3MoeConfig()) == cls_default
    assert default_aux_loss_coef({"router_aux_loss_coef": 0.0}, Qwen3MoeConfig()) == 0.0
    assert default_aux_loss_coef({"router_aux_loss_coef": 0.02}, Qwen3MoeConfig()) == 0.02
