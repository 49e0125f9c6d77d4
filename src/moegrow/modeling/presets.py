"""Model presets and :func:`init_checkpoint`, which writes a freshly initialised checkpoint.

Every preset is the paper's architecture (PAPER.md): pre-norm RMSNorm, QK-norm, GQA, RoPE,
SwiGLU experts, every layer MoE, no shared experts, untied embeddings. The default family is
transformers' Qwen3-MoE (softmax top-k with renormalisation); the paper's sigmoid router
(``router="sigmoid"``) or post-norm layers (``norm="post"``) give moegrow's own ``moegrow_moe``
(:mod:`moegrow.modeling.variants`). ``dense=True`` gives the preset's dense twin instead: a Qwen3
model with the same attention, norms and embeddings and one SwiGLU MLP per layer as wide as the
experts' activated width (a source for ``moegrow upcycle``). The vocabulary always comes from a
tokenizer (or an explicit size).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from moegrow.errors import MoegrowError
from moegrow.io.atomic import output_folder
from moegrow.io.card import CARD_NAME, write_json

ROUTER_SCORINGS = ("softmax", "sigmoid")
"""``router_scoring`` of ``moegrow_moe``: Qwen3-MoE's softmax or the paper's sigmoid router."""
NORM_POSITIONS = ("pre", "post")
"""``norm_position`` of ``moegrow_moe``: pre-norm (Qwen3-MoE) or post-norm layers."""

#: Above this many parameters a checkpoint is not materialised on a CPU (fp32 needs 4 bytes per
#: parameter for the weights alone, and initialising billions of them takes a long time); write
#: its config.json with ``config_only=True`` instead, for planning and FLOPs.
MAX_INIT_PARAMS = 2_000_000_000

#: Load-balancing loss coefficient of the paper (global-batch balance loss, 1e-3).
ROUTER_AUX_LOSS_COEF = 1e-3


@dataclass(frozen=True)
class Preset:
    """The shape of a model; everything else is fixed by :func:`config_dict`."""

    description: str
    num_hidden_layers: int
    hidden_size: int
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    """Width of one SwiGLU expert."""
    num_attention_heads: int
    num_key_value_heads: int
    """GQA: query heads share these key/value heads."""
    head_dim: int
    max_position_embeddings: int
    rope_theta: float = 10_000.0


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        description="debug model that trains in seconds on a CPU; drives the tests",
        num_hidden_layers=2,
        hidden_size=64,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=32,  # != hidden, so a transposed expert tensor cannot load
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
    ),
    "deep": Preset(
        description="eight thin layers (about 145 K activated parameters at a 320-token "
        "vocabulary): depth growth on a CPU",
        num_hidden_layers=8,
        hidden_size=48,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=24,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        max_position_embeddings=256,
    ),
    "small": Preset(
        description="a few million parameters (plus embeddings); trains in minutes on a CPU",
        num_hidden_layers=6,
        hidden_size=256,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=256,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=1024,
    ),
    "paper-3b": Preset(
        description="the paper's 3B base (PAPER.md): for plan / FLOPs; config_only on a CPU",
        num_hidden_layers=20,
        hidden_size=1024,
        num_experts=64,
        num_experts_per_tok=4,
        moe_intermediate_size=768,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=128,
        max_position_embeddings=4096,  # the paper's sequence length
    ),
    "paper-17b": Preset(
        description="the paper's 17B base (PAPER.md): for plan / FLOPs; config_only on a CPU",
        num_hidden_layers=28,
        hidden_size=2048,
        num_experts=96,
        num_experts_per_tok=6,
        moe_intermediate_size=1024,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=128,
        max_position_embeddings=4096,
    ),
}

#: Config keys set by the arguments of :func:`config_dict` rather than by ``overrides``.
_ARGUMENT_KEYS = {
    "model_type": "router= / norm= / dense=",
    "architectures": "router= / norm= / dense=",
    "router_scoring": "router=",
    "norm_position": "norm=",
    "vocab_size": "tokenizer= or vocab_size=",
}


def config_dict(
    preset: str,
    vocab_size: int,
    router: str = "softmax",
    norm: str = "pre",
    overrides: dict | None = None,
    dense: bool = False,
) -> dict:
    """The config.json keys of ``preset`` (``model_type`` included), without building a model.

    ``router``: ``"softmax"`` or ``"sigmoid"``; ``norm``: ``"pre"`` or ``"post"``; anything but
    softmax + pre-norm is a ``moegrow_moe`` model. ``dense``: the preset's dense twin (Qwen3,
    one MLP of width ``num_experts_per_tok x moe_intermediate_size`` per layer, pre-norm, no
    router). ``overrides`` replace config keys; a key the config class does not declare is an
    error that lists the valid ones.
    """

    if preset not in PRESETS:
        raise MoegrowError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    if router not in ROUTER_SCORINGS:
        raise MoegrowError(f"router must be one of {', '.join(ROUTER_SCORINGS)}, got {router!r}")
    if norm not in NORM_POSITIONS:
        raise MoegrowError(f"norm must be one of {', '.join(NORM_POSITIONS)}, got {norm!r}")
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise MoegrowError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if dense and (router, norm) != ("softmax", "pre"):
        raise MoegrowError(
            f"a dense model has no router and pre-norm layers: got router={router!r}, "
            f"norm={norm!r} with dense=True; drop --router / --norm or --dense"
        )
    p = PRESETS[preset]
    custom = router != "softmax" or norm != "pre"
    config = {
        "model_type": "moegrow_moe" if custom else "qwen3_moe",
        "architectures": ["MoegrowMoeForCausalLM" if custom else "Qwen3MoeForCausalLM"],
        "vocab_size": vocab_size,
        "hidden_size": p.hidden_size,
        "num_hidden_layers": p.num_hidden_layers,
        "num_attention_heads": p.num_attention_heads,
        "num_key_value_heads": p.num_key_value_heads,
        "head_dim": p.head_dim,
        "num_experts": p.num_experts,
        "num_experts_per_tok": p.num_experts_per_tok,
        "moe_intermediate_size": p.moe_intermediate_size,
        # used only by layers made dense with ``mlp_only_layers``: the experts' activated width
        "intermediate_size": p.moe_intermediate_size * p.num_experts_per_tok,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "router_aux_loss_coef": ROUTER_AUX_LOSS_COEF,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
        "max_position_embeddings": p.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": p.rope_theta},
        "attention_bias": False,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
    }
    if custom:
        config["router_scoring"] = router
        config["norm_position"] = norm
    if dense:
        for key in MOE_KEYS:
            del config[key]
        config.update(model_type="qwen3", architectures=["Qwen3ForCausalLM"])
    for key, value in (overrides or {}).items():
        config[_check_override(key, str(config["model_type"]))] = value
    return config


#: Keys of a preset's config that its dense twin does not have.
MOE_KEYS = (
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "norm_topk_prob",
    "decoder_sparse_step",
    "mlp_only_layers",
    "router_aux_loss_coef",
)


def _check_override(key: str, model_type: str) -> str:
    """The config key ``key`` stands for; raises for keys set otherwise or not declared."""
    if key in _ARGUMENT_KEYS:
        raise MoegrowError(f"override {key!r}: set it with {_ARGUMENT_KEYS[key]} instead")
    cls = _config_class(model_type)
    aliases = {v: k for k, v in cls.attribute_map.items()}  # num_local_experts -> num_experts
    valid = {f.name for f in dataclasses.fields(cls)} | {"head_dim"} | set(aliases)
    valid -= {"transformers_version"} | set(_ARGUMENT_KEYS)
    if key not in valid:
        raise MoegrowError(
            f"override {key!r}: not a {model_type} config key; valid keys: "
            + ", ".join(sorted(valid))
        )
    return aliases.get(key, key)


def _config_class(model_type: str):
    from transformers import CONFIG_MAPPING

    from moegrow.modeling.variants import register

    register()  # moegrow's own model types, known to transformers' Auto classes

    return CONFIG_MAPPING[model_type]


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a model, as :mod:`moegrow.flops` counts them."""

    total: int
    active: int
    """Parameters used per token: everything but the experts, plus top_k / E of the experts
    (embeddings included)."""


