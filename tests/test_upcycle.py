"""Dense -> MoE upcycling: exact modes keep transformers' logits, inexact ones deviate as the
plan says, bad requests are refused before anything is written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_models import _perturb, logits, sample_ids

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec
from moegrow.growth.upcycle_run import plan_upcycle, upcycle
from moegrow.growth.upcycle_spec import UpcycleSpec
from moegrow.growth.verify import EXACT_TOLERANCE
from moegrow.io.card import read_card

SOURCES = ("llama", "mistral", "qwen2", "qwen3", "granite", "olmo2")
COMMON = dict(
    vocab_size=128,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=56,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
#: Built here rather than in tiny_models: dense families that only upcycling needs.
BUILT_HERE = {
    "granite": dict(
        COMMON,
        embedding_multiplier=12.0,
        residual_multiplier=0.22,
        attention_multiplier=0.0625,
        logits_scaling=6.0,
        tie_word_embeddings=True,
    ),
    "olmo2": dict(COMMON, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}


@pytest.fixture(scope="session")
def dense(tiny, tmp_path_factory):
    """``dense(family)`` -> a tiny 2-layer dense checkpoint (dense MLP width 56)."""
    built = {}

    def get(family: str):
        if family not in built:
            if family in BUILT_HERE:
                built[family] = _build(tmp_path_factory.mktemp(family), family)
            else:
                built[family] = tiny(family, num_layers=2)
        return built[family]

    return get


def _build(folder, model_type: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, num_hidden_layers=2, **BUILT_HERE[model_type])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _perturb(model, 0)
    model.save_pretrained(folder)
    return folder


def _load(path):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, output_loading_info=True
    )
    return model.eval(), info


def _deviation(src, out) -> tuple[float, float]:
    """max |delta logits| and the exactness tolerance (as moegrow.growth.verify)."""
    ids = sample_ids()
    ref = logits(src, ids)
    model, info = _load(out)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    with torch.no_grad():
        got = model(input_ids=ids, use_cache=False).logits.float()
    return (got - ref).abs().max().item(), EXACT_TOLERANCE * max(1.0, ref.abs().max().item())


EXACT = {
    "copy": UpcycleSpec(experts=4, top_k=2),
    "copy-top1": UpcycleSpec(experts=4, top_k=1),
    "copy-zero-router": UpcycleSpec(experts=4, top_k=2, router="zero"),
    "granular-2": UpcycleSpec(experts=8, top_k=4, granularity=2),
    "granular-7": UpcycleSpec(experts=14, top_k=7, granularity=7),
    "granular-zero-router": UpcycleSpec(experts=8, top_k=4, granularity=2, router="zero"),
}


#: Every source with the main modes; the others on two sources (the suite stays short).
EXACT_CASES = [(f, m) for f in SOURCES for m in ("copy", "granular-2", "granular-zero-router")]
EXACT_CASES += [(f, m) for f in ("llama", "qwen2") for m in ("copy-top1", "copy-zero-router")]
EXACT_CASES += [(f, "granular-7") for f in ("mistral", "granite")]


@pytest.mark.parametrize("family,mode", EXACT_CASES)
def test_exact_modes_keep_logits(dense, tmp_path, family, mode):
    src = dense(family)
    result = upcycle(src, tmp_path / "moe", EXACT[mode], progress=False)
    assert result.plan.exact, result.plan.not_exact
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff <= tol, (family, mode, diff)
    planned = plan_upcycle(src, EXACT[mode])["params"]["total"][1]
    assert sum(p.numel() for p in _load(tmp_path / "moe")[0].parameters()) == planned


@pytest.mark.parametrize("family", ["qwen2", "granite"])
def test_shared_expert_is_exact(dense, tmp_path, family):
    src = dense(family)
    spec = UpcycleSpec(experts=8, top_k=4, granularity=2, shared_expert=True)
    result = upcycle(src, tmp_path / "moe", spec, progress=False)
    expected = {"qwen2": "qwen2_moe", "granite": "granitemoeshared"}[family]
    assert result.plan.config["model_type"] == expected
    assert result.plan.exact
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff <= tol


def test_some_layers_stay_dense(dense, tmp_path):
    src = dense("qwen3")
    result = upcycle(src, tmp_path / "moe", UpcycleSpec(4, 2, layers=(1,)), progress=False)
    assert result.plan.config["mlp_only_layers"] == [0]
    names = {t.name for t in result.plan.tensors}
    assert "model.layers.0.mlp.gate_proj.weight" in names
    assert "model.layers.1.mlp.experts.3.down_proj.weight" in names
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff <= tol


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_top_k_not_a_multiple_of_granularity_deviates(dense, tmp_path, family):
    """Each token then gets slices of incomplete copies: documented as inexact, and it is."""
    src = dense(family)
    spec = UpcycleSpec(experts=8, top_k=3, granularity=2)
    result = upcycle(src, tmp_path / "moe", spec, progress=False)
    assert not result.plan.exact
    assert "not a multiple of --granularity" in result.plan.not_exact[0]
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff > 100 * tol


def test_noise_deviates_slightly_and_is_seeded(dense, tmp_path):
    src = dense("mistral")
    spec = UpcycleSpec(experts=4, top_k=2, noise=0.01, seed=3)
    result = upcycle(src, tmp_path / "a", spec, progress=False)
    upcycle(src, tmp_path / "b", spec, progress=False)
    assert not result.plan.exact
    diff, tol = _deviation(src, tmp_path / "a")
    assert tol < diff < 0.05
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "granite", "olmo2"])
def test_upcycled_model_grows_exactly(dense, tmp_path, family):
    """dense -> MoE -> deeper and wider, exactly."""
    src = dense(family)
    upcycle(src, tmp_path / "moe", UpcycleSpec(experts=8, top_k=4, granularity=2), progress=False)
    spec = GrowthSpec(depth=2, zero_init=True, width=2, noise=0.0)
    result = grow(tmp_path / "moe", tmp_path / "grown", spec, progress=False)
    assert result.plan.exact, result.plan.not_exact
    diff, tol = _deviation(src, tmp_path / "grown")
    assert diff <= tol
    card = read_card(tmp_path / "grown")
    assert [e["stage"] for e in card["ledger"]] == ["upcycle", "grow"]


def test_card_carries_the_dense_ledger(dense, tmp_path):
    src = tmp_path / "dense"
    shutil.copytree(dense("llama"), src)
    sunk = {"stage": "pretrain", "tokens": 1000, "flops": 5.0e12}
    (src / "moegrow_card.json").write_text(json.dumps({"ledger": [sunk]}))
    upcycle(src, tmp_path / "moe", UpcycleSpec(experts=4, top_k=2), progress=False)
    card = read_card(tmp_path / "moe")
    assert card["ledger"][0] == sunk
    assert card["ledger"][1]["stage"] == "upcycle" and card["ledger"][1]["flops"] == 0.0
    assert card["exact"] is True and card["upcycle"]["experts"] == 4
    # without a ledger, --base-tokens declares the dense training as sunk cost
    spec = UpcycleSpec(experts=4, top_k=2, base_tokens=10**6)
    upcycle(dense("llama"), tmp_path / "moe2", spec, progress=False)
    base = read_card(tmp_path / "moe2")["ledger"][0]
    assert base["stage"] == "base (declared)" and base["tokens"] == 10**6 and base["flops"] > 0


def test_config_keeps_dense_defaults(tmp_path, dense):
    """Keys absent from the dense config.json get the dense class's default, not the MoE's."""
    src = tmp_path / "dense"
    shutil.copytree(dense("llama"), src)
    cfg = json.loads((src / "config.json").read_text())
    for key in ("rms_norm_eps", "rope_parameters"):
        del cfg[key]
    (src / "config.json").write_text(json.dumps(cfg))
    result = upcycle(src, tmp_path / "moe", UpcycleSpec(experts=4, top_k=2), progress=False)
    out = json.loads((tmp_path / "moe" / "config.json").read_text())
    assert out["rms_norm_eps"] == 1e-6  # Mixtral's own default is 1e-5
    assert out["rope_parameters"]["rope_theta"] == 10000.0  # Mixtral's is 1e6
    assert any(e.startswith("rms_norm_eps") for e in result.plan.config_edits)
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff <= tol


def test_dense_defaults_match_transformers():
    """The table of dense defaults is data; it must say what the installed classes say."""
    from transformers import AutoConfig

    from moegrow.growth.upcycle_pairs import DEFAULT_SENSITIVE, DENSE_DEFAULTS, PAIRS

    for pair in PAIRS:
        for model_type in pair.source_types:
            d = AutoConfig.for_model(model_type)
            keys = [k for k in (*DEFAULT_SENSITIVE, *pair.carry) if k != "head_dim"]
            expected = {k: getattr(d, k) for k in keys if hasattr(d, k)}
            assert DENSE_DEFAULTS[model_type] == expected, model_type


def test_absent_head_dim_is_derived(tmp_path, dense):
    src = tmp_path / "dense"
    shutil.copytree(dense("llama"), src)
    cfg = json.loads((src / "config.json").read_text())
    del cfg["head_dim"]
    (src / "config.json").write_text(json.dumps(cfg))
    upcycle(src, tmp_path / "moe", UpcycleSpec(experts=4, top_k=2), progress=False)
    assert json.loads((tmp_path / "moe" / "config.json").read_text())["head_dim"] == 16
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff <= tol


def test_cli_plan_and_upcycle(dense, tmp_path, run_cli):
    src = dense("qwen3")
    code, out, err = run_cli(
        "upcycle", src, "--experts", "8", "--top-k", "4", "--granularity", "2", "--plan"
    )
    assert code == 0, err
    assert "experts" in out and "dense -> 8" in out
    assert "exact: yes" in out and "num_experts: '<absent>' -> 8" in out
    code, out, err = run_cli(
        "upcycle", src, tmp_path / "moe", "--experts", "4", "--top-k", "2", "--quiet"
    )
    assert code == 0, err
    assert "qwen3_moe" in out and "exact: yes" in out
    assert (tmp_path / "moe" / "config.json").is_file()


BAD = {
    "top-k > experts": (["--experts", "4", "--top-k", "5"], "more than the 4 experts"),
    "granularity does not divide I": (
        ["--experts", "6", "--top-k", "3", "--granularity", "3"],
        "does not divide the dense intermediate size 56",
    ),
    "experts not copies x G": (
        ["--experts", "6", "--top-k", "2", "--granularity", "4"],
        "not a multiple of --granularity",
    ),
    "no shared expert": (["--experts", "4", "--top-k", "2", "--shared-expert"], "no shared"),
    "layers without dense layers": (
        ["--experts", "4", "--top-k", "2", "--layers", "1"],
        "mixtral has no dense layers",
    ),
    "target of another family": (
        ["--experts", "4", "--top-k", "2", "--target", "qwen2_moe"],
        "upcycles to mixtral only",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_are_refused(dense, tmp_path, run_cli, case):
    args, message = BAD[case]
    code, out, err = run_cli("upcycle", dense("llama"), tmp_path / "moe", *args)
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "moe").exists()
    assert not list(tmp_path.iterdir())


def test_unsupported_pairs_are_refused(tiny, dense, tmp_path, run_cli):
    args = ("--experts", "4", "--top-k", "2")
    code, _, err = run_cli("upcycle", tiny("mixtral"), tmp_path / "o", *args)
    assert code == 2 and "model_type 'mixtral' cannot be upcycled" in err
    folder = tmp_path / "gemma2"
    folder.mkdir()
    shutil.copy(tiny("qwen3", num_layers=2) / "model.safetensors", folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    code, _, err = run_cli("upcycle", folder, tmp_path / "o", *args)
    assert code == 2 and "Gemma 2 has no MoE twin" in err and err.count("\n") == 1
    code, _, err = run_cli(
        "upcycle", dense("granite"), tmp_path / "o", *args, "--target", "granitemoeshared"
    )
    assert code == 2 and "add --shared-expert" in err
    code, _, err = run_cli("upcycle", dense("olmo2"), tmp_path / "o", *args, "--target", "olmoe")
    assert code == 2 and "normalises each sublayer's output" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("granularity", [1, 2])
def test_drop_upcycling_reinitialises_different_neurons_per_expert(dense, tmp_path, granularity):
    from tiny_models import read_tensors

    src = dense("qwen3")
    g = granularity
    spec = UpcycleSpec(experts=4 * g, top_k=2 * g, granularity=g, drop=0.25, seed=1)
    result = upcycle(src, tmp_path / "moe", spec, progress=False)
    assert not result.plan.exact and "--drop 0.25" in result.plan.not_exact[0]
    diff, tol = _deviation(src, tmp_path / "moe")
    assert diff > tol
    before, after = read_tensors(src), read_tensors(tmp_path / "moe")
    p = "model.layers.0.mlp."
    width = 56 // g
    dropped_sets = []
    for e in range(4 * g):
        sl = slice((e % g) * width, (e % g + 1) * width)
        gate = after[f"{p}experts.{e}.gate_proj.weight"]
        up = after[f"{p}experts.{e}.up_proj.weight"]
        down = after[f"{p}experts.{e}.down_proj.weight"] / g
        rows = (gate != before[p + "gate_proj.weight"][sl]).any(1)
        assert torch.equal(rows, (up != before[p + "up_proj.weight"][sl]).any(1))
        cols = (down != before[p + "down_proj.weight"][:, sl]).any(0)
        assert torch.equal(rows, cols)  # the same neurons in gate, up and down
        assert rows.sum().item() == round(0.25 * width)
        dropped_sets.append(tuple(rows.nonzero().flatten().tolist()))
        fresh = gate[rows]
        ref_std = before[p + "gate_proj.weight"].std().item()
        assert 0.5 * ref_std < fresh.std().item() < 2 * ref_std
    assert len(set(dropped_sets)) > 1  # different neurons per expert


@pytest.mark.parametrize("merge", ["average", "first"])
def test_branch_train_mix_takes_experts_from_each_source(tiny, dense, tmp_path, merge):
    from tiny_models import make_tiny, read_tensors

    a = dense("llama")
    b = make_tiny("llama", tmp_path / "b", seed=7, num_layers=2)
    spec = UpcycleSpec(experts=4, top_k=2, sources=(str(b),), merge=merge)
    result = upcycle(a, tmp_path / "moe", spec, progress=False)
    assert not result.plan.exact and "Branch-Train-MiX" in result.plan.not_exact[0]
    ta, tb, out = read_tensors(a), read_tensors(b), read_tensors(tmp_path / "moe")
    p = "model.layers.1."
    for e, want in enumerate([ta, ta, tb, tb]):
        assert torch.equal(
            out[f"{p}block_sparse_moe.experts.{e}.w1.weight"], want[p + "mlp.gate_proj.weight"]
        )
        assert torch.equal(
            out[f"{p}block_sparse_moe.experts.{e}.w2.weight"], want[p + "mlp.down_proj.weight"]
        )
    q = p + "self_attn.q_proj.weight"
    expected = (ta[q] + tb[q]) / 2 if merge == "average" else ta[q]
    assert torch.allclose(out[q], expected, atol=1e-7, rtol=0)
    _deviation(a, tmp_path / "moe")  # loads with no missing or unexpected keys


def test_branch_train_mix_of_one_model_twice_is_exact(dense, tmp_path):
    a = dense("qwen3")
    spec = UpcycleSpec(experts=8, top_k=4, granularity=2, sources=(str(a),))
    upcycle(a, tmp_path / "moe", spec, progress=False)
    diff, tol = _deviation(a, tmp_path / "moe")
    assert diff <= tol


def test_branch_train_mix_refuses_other_architectures(tiny, dense, tmp_path, run_cli):
    args = ("--experts", "4", "--top-k", "2", "--from", tiny("mistral", num_layers=2))
    code, _, err = run_cli("upcycle", dense("llama"), tmp_path / "o", *args)
    assert code == 2 and "model_type='mistral'" in err and err.count("\n") == 1
    args = ("--experts", "5", "--top-k", "2", "--from", dense("llama"))
    code, _, err = run_cli("upcycle", dense("llama"), tmp_path / "o", *args)
    assert code == 2 and "cannot be split evenly between the 2 sources" in err
    assert not (tmp_path / "o").exists()
