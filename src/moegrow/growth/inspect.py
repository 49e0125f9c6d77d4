"""What a checkpoint is: family, counts, parameters, FLOPs and its weight-norm profile."""

from __future__ import annotations

import os

from moegrow.families import family_for
from moegrow.flops import DEFAULT_SEQ_LEN, tensor_stats
from moegrow.growth.config_edit import num_layers
from moegrow.growth.norms import norm_profile
from moegrow.growth.plan import validate_source
from moegrow.io.checkpoint import Checkpoint


def inspect_checkpoint(src: str | os.PathLike, seq_len: int = DEFAULT_SEQ_LEN) -> dict:
    """Family, layer / expert / top-k counts, parameters (total, active), FLOPs per token at
    ``seq_len``, Chinchilla F_c and the per-layer weight-norm profile of a checkpoint folder."""
    with Checkpoint(src) as ckpt:
        fam = family_for(ckpt.config, where=str(ckpt.folder / "config.json"))
        validate_source(ckpt, fam)  # an incomplete checkpoint is reported, not described
        stats = tensor_stats(ckpt.tensors.values(), fam, ckpt.config)
        info = {
            "source": str(ckpt.folder),
            "model_type": ckpt.config.get("model_type"),
            "family": fam.name,
            "layers": num_layers(ckpt.config, fam),
            **stats.to_json(seq_len),
            "norm_profile": [p.__dict__ for p in norm_profile(ckpt, fam)],
        }
        if fam.experts is not None:
            info["experts"], info["top_k"] = fam.expert_counts(ckpt.config)
    return info