def param_counts(config: dict) -> ParamCounts:
    """Parameter counts of a :func:`config_dict` model, from its shapes alone (no tensors).

    The aux-loss-free balancing bias ``e_score_correction_bias`` is a buffer, not a parameter.
    """
    h = config["hidden_size"]
    heads, kv, hd = (config[k] for k in ("num_attention_heads", "num_key_value_heads", "head_dim"))
    e, k = config.get("num_experts", 0), config.get("num_experts_per_tok", 0)
    attention = 2 * h * heads * hd + 2 * h * kv * hd + 2 * hd  # q, o; k, v; q_norm, k_norm
    norms = 2 * h
    expert = 3 * h * config.get("moe_intermediate_size", 0)  # gate, up [I, H]; down [H, I]
    dense = 3 * h * config["intermediate_size"]
    total = active = 0
    step = config.get("decoder_sparse_step", 1)
    for i in range(config["num_hidden_layers"]):
        moe = i not in config.get("mlp_only_layers", []) and e > 0 and (i + 1) % step == 0
        layer = attention + norms + (e * h if moe else 0)  # router [E, H]
        total += layer + (e * expert if moe else dense)
        active += layer + (k * expert if moe else dense)
    embeddings = config["vocab_size"] * h * (1 if config["tie_word_embeddings"] else 2)
    return ParamCounts(total + embeddings + h, active + embeddings + h)  # + final norm


