"""Shared sparse-attention indexers (GLM-5 ``glm_moe_dsa``, Hy4 ``hy_v4``): a ``"shared"`` layer
reuses the top-k of the last ``"full"`` layer before it, so a zero-initialised depth copy of a
full layer must become shared (its own top-k would reach the shared layers after it), and a
config.json that leaves ``indexer_types`` to a schedule gets it written from the stored
indexers (:mod:`moegrow.growth.indexer_rules`)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from tiny_models import load_with_info, model_logits

from moegrow.families import BY_MODEL_TYPE
from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec
from moegrow.io.checkpoint import Checkpoint

TOL = 1e-5
#: Full / shared per layer, as each config class derives it for 4 layers by default (hy_v4) or
#: from ``index_topk_freq`` 2 and its default offset 2 (glm_moe_dsa): full layer 1 is followed by
#: a shared one, whose top-k a full copy of layer 1 would replace.
PATTERN = {
    "hy_v4": ["full", "full", "shared", "shared"],
    "glm_moe_dsa": ["full", "full", "shared", "full"],
}
SCHEDULE = {"hy_v4": {}, "glm_moe_dsa": {"index_topk_freq": 2}}
DEPTH = GrowthSpec(depth=2, zero_init=True)
IDS = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def indexed(tmp_path_factory):
    """``indexed(model_type, explicit)`` -> a tiny 4-layer checkpoint whose indexer top-k (8 of
    16 positions) matters, with ``indexer_types`` in config.json or left to the schedule."""
    from moegrow.conformance.tiny import build_tiny

    root = tmp_path_factory.mktemp("indexed")
    cache: dict = {}

    def get(model_type: str, explicit: bool):
        if (model_type, explicit) not in cache:
            folder = root / f"{model_type}-{explicit}"
            pattern = PATTERN[model_type]
            model = build_tiny(model_type, num_layers=len(pattern), indexer_types=pattern)
            model.save_pretrained(folder)
            if not explicit:
                cfg = json.loads((folder / "config.json").read_text())
                del cfg["indexer_types"]
                cfg.update(SCHEDULE[model_type])
                (folder / "config.json").write_text(json.dumps(cfg))
            with torch.no_grad():
                ref = model(input_ids=IDS, use_cache=False).logits.float()
            cache[model_type, explicit] = folder, ref
        return cache[model_type, explicit]

    return get


def _grown_logits(out):
    model, info = load_with_info(out)
    assert not any(info.values()), info  # no missing or unexpected indexer tensors
    return model_logits(model, IDS), model.config.indexer_types


@pytest.mark.parametrize("explicit", [True, False], ids=["listed", "scheduled"])
@pytest.mark.parametrize("model_type", list(SCHEDULE))
def test_depth_copies_of_full_layers_become_shared(indexed, tmp_path, model_type, explicit):
    src, ref = indexed(model_type, explicit)
    result = grow(src, tmp_path / "out", DEPTH, progress=False)
    assert result.plan.exact, result.plan.not_exact
    got, types = _grown_logits(tmp_path / "out")
    # interposed: layer 2j is source layer j, layer 2j + 1 its copy, always shared
    assert types == [t for s in PATTERN[model_type] for t in (s, "shared")]
    with Checkpoint(tmp_path / "out") as ckpt:
        with_indexer = {int(n.split(".")[2]) for n in ckpt.tensors if ".indexer." in n}
    assert with_indexer == {j for j, t in enumerate(types) if t == "full"}
    assert (got - ref).abs().max().item() <= TOL * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("model_type", list(SCHEDULE))
def test_full_copies_would_change_the_shared_layers(indexed, tmp_path, monkeypatch, model_type):
    """The control: without the rule the copies keep their own indexer, and the logits move."""
    src, ref = indexed(model_type, True)
    monkeypatch.setitem(
        BY_MODEL_TYPE, model_type, replace(BY_MODEL_TYPE[model_type], shared_indexer=None)
    )
    grow(src, tmp_path / "out", DEPTH, progress=False)
    got, types = _grown_logits(tmp_path / "out")
    assert types == [s for s in PATTERN[model_type] for _ in range(2)]
    assert (got - ref).abs().max().item() > TOL * max(1.0, ref.abs().max().item())
