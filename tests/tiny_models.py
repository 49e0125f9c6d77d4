"""Tiny random Hugging Face checkpoints for moegrow tests.

Plain helper module (not a test file).  ``make_tiny(family, path)`` builds a deterministic,
tiny model of one of the families in ``FAMILIES`` (MoE, dense, hybrid stacks and multimodal
wrappers) with ``transformers`` and writes it with ``save_pretrained`` (``config.json`` +
``model.safetensors``, the on-disk / hub tensor layout).

Every fixture deliberately exercises the features a grower has to get right:

* every floating tensor is perturbed (seeded) after init, so no norm weight is exactly 1, no bias
  or router/expert bias (DeepSeek-V3 ``e_score_correction_bias``, gpt-oss ``router.bias``) is 0,
  and no two layers / experts are identical;
* mixed dense / sparse layers (qwen2_moe, qwen3_moe ``mlp_only_layers``; DeepSeek
  ``first_k_dense_replace``; Llama 4 ``moe_layers``), shared experts, attention / q-k-v / lm-head
  biases, QK norms, tied embeddings (GraniteMoE), per-layer ``layer_types`` (gpt-oss sliding,
  Llama 4 chunked attention), Llama 4 ``no_rope_layers``;
* hybrid stacks whose layer kinds alternate (Mamba / linear attention / short convolution /
  sliding / full attention, dense / MoE) and multimodal wrappers with a tiny vision tower;
* distinct widths (hidden 64, dense MLP 56, expert 24 (fused gate+up 48), shared expert 40,
  vocab 128, 4 experts) so that a tensor put in the wrong slot, or a fused gate/up tensor
  transposed, has the wrong shape.

Run ``python tests/tiny_models.py`` for a self-check (build, save, reload, exact logits).
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import re

import torch

FAMILIES: dict[str, str] = {
    "mixtral": "mixtral",
    "qwen2_moe": "qwen2_moe",
    "qwen3_moe": "qwen3_moe",
    "olmoe": "olmoe",
    "deepseek_v2": "deepseek_v2",
    "deepseek_v3": "deepseek_v3",
    "granitemoe": "granitemoe",
    "granitemoeshared": "granitemoeshared",
    "phimoe": "phimoe",
    "gpt_oss": "gpt_oss",
    "llama4_text": "llama4_text",
    "llama": "llama",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    # hybrid stacks (linear attention / Mamba / short convolution / attention, dense / MoE)
    "jamba": "jamba",
    "nemotron_h": "nemotron_h",
    "granitemoehybrid": "granitemoehybrid",
    "qwen3_next": "qwen3_next",
    "qwen3_5_moe_text": "qwen3_5_moe_text",
    "kimi_linear": "kimi_linear",
    "bailing_hybrid": "bailing_hybrid",
    "lfm2_moe": "lfm2_moe",
    "minimax": "minimax",
    "lara_mini": "lara_mini",
    "inkling2_text": "inkling2_text",
    # multimodal wrappers: the text tower under a prefix, its config under text_config
    "qwen3_5_moe": "qwen3_5_moe",
    "llama4": "llama4",
    "qwen3_vl_moe": "qwen3_vl_moe",
    "glm4v_moe": "glm4v_moe",
}
#: Text configs of wrappers that have no causal-LM class of their own (not built alone).
TEXT_ONLY: dict[str, str] = {
    "qwen3_vl_moe_text": "qwen3_vl_moe_text",
    "glm4v_moe_text": "glm4v_moe_text",
}

MOE_FAMILIES: tuple[str, ...] = (
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "deepseek_v2",
    "deepseek_v3",
    "granitemoe",
    "granitemoeshared",
    "phimoe",
    "gpt_oss",
    "llama4_text",
)
DENSE_FAMILIES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3")
#: Hybrid stacks and multimodal wrappers: their tiny configs are in ``tiny_hybrid.py``.
HYBRID_FAMILIES: tuple[str, ...] = (
    "jamba",
    "nemotron_h",
    "granitemoehybrid",
    "qwen3_next",
    "qwen3_5_moe_text",
    "kimi_linear",
    "bailing_hybrid",
    "lfm2_moe",
    "minimax",
    "lara_mini",
    "inkling2_text",
)
WRAPPED_FAMILIES: tuple[str, ...] = ("qwen3_5_moe", "llama4", "qwen3_vl_moe", "glm4v_moe")
# Tiny sizes.  Deliberately all different so that shape mix-ups are caught.
VOCAB = 128
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
DENSE_FFN = 56  # dense MLP width (dense models, dense layers of MoE models)
EXPERT_FFN = 24  # routed-expert width; 2 * 24 = 48 != HIDDEN, so fused [E, H, 2I] is unambiguous
SHARED_FFN = 40  # shared-expert width (where the family has its own knob for it)
NUM_EXPERTS = 4
TOP_K = 2

# Scale of the seeded perturbation added to every floating tensor after init.
PERTURB_STD = 0.02
# Router / expert-selection biases get a larger perturbation so that they matter for routing.
ROUTER_BIAS_STD = 0.1
_ROUTER_BIAS_RE = re.compile(r"(e_score_correction_bias|router\.bias|expert_bias)$")

_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    head_dim=HEAD_DIM,
    max_position_embeddings=256,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def _family_config(family: str, num_layers: int) -> dict:
    """Family-specific config kwargs (before user overrides)."""
    n = num_layers
    moe = dict(
        num_local_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K, intermediate_size=EXPERT_FFN
    )
    if family == "mixtral":
        return dict(moe, router_jitter_noise=0.0)
    if family == "qwen2_moe":
        return dict(
            num_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=DENSE_FFN,
            moe_intermediate_size=EXPERT_FFN,
            shared_expert_intermediate_size=SHARED_FFN,
            qkv_bias=True,
            decoder_sparse_step=1,
            mlp_only_layers=[1] if n > 1 else [],
            norm_topk_prob=False,
            use_sliding_window=False,
        )
    if family == "qwen3_moe":
        return dict(
            num_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            intermediate_size=DENSE_FFN,
            moe_intermediate_size=EXPERT_FFN,
            decoder_sparse_step=1,
            mlp_only_layers=[1] if n > 1 else [],
            norm_topk_prob=True,
            use_sliding_window=False,
        )
    if family == "olmoe":
        # OLMoE's canonical key is num_experts (num_local_experts is its alias)
        return dict(
            num_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K, intermediate_size=EXPERT_FFN
        )
    if family in ("deepseek_v2", "deepseek_v3"):
        d = dict(
            num_key_value_heads=HEADS,  # MLA: kv heads == heads
            head_dim=None,  # derived (= qk_rope_head_dim) in __post_init__
            n_routed_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            n_shared_experts=1,
            first_k_dense_replace=1 if n > 1 else 0,  # layer 0 dense, the rest MoE
            intermediate_size=DENSE_FFN,
            moe_intermediate_size=EXPERT_FFN,
            q_lora_rank=None,  # V2: plain q_proj
            kv_lora_rank=16,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=16,
        )
        if family == "deepseek_v2":
            d.update(topk_method="greedy", n_group=None, topk_group=None, norm_topk_prob=False)
        else:
            d.update(
                q_lora_rank=12,  # V3 exercises the q-LoRA path (q_a_proj/q_a_layernorm/q_b_proj)
                n_group=2,
                topk_group=1,
                norm_topk_prob=True,
                routed_scaling_factor=2.5,
                num_nextn_predict_layers=0,
            )
        return d
    if family == "granitemoe":
        return dict(
            moe,
            residual_multiplier=0.22,
            embedding_multiplier=12.0,
            logits_scaling=6.0,
            attention_multiplier=0.0625,
            tie_word_embeddings=True,
        )
    if family == "granitemoeshared":
        return dict(
            moe,
            shared_intermediate_size=SHARED_FFN,
            residual_multiplier=0.22,
            embedding_multiplier=12.0,
            logits_scaling=6.0,
            attention_multiplier=0.0625,
        )
    if family == "phimoe":
        return dict(
            moe,
            attention_bias=True,
            lm_head_bias=True,
            router_jitter_noise=0.01,
            input_jitter_noise=0.0,
        )
    if family == "gpt_oss":
        return dict(
            moe,
            sliding_window=4,
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)],
            attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
        )
    if family == "llama4_text":
        return dict(
            num_local_experts=NUM_EXPERTS,
            num_experts_per_tok=1,
            intermediate_size=EXPERT_FFN,
            intermediate_size_mlp=DENSE_FFN,
            interleave_moe_layer_step=2,
            moe_layers=list(range(1, n, 2)) or [0],  # layers 1, 3, ... MoE; 0, 2, ... dense
            no_rope_layers=[int((i + 1) % 4 != 0) for i in range(n)],  # every 4th layer NoPE
            attention_chunk_size=4,
            use_qk_norm=True,
            attn_temperature_tuning=True,
            floor_scale=4,
            router_jitter_noise=0.0,
        )
    if family in HYBRID_FAMILIES or family in TEXT_ONLY:
        from tiny_hybrid import hybrid_config

        return hybrid_config(family, n)
    if family == "llama":
        return dict(intermediate_size=DENSE_FFN, attention_bias=False, mlp_bias=False)
    if family == "mistral":
        return dict(intermediate_size=DENSE_FFN, sliding_window=8)
    if family in ("qwen2", "qwen3"):
        return dict(
            intermediate_size=DENSE_FFN,
            use_sliding_window=False,
            layer_types=["full_attention"] * n,
        )
    raise KeyError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")


def _config_fields(config_cls) -> set[str]:
    try:
        return {f.name for f in dataclasses.fields(config_cls)}
    except TypeError:  # not a dataclass (older transformers)
        return set()


def make_config(family: str, *, num_layers: int = 4, **config_overrides):
    """The tiny ``PretrainedConfig`` for ``family`` (not saved)."""
    from transformers import CONFIG_MAPPING, AutoConfig

    if family in WRAPPED_FAMILIES:
        from tiny_hybrid import WRAPPERS

        text_family, vision, wrapper, _ = WRAPPERS[family]
        text = make_config(text_family, num_layers=num_layers, **config_overrides)
        return AutoConfig.for_model(
            FAMILIES[family],
            text_config=text.to_dict(),
            vision_config=vision,
            tie_word_embeddings=False,
            **wrapper,
        )
    model_type = FAMILIES.get(family) or TEXT_ONLY[family]
    kwargs = dict(_COMMON)
    kwargs.update(_family_config(family, num_layers))
    kwargs["num_hidden_layers"] = num_layers
    # deepseek_v2 group-limited routing needs a group layout
    topk_method = config_overrides.get("topk_method")
    if family == "deepseek_v2" and topk_method == "group_limited_greedy":
        kwargs.update(n_group=2, topk_group=1)
    kwargs.update(config_overrides)
    # Don't introduce keys a config class does not declare (e.g. head_dim for qwen2 / qwen2_moe)
    # unless the caller asked for them explicitly.
    fields = _config_fields(CONFIG_MAPPING[model_type])
    if fields:
        for key in ("head_dim",):
            if key not in fields and key not in config_overrides:
                kwargs.pop(key, None)
    if kwargs.get("head_dim", 0) is None and family in ("deepseek_v2", "deepseek_v3"):
        kwargs.pop("head_dim")
    return AutoConfig.for_model(model_type, **kwargs)


def _model_class(model_type: str):
    from transformers import AutoModelForCausalLM

    if model_type == "llama4_text":
        from transformers import Llama4ForCausalLM

        return Llama4ForCausalLM
    if model_type in WRAPPED_FAMILIES:
        import transformers
        from tiny_hybrid import WRAPPERS

        return getattr(transformers, WRAPPERS[model_type][3])
    return AutoModelForCausalLM


@torch.no_grad()
def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Add seeded noise to every floating tensor of the state dict (params + persistent buffers).

    Tied tensors are perturbed once.  Router / expert-selection biases get a larger noise.
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    seen: set[int] = set()
    sd = model.state_dict(keep_vars=True)
    for name in sorted(sd):
        t = sd[name]
        if not torch.is_floating_point(t):
            continue
        t = t.data if isinstance(t, torch.nn.Parameter) else t
        key = t.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        std = ROUTER_BIAS_STD if _ROUTER_BIAS_RE.search(name) else PERTURB_STD
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float32) * std
        t.add_(noise.to(t.dtype))


def build_model(family: str, *, seed: int = 0, num_layers: int = 4, **config_overrides):
    """Build (but do not save) the tiny model in float32, eval mode, perturbed."""
    config = make_config(family, num_layers=num_layers, **config_overrides)
    cls = _model_class(config.model_type)
    torch.manual_seed(seed)
    if cls.__name__ == "AutoModelForCausalLM":
        model = cls.from_config(config, dtype=torch.float32)
    else:
        model = cls._from_config(config, dtype=torch.float32)
    _perturb(model, seed)
    model.eval()
    return model


def _keep_fp32_patterns(model, dtype=torch.bfloat16) -> list[str]:
    """Name fragments that ``from_pretrained(dtype=dtype)`` keeps in float32 (as transformers does:
    ``_keep_in_fp32_modules_strict`` for bf16/fp16, ``_keep_in_fp32_modules`` for fp16 only)."""
    attrs = ["_keep_in_fp32_modules_strict"]
    if dtype == torch.float16:
        attrs.append("_keep_in_fp32_modules")
    pats: list[str] = []
    for attr in attrs:
        pats.extend(getattr(model, attr, None) or [])
    return pats


def make_tiny(
    family: str,
    path,
    *,
    seed: int = 0,
    dtype="float32",
    num_layers: int = 4,
    max_shard_size: int | str | None = None,
    **config_overrides,
) -> pathlib.Path:
    """Build a tiny random ``family`` model and ``save_pretrained`` it (safetensors) to ``path``.

    ``dtype``: "float32" or "bfloat16" (or a torch dtype).  In bfloat16 the tensors a model keeps in
    fp32 when loaded in that dtype (``_keep_in_fp32_modules_strict``: DeepSeek ``gate.weight`` and
    DeepSeek-V3 ``e_score_correction_bias``) stay float32, so a bf16 fixture has mixed dtypes.
    ``max_shard_size`` (e.g. ``"40KB"``) writes a sharded checkpoint
    (``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``) instead of one file.
    Returns the directory path.
    """
    path = pathlib.Path(path)
    model = build_model(family, seed=seed, num_layers=num_layers, **config_overrides)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if torch_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype!r}")
    if torch_dtype != torch.float32:
        pats = _keep_fp32_patterns(model, torch_dtype)
        keep = {
            n: p.detach().clone()
            for n, p in list(model.named_parameters()) + list(model.named_buffers())
            if any(pat in n for pat in pats)
        }
        model.to(torch_dtype)
        with torch.no_grad():
            for n, t in keep.items():
                mod_name, _, attr = n.rpartition(".")
                mod = model.get_submodule(mod_name)
                cur = getattr(mod, attr)
                if isinstance(cur, torch.nn.Parameter):
                    cur.data = t
                else:
                    setattr(mod, attr, t)
        model.config.dtype = torch_dtype
    path.mkdir(parents=True, exist_ok=True)
    save_kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(path, **save_kwargs)
    return path


def read_tensors(folder) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in ``folder``, by name."""
    from safetensors import safe_open

    out = {}
    for f in sorted(pathlib.Path(folder).glob("*.safetensors")):
        with safe_open(f, "pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out


def sample_ids(batch: int = 2, seq: int = 12, vocab: int = VOCAB, seed: int = 0) -> torch.Tensor:
    """A deterministic LongTensor ``[batch, seq]`` of token ids in ``[0, vocab)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=gen, dtype=torch.long)


def load(path, dtype=torch.float32):
    """Load a saved tiny checkpoint in eval mode (float32 by default)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    cls = _model_class(cfg.model_type)
    model = cls.from_pretrained(path, dtype=dtype)
    model.eval()
    return model


def load_with_info(path, dtype=torch.float32):
    """Load a checkpoint in eval mode with transformers' loading report (missing, unexpected
    and mismatched keys)."""
    import json

    config = json.loads((pathlib.Path(path) / "config.json").read_text())
    model, info = _model_class(config["model_type"]).from_pretrained(
        path, dtype=dtype, output_loading_info=True
    )
    model.eval()
    return model, info


@torch.no_grad()
def model_logits(model, input_ids) -> torch.Tensor:
    if type(model).__name__ == "Llama4ForConditionalGeneration":
        # its forward fails on text-only input in transformers 5.24; the text tower is the model
        model = model.language_model
    return model(input_ids=input_ids, use_cache=False).logits.float()


@torch.no_grad()
def logits(path, input_ids) -> torch.Tensor:
    """float32 logits ``[batch, seq, vocab]`` of the checkpoint at ``path`` for ``input_ids``."""
    return model_logits(load(path, torch.float32), input_ids)


def _self_check() -> None:
    import tempfile
    import time
    import warnings

    from safetensors import safe_open
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    ids = sample_ids()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            t0 = time.perf_counter()
            model = build_model(family)
            ref = model_logits(model, ids)
            p = make_tiny(family, pathlib.Path(tmp) / family)
            got = logits(p, ids)
            assert torch.isfinite(got).all(), family
            diff = (got - ref).abs().max().item()
            assert diff == 0.0, f"{family}: reload |dlogits| = {diff}"
            # determinism
            again = model_logits(build_model(family), ids)
            assert torch.equal(again, ref), f"{family}: not deterministic"
            with safe_open(p / "model.safetensors", "pt") as f:
                n_keys = len(list(f.keys()))
            # sharded save reloads identically
            ps = make_tiny(
                family, pathlib.Path(tmp) / (family + "_sharded"), max_shard_size="100KB"
            )
            assert (ps / "model.safetensors.index.json").exists(), family
            assert torch.equal(logits(ps, ids), ref), f"{family}: sharded reload differs"
            # bf16 save: reload in fp32 equals the in-memory model cast to bf16 then fp32
            pb = make_tiny(family, pathlib.Path(tmp) / (family + "_bf16"), dtype="bfloat16")
            bf = copy.deepcopy(model)
            pats = _keep_fp32_patterns(bf)
            with torch.no_grad():
                for n, t in bf.state_dict(keep_vars=True).items():  # persistent tensors only
                    if torch.is_floating_point(t) and not any(q in n for q in pats):
                        t.data = t.data.to(torch.bfloat16).float()
            got_b = logits(pb, ids)
            diff_b = (got_b - model_logits(bf, ids)).abs().max().item()
            assert diff_b == 0.0, f"{family}: bf16 reload |dlogits| = {diff_b}"
            print(
                f"{family:18s} {type(model).__name__:28s} tensors={n_keys:3d} "
                f"ok  ({time.perf_counter() - t0:.2f}s)"
            )
    print(f"all {len(FAMILIES)} families ok in {time.perf_counter() - t_all:.1f}s")


if __name__ == "__main__":
    _self_check()
