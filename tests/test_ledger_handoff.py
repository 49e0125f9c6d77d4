"""``moegrow flops MODEL --add-tokens N``: training done by another engine (torchtitan, ...) comes
back into the ledger of the checkpoint it exports."""

from __future__ import annotations

import json
import shutil

import pytest

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec
from moegrow.io.card import CARD_NAME
from moegrow.ledger import _stats, flops_report


@pytest.fixture
def grown_and_exported(tiny, tmp_path):
    """A grown checkpoint, and a copy of it without its card (what another engine exports)."""
    grown = grow(tiny("qwen3_moe", num_layers=2), tmp_path / "grown", GrowthSpec(width=2),
                 progress=False).out  # fmt: skip
    exported = tmp_path / "exported"
    shutil.copytree(grown, exported, ignore=shutil.ignore_patterns(CARD_NAME))
    return grown, exported


def test_external_training_joins_the_ledger(grown_and_exported, run_cli):
    grown, exported = grown_and_exported
    code, out, _ = run_cli(
        "flops", exported, "--add-tokens", "1e6", "--from", grown, "--seq-len", "256"
    )
    assert code == 0 and "added stage train (1000000 tokens" in out
    card = json.loads((exported / CARD_NAME).read_text())
    before = json.loads((grown / CARD_NAME).read_text())["ledger"]
    assert card["ledger"][:-1] == before and card["derived_from"] == str(grown.resolve())
    entry = card["ledger"][-1]
    assert entry["stage"] == "train" and entry["tokens"] == 10**6
    assert entry["flops"] == pytest.approx(_stats(exported).flops_per_token(256) * 10**6)
    # a second stage (the engine's own FLOPs this time) appends to the card now there
    code, _, _ = run_cli("flops", exported, "--add-tokens", "500", "--add-flops", "3e12")
    assert code == 0
    report = flops_report(exported)
    assert [e["stage"] for e in report["ledger"]][-2:] == ["train", "train"]
    assert report["ledger"][-1]["flops"] == 3e12
    assert report["sunk_tokens"] == sum(e.get("tokens", 0) for e in before) + 10**6 + 500


def test_bad_hand_offs_write_nothing(grown_and_exported, tiny, run_cli):
    grown, exported = grown_and_exported
    code, _, err = run_cli("flops", exported, "--add-tokens", "1000")
    assert code == 2 and "pass --from DIR" in err
    source = tiny("qwen3_moe", num_layers=2)
    code, _, err = run_cli("flops", exported, "--add-tokens", "1000", "--from", source)
    assert code == 2 and "parameters, but" in err
    code, _, err = run_cli("flops", exported, "--add-tokens", "many", "--from", grown)
    assert (
        code == 2 and "argument --add-tokens: expected a finite number like 2e6, got 'many'" in err
    )
    assert not (exported / CARD_NAME).exists()
    code, _, err = run_cli("flops", grown, "--add-tokens", "1000", "--from", grown)
    assert code == 2 and "leave out --from" in err
    code, _, err = run_cli("flops", grown, "--from", grown)
    assert code == 2 and "go with --add-tokens" in err
