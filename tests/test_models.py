"""moegrow's model variants (``moegrow_moe``), presets and ``init_checkpoint``, end to end:
init -> reload -> train a few steps -> grow -> reload, for all four router x norm variants."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import read_tensors

import moegrow.modeling.variants
from moegrow.errors import GrowthError, MoegrowError
from moegrow.families import family_for
from moegrow.flops import param_stats
from moegrow.growth.grow import grow
from moegrow.growth.plan import make_plan
from moegrow.growth.routing import scoring, width_rules
from moegrow.growth.spec import GrowthSpec
from moegrow.io.checkpoint import Checkpoint
from moegrow.modeling.presets import PRESETS, config_dict, init_checkpoint, param_counts
from moegrow.modeling.variants import MoegrowMoeConfig, MoegrowMoeTopKRouter

TOL = 1e-5
VOCAB = 96
VARIANTS = {
    "softmax-pre": ("softmax", "pre"),  # plain qwen3_moe
    "sigmoid-pre": ("sigmoid", "pre"),  # the paper's router
    "softmax-post": ("softmax", "post"),
    "sigmoid-post": ("sigmoid", "post"),
}


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _ids(batch: int = 2, seq: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _logits(model, ids) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits


def _max_diff(src, out) -> float:
    ids = _ids()
    return (_logits(_load(out), ids) - _logits(_load(src), ids)).abs().max().item()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """``base(variant)``: a freshly initialised tiny checkpoint (built once)."""
    root = tmp_path_factory.mktemp("init")
    cache = {}

    def get(variant: str):
        if variant not in cache:
            router, norm = VARIANTS[variant]
            cache[variant] = init_checkpoint(
                root / variant, "tiny", vocab_size=VOCAB, router=router, norm=norm
            )
        return cache[variant]

    return get


@pytest.fixture(scope="module")
def perturbed(base, tmp_path_factory):
    """``perturbed(variant)``: ``base(variant)`` with norms and balancing biases moved off their
    init values (1 and 0), so growth exactness is tested on weights that matter."""
    root = tmp_path_factory.mktemp("perturbed")
    cache = {}

    def get(variant: str):
        if variant not in cache:
            model = _load(base(variant))
            gen = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for name, t in model.state_dict().items():
                    if name.endswith(("norm.weight", "e_score_correction_bias")):
                        t.add_(0.1 * torch.randn(t.shape, generator=gen))
            model.save_pretrained(root / variant)
            cache[variant] = root / variant
        return cache[variant]

    return get


# -- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_is_deterministic_and_reloads_bit_exactly(base, tmp_path, variant):
    from transformers import AutoConfig, AutoModelForCausalLM

    router, norm = VARIANTS[variant]
    src = base(variant)
    again = init_checkpoint(tmp_path / "again", "tiny", vocab_size=VOCAB, router=router, norm=norm)
    assert (src / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()

    values = config_dict("tiny", VOCAB, router, norm)
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(values.pop("model_type"), **values)
    fresh = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    reloaded = _load(src)
    assert torch.equal(_logits(reloaded, _ids()), _logits(fresh, _ids()))
    reloaded.save_pretrained(tmp_path / "resaved")
    assert torch.equal(_logits(_load(tmp_path / "resaved"), _ids()), _logits(fresh, _ids()))


@pytest.mark.parametrize("variant", VARIANTS)
def test_on_disk_layout_matches_family(base, variant):
    """Per-expert tensors as qwen3_moe writes them; the bias only with the sigmoid router;
    parameter counts agree between presets and flops."""
    router, norm = VARIANTS[variant]
    src = base(variant)
    config = json.loads((src / "config.json").read_text())
    names = set(read_tensors(src))
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in names
    assert "model.layers.1.mlp.experts.7.gate_proj.weight" in names
    assert not any("gate_up_proj" in n for n in names)
    assert ("model.layers.0.mlp.gate.e_score_correction_bias" in names) == (router == "sigmoid")
    assert config["model_type"] == ("qwen3_moe" if variant == "softmax-pre" else "moegrow_moe")
    card = json.loads((src / "moegrow_card.json").read_text())
    assert card["init"]["router"] == router and card["init"]["norm"] == norm
    assert [(e["stage"], e["flops"]) for e in card["ledger"]] == [("init", 0.0)]
    family = family_for(config)
    with Checkpoint(src) as ckpt:
        make_plan(ckpt, GrowthSpec())  # validates the tensors against the family
        stats = param_stats(
            ((t.name, t.dtype, t.shape) for t in ckpt.tensors.values()), family, config
        )
    counts = param_counts(config_dict("tiny", VOCAB, router, norm))
    assert (stats.total, stats.active) == (counts.total, counts.active)
    if family.router.scoring_key:
        assert scoring(family, config) == router


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_lowers_loss(base, variant):
    model = _load(base(variant)).train()
    ids = _ids(4, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    losses = []
    for _ in range(6):
        out = model(input_ids=ids, labels=ids, output_router_logits=True, use_cache=False)
        assert torch.isfinite(out.aux_loss) and out.aux_loss > 0
        assert len(out.router_logits) == PRESETS["tiny"].num_hidden_layers
        assert out.router_logits[0].shape == (ids.numel(), PRESETS["tiny"].num_experts)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


def test_sigmoid_router_against_reference():
    """Choice by sigmoid + bias, weights = the chosen sigmoid scores renormalised."""
    cfg = MoegrowMoeConfig(
        hidden_size=8,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        router_scoring="sigmoid",
    )
    router = MoegrowMoeTopKRouter(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        router.weight.copy_(torch.randn(4, 8, generator=gen))
        router.e_score_correction_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    x = torch.randn(3, 8, generator=gen)
    logits, weights, idx = router(x)
    s = (x @ router.weight.T).sigmoid()
    assert torch.allclose(logits, x @ router.weight.T)
    assert (idx == 3).any(dim=-1).all()  # the bias forces expert 3 into every choice
    best_other = s[:, :3].argmax(dim=-1)
    for t in range(3):
        assert set(idx[t].tolist()) == {3, best_other[t].item()}
        chosen = s[t, idx[t]]
        assert torch.allclose(weights[t], chosen / chosen.sum())


def test_post_norm_layer_against_reference(base):
    model = _load(base("softmax-post"))
    layer = model.model.layers[0]
    x = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(0))
    pos = torch.arange(5)[None]
    kwargs = dict(position_embeddings=model.model.rotary_emb(x, pos), attention_mask=None)
    with torch.no_grad():
        h = layer.input_layernorm(x + layer.self_attn(hidden_states=x, **kwargs)[0])
        expected = layer.post_attention_layernorm(h + layer.mlp(h))
        assert torch.allclose(layer(x, **kwargs), expected)


def test_config_validation_and_idempotent_registration():
    moegrow.modeling.variants.register()  # registering twice must not raise
    moegrow.modeling.variants.register()
    from transformers import AutoConfig

    assert AutoConfig.for_model("moegrow_moe").router_scoring == "softmax"
    with pytest.raises(ValueError, match="router_scoring"):
        MoegrowMoeConfig(router_scoring="softplus")
    with pytest.raises(ValueError, match="norm_position"):
        MoegrowMoeConfig(norm_position="sandwich")


# -- growth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_width_growth_is_exact(perturbed, tmp_path, variant):
    src = perturbed(variant)
    result = grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0.0), progress=False)
    assert result.plan.exact, result.plan.not_exact
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (16, 4)
    assert _max_diff(src, tmp_path / "out") <= TOL


def test_sigmoid_without_renormalisation_grows_exactly(base, tmp_path):
    src = init_checkpoint(
        tmp_path / "src",
        "tiny",
        vocab_size=VOCAB,
        router="sigmoid",
        overrides={"norm_topk_prob": False},
    )
    config = json.loads((src / "config.json").read_text())
    assert width_rules(family_for(config), config, GrowthSpec(width=2)).down_scale == 0.5
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0.0), progress=False)
    assert _max_diff(src, tmp_path / "out") <= TOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_depth_growth(perturbed, tmp_path, variant):
    """Zero-initialised copies are exact for pre-norm; post-norm copies still apply their norms:
    ``--zero-init`` is refused, and plain copies are planned as not exact (truly)."""
    src = perturbed(variant)
    if VARIANTS[variant][1] == "pre":
        result = grow(src, tmp_path / "out", GrowthSpec(depth=2, zero_init=True), progress=False)
        assert result.plan.exact, result.plan.not_exact
        assert _max_diff(src, tmp_path / "out") <= TOL
        return
    with pytest.raises(GrowthError, match="--zero-init: moegrow_moe: .*post-norm"):
        grow(src, tmp_path / "zero", GrowthSpec(depth=2, zero_init=True), progress=False)
    assert not (tmp_path / "zero").exists()
    result = grow(src, tmp_path / "out", GrowthSpec(depth=2), progress=False)
    assert not result.plan.exact
    assert any("post-norm" in r for r in result.plan.not_exact)
    assert _max_diff(src, tmp_path / "out") > TOL


# -- presets and init errors ------------------------------------------------------------------


def _tokenizer_folder(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", *"abcdefghij"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(path)
    return path


@pytest.mark.parametrize("layout", ["tokenizer", "data"])
def test_init_takes_the_vocabulary_from_a_tokenizer(tmp_path, layout):
    from transformers import AutoTokenizer

    if layout == "data":  # a prepared data folder: manifest.json + tokenizer/
        _tokenizer_folder(tmp_path / "data" / "tokenizer")
        (tmp_path / "data" / "manifest.json").write_text("{}")
        tok_arg = tmp_path / "data"
    else:
        tok_arg = _tokenizer_folder(tmp_path / "tok")
    out = init_checkpoint(tmp_path / "m", "tiny", tokenizer=tok_arg, router="sigmoid")
    config = json.loads((out / "config.json").read_text())
    assert (config["vocab_size"], config["bos_token_id"], config["eos_token_id"]) == (14, 1, 2)
    assert config["pad_token_id"] == 0
    assert len(AutoTokenizer.from_pretrained(out)) == 14
    with pytest.raises(MoegrowError, match="smaller than the tokenizer"):
        init_checkpoint(tmp_path / "m2", "tiny", tokenizer=tok_arg, vocab_size=8)


def test_init_errors(tmp_path):
    with pytest.raises(MoegrowError, match="--tokenizer DIR .* or --vocab N"):
        init_checkpoint(tmp_path / "a", "tiny")
    with pytest.raises(MoegrowError, match="not a qwen3_moe config key; valid keys: .*num_hidden"):
        init_checkpoint(tmp_path / "a", "tiny", vocab_size=VOCAB, overrides={"num_layers": 4})
    with pytest.raises(MoegrowError, match="router="):
        init_checkpoint(tmp_path / "a", "tiny", vocab_size=VOCAB, overrides={"router_scoring": 1})
    with pytest.raises(MoegrowError, match="unknown preset"):
        init_checkpoint(tmp_path / "a", "huge", vocab_size=VOCAB)
    with pytest.raises(MoegrowError, match="--config-only"):
        init_checkpoint(tmp_path / "a", "paper-3b", vocab_size=32000)
    assert not list(tmp_path.iterdir())  # nothing written by a refused init

    out = init_checkpoint(
        tmp_path / "a",
        "tiny",
        vocab_size=VOCAB,
        overrides={"num_hidden_layers": 3, "num_local_experts": 6},
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_local_experts"]) == (3, 6)
    with pytest.raises(MoegrowError, match="already exists"):
        init_checkpoint(out, "tiny", vocab_size=VOCAB)
    init_checkpoint(out, "tiny", vocab_size=VOCAB, overwrite=True)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp folders left


def test_paper_presets_config_only_and_parameter_counts(tmp_path):
    """PAPER.md: 3B total / ~0.7B activated, 17B / 2.1B activated. Without embeddings the
    presets have 3.13B / 0.295B and 17.2B / 1.36B; the paper's activated counts need a vocabulary
    of about 200k (untied): 3.54B / 0.705B and 18.0B / 2.18B."""
    from transformers import AutoConfig, AutoModelForCausalLM

    out = init_checkpoint(tmp_path / "p", "paper-3b", vocab_size=200_064, config_only=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "moegrow_card.json"]
    cfg = AutoConfig.from_pretrained(out)
    assert (cfg.num_hidden_layers, cfg.num_local_experts, cfg.head_dim) == (20, 64, 128)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(cfg)
    counts = param_counts(config_dict("paper-3b", 200_064, "sigmoid"))
    assert sum(p.numel() for p in meta.parameters()) == counts.total
    assert abs(counts.total / 3.54e9 - 1) < 0.01 and abs(counts.active / 0.705e9 - 1) < 0.01
    no_vocab = param_counts(config_dict("paper-3b", 1, "sigmoid"))
    assert abs(no_vocab.total / 3.126e9 - 1) < 0.01 and abs(no_vocab.active / 0.295e9 - 1) < 0.01
    big = param_counts(config_dict("paper-17b", 200_064, "sigmoid"))
    assert abs(big.total / 18.03e9 - 1) < 0.01 and abs(big.active / 2.176e9 - 1) < 0.01


def test_dense_twin_of_a_preset(tmp_path):
    """``dense=True``: Qwen3 with the preset's attention and embeddings and one MLP as wide as
    the experts' activated width (the MoE's activated parameters but the router's); it
    upcycles exactly."""
    from moegrow.growth.upcycle_run import upcycle
    from moegrow.growth.upcycle_spec import UpcycleSpec

    out = init_checkpoint(tmp_path / "d", "tiny", vocab_size=VOCAB, dense=True)
    config = json.loads((out / "config.json").read_text())
    p = PRESETS["tiny"]
    assert config["model_type"] == "qwen3" and "num_experts" not in config
    assert config["intermediate_size"] == p.moe_intermediate_size * p.num_experts_per_tok
    with Checkpoint(out) as ckpt:
        stats = param_stats(
            ((t.name, t.dtype, t.shape) for t in ckpt.tensors.values()), family_for(config), config
        )
    counts = param_counts(config_dict("tiny", VOCAB, dense=True))
    assert (stats.total, stats.active) == (counts.total, counts.active)
    router = p.num_hidden_layers * p.num_experts * p.hidden_size  # the MoE's only extra
    assert param_counts(config_dict("tiny", VOCAB)).active == counts.active + router
    moe = upcycle(out, tmp_path / "moe", UpcycleSpec(experts=8, top_k=2), progress=False).out
    assert _max_diff(out, moe) < TOL
    with pytest.raises(MoegrowError, match="dense model has no router"):
        init_checkpoint(tmp_path / "x", "tiny", vocab_size=VOCAB, router="sigmoid", dense=True)
