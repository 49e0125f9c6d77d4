"""The authors' reference behaviours offered as options: noise on the copies of the selection
bias (--balance-bias-noise) and a wholly re-initialised router (--router random-all)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import read_tensors

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec

BIAS = "model.layers.1.mlp.gate.e_score_correction_bias"
ROUTER = "model.layers.1.mlp.gate.weight"


@pytest.fixture(scope="module")
def biased(tiny, tmp_path_factory):
    """A tiny DeepSeek-V3 whose selection biases are not all zero (as after training)."""
    base = tiny("deepseek_v3", num_layers=2)
    src = tmp_path_factory.mktemp("biased")
    tensors = read_tensors(base)
    g = torch.Generator().manual_seed(1)
    for k in tensors:
        if k.endswith("e_score_correction_bias"):
            tensors[k] = torch.randn(tensors[k].shape, generator=g)
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    (src / "config.json").write_text((base / "config.json").read_text())
    return src


def test_balance_bias_copies_exact_by_default_noised_with_option(biased, tmp_path):
    src = read_tensors(biased)[BIAS]
    e = src.shape[0]
    plain = grow(biased, tmp_path / "a", GrowthSpec(width=2, noise=0.1), progress=False)
    a = read_tensors(tmp_path / "a")[BIAS]
    assert a[:e].equal(src) and a[e:].equal(src)
    assert not any("balance-bias" in r for r in plain.plan.not_exact)

    noisy = grow(
        biased,
        tmp_path / "b",
        GrowthSpec(width=2, noise=0.1, balance_bias_noise=True),
        progress=False,
    )
    b = read_tensors(tmp_path / "b")[BIAS]
    assert b[:e].equal(src)  # originals untouched
    delta = b[e:] - src
    assert (delta != 0).all()
    sigma = src.std().item()  # the noise is alpha x the std of the whole bias
    assert 0.1 * sigma / 10 < delta.abs().max().item() < 0.1 * sigma * 5
    assert any("balance-bias" in r for r in noisy.plan.not_exact)


def test_router_random_all_reinitialises_the_original_rows(biased, tmp_path):
    src = read_tensors(biased)[ROUTER]
    e = src.shape[0]
    grow(biased, tmp_path / "n", GrowthSpec(width=2, router="random"), progress=False)
    rows = read_tensors(tmp_path / "n")[ROUTER]
    assert rows[:e].equal(src) and not rows[e:].equal(src)
    result = grow(
        biased, tmp_path / "all", GrowthSpec(width=2, router="random-all"), progress=False
    )
    rows = read_tensors(tmp_path / "all")[ROUTER]
    assert rows.shape[0] == 2 * e
    assert not (rows[:e] == src).any()  # original experts' rows re-drawn too
    assert 0.01 < rows.std().item() < 0.04  # N(0, 0.02^2)
    assert not result.plan.exact
    assert any("random-all" in r for r in result.plan.not_exact)
    assert json.loads((tmp_path / "all" / "config.json").read_text())["n_routed_experts"] == 2 * e


def test_cli_offers_the_reference_options(run_cli):
    code, out, _ = run_cli("grow", "--help")
    assert code == 0
    assert "--balance-bias-noise" in out and "random-all" in out
