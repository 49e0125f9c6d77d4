"""What validate_source accepts and refuses: MTP layers counted from disk, per-kind tensor sets."""

from __future__ import annotations

import json

import pytest
from tiny_models import load, read_tensors

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec


@pytest.mark.parametrize(
    "family,overrides",
    [("deepseek_v3", {"num_nextn_predict_layers": 1}), ("bailing_hybrid", {"num_mtp_layers": 1})],
)
def test_mtp_declared_but_not_saved_is_grown(tiny, tmp_path, family, overrides):
    """transformers' save_pretrained keeps the MTP count in config.json but not the MTP layer."""
    src = tiny(family, num_layers=2, **overrides)
    cfg = json.loads((src / "config.json").read_text())
    assert any(cfg.get(k) == 1 for k in ("num_nextn_predict_layers", "num_mtp_layers"))
    assert not any(k.startswith("model.layers.2.") for k in read_tensors(src))
    result = grow(src, tmp_path / "out", GrowthSpec(depth=2, width=2, noise=0), progress=False)
    assert any("multi-token-prediction" in n and "hold 0 " in n for n in result.plan.notes)
    after = read_tensors(tmp_path / "out")
    assert max(int(k.split(".")[2]) for k in after if k.startswith("model.layers.")) == 3
    load(tmp_path / "out")  # transformers loads the grown model