def init_checkpoint(
    out: str | os.PathLike,
    preset: str,
    *,
    tokenizer: str | os.PathLike | None = None,
    vocab_size: int | None = None,
    router: str = "softmax",
    norm: str = "pre",
    seed: int = 0,
    overrides: dict | None = None,
    overwrite: bool = False,
    config_only: bool = False,
    dense: bool = False,
) -> Path:
    """Write a freshly initialised Hugging Face checkpoint of ``preset`` (``dense``: of its
    dense twin, see :func:`config_dict`) to folder ``out``.

    ``tokenizer``: a tokenizer folder (``AutoTokenizer``) or a prepared data folder holding
    ``manifest.json`` and ``tokenizer/``: the vocabulary is ``len(tokenizer)`` (``vocab_size``,
    if also given, may only pad it), bos/eos/pad ids come from it, and it is saved beside the
    weights. Without a tokenizer, ``vocab_size`` is required. Weights are initialised by the
    model's own ``_init_weights`` (normal, std ``initializer_range`` = 0.02) under
    ``torch.manual_seed(seed)``: the same arguments give the same bytes. ``config_only`` writes
    config.json (and the tokenizer) only; models above :data:`MAX_INIT_PARAMS` require it.
    A ``moegrow_card.json`` records the arguments and starts the FLOPs ledger (stage ``init``).
    ``out`` appears complete or not at all; an existing ``out`` is replaced only with
    ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise MoegrowError(f"{out}: already exists; pass --overwrite to replace it")
    tok = _load_tokenizer(Path(tokenizer)) if tokenizer is not None else None
    if tok is not None:
        if vocab_size is not None and vocab_size < len(tok):
            raise MoegrowError(
                f"vocab_size {vocab_size} is smaller than the tokenizer's {len(tok)} tokens"
            )
        vocab_size = vocab_size or len(tok)
    elif vocab_size is None:
        raise MoegrowError(
            "the vocabulary size is unknown: pass --tokenizer DIR (a tokenizer or prepared data "
            "folder) or --vocab N"
        )
    config = config_dict(preset, vocab_size, router, norm, overrides, dense)
    if tok is not None:
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            config[key] = getattr(tok, key)
    counts = param_counts(config)
    if not config_only and counts.total > MAX_INIT_PARAMS:
        raise MoegrowError(
            f"preset {preset!r} has {counts.total / 1e9:.1f}B parameters "
            f"({counts.total * 4 / 2**30:.0f} GiB in float32): too large to initialise on a CPU "
            f"(limit {MAX_INIT_PARAMS / 1e9:.0f}B); pass --config-only to write its config.json "
            "for plan / FLOPs"
        )

    with output_folder(out, overwrite=overwrite, what="checkpoint folder") as target:
        tmp = target.path
        _write(tmp, config, seed, config_only)
        if tok is not None:
            tok.save_pretrained(tmp)
        card = _init_card(
            preset, router, norm, seed, overrides, tokenizer, config_only, counts, dense
        )
        write_json(tmp / CARD_NAME, card)
        target.commit()
    return out


def _init_card(
    preset: str,
    router: str,
    norm: str,
    seed: int,
    overrides: dict | None,
    tokenizer: str | os.PathLike | None,
    config_only: bool,
    counts: ParamCounts,
    dense: bool = False,
) -> dict:
    """The card of a fresh checkpoint: how it was made, and a ledger that starts at zero FLOPs
    (training and growth append their stages to it)."""
    from moegrow import __version__

    return {
        "moegrow_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "init": {
            "preset": preset,
            "router": router,
            "norm": norm,
            "seed": seed,
            "overrides": overrides or {},
            "tokenizer": str(Path(tokenizer).resolve()) if tokenizer is not None else None,
            "config_only": config_only,
            "dense": dense,
        },
        "params": {"total": counts.total, "active": counts.active},
        "ledger": [
            {
                "stage": "init",
                "tokens": 0,
                "flops": 0.0,
                "note": f"preset {preset} (dense twin), seed {seed}"
                if dense
                else f"preset {preset}, router {router}, {norm}-norm, seed {seed}",
                "active_params": counts.active,
            }
        ],
    }


def _load_tokenizer(path: Path):
    """The tokenizer of a tokenizer folder or of a prepared data folder (``tokenizer/``)."""
    from transformers import AutoTokenizer

    if (path / "manifest.json").is_file() and (path / "tokenizer").is_dir():
        path = path / "tokenizer"
    if not path.is_dir():
        raise MoegrowError(f"--tokenizer {path}: no such folder")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MoegrowError(
            f"--tokenizer {path}: not a tokenizer folder or a prepared data folder ({e})"
        ) from None


def _write(folder: Path, config: dict, seed: int, config_only: bool) -> None:
    """Build the model of ``config`` (or only its config) and save it to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    values = dict(config)
    config_obj = _config_class(values.pop("model_type"))(**values)
    if config_only:
        config_obj.save_pretrained(folder)
        return
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_obj, dtype=torch.float32)
    model.save_pretrained(folder)
