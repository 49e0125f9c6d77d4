"""The command line: plan output, inspect, the growth card, sharded output and the module entry."""

from __future__ import annotations

import json
import subprocess
import sys

from moegrow.io.card import CARD_NAME


def test_plan_prints_before_after_and_edits(tiny, run_cli):
    src = tiny("qwen3_moe", num_layers=2)
    code, out, _ = run_cli("plan", src, "--depth", "2", "--width", "2")
    assert code == 0
    for text in (
        "layers",
        "2 -> 4",
        "experts",
        "top-k",
        "total params",
        "active params",
        "FLOPs/token",
        "bytes",
        "est. peak memory",
        "num_hidden_layers: 2 -> 4",
        "exact: no",
        "--noise 0.01",
    ):
        assert text in out, text
    code, out, _ = run_cli("plan", src, "--width", "2", "--noise", "0", "--json")
    s = json.loads(out)
    assert s["exact"] is True and s["counts"]["experts"][1] == 2 * s["counts"]["experts"][0]
    assert s["params"]["total"][1] > s["params"]["total"][0]
    assert s["bytes_out"] > s["bytes_in"]


def test_plan_writes_nothing(tiny, tmp_path, run_cli):
    src = tiny("mixtral", num_layers=2)
    before = sorted(p.name for p in src.iterdir())
    code, out, _ = run_cli("plan", src, "--depth", "2")
    assert code == 0 and "layer map: 0 0 1 1" in out
    assert sorted(p.name for p in src.iterdir()) == before


def test_grow_writes_card_index_and_other_files(tiny, tmp_path, run_cli):
    src = tmp_path / "src"
    import shutil

    shutil.copytree(tiny("mixtral", num_layers=2, max_shard_size="40KB"), src)
    (src / "tokenizer.json").write_text("{}")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        "grow", src, out, "--depth", "2", "--width", "2", "--max-shard-size", "100KB", "--quiet"
    )
    assert code == 0 and "exact: no" in stdout
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = set(index["weight_map"].values())
    assert len(files) > 1 and all((out / f).is_file() for f in files)
    assert (out / "tokenizer.json").read_text() == "{}"
    card = json.loads((out / CARD_NAME).read_text())
    assert card["spec"]["depth"] == 2 and card["spec"]["width"] == 2
    assert card["layer_map"] == [0, 0, 1, 1]
    assert set(card["source"]["sha256"]) >= {
        "config.json",
        *json.loads((src / "model.safetensors.index.json").read_text())["weight_map"].values(),
    }
    assert card["ledger"][-1]["stage"] == "grow"
    # a second growth carries the ledger forward
    code, _, _ = run_cli("grow", out, tmp_path / "again", "--depth", "2", "--quiet")
    assert code == 0
    card2 = json.loads((tmp_path / "again" / CARD_NAME).read_text())
    assert [e["stage"] for e in card2["ledger"]] == ["grow", "grow"]


def test_inspect_and_plot(tiny, tmp_path, run_cli):
    src = tiny("granitemoe", num_layers=3)
    code, out, _ = run_cli("inspect", src, "--plot", tmp_path / "p.png")
    assert code == 0 and "weight RMS" in out and (tmp_path / "p.png").stat().st_size > 1000
    code, out, _ = run_cli("inspect", src, "--json")
    info = json.loads(out)
    assert [p["layer"] for p in info["norm_profile"]] == [0, 1, 2]
    assert all(p["kind"] == "moe" and p["value"] > 0 for p in info["norm_profile"])


def test_module_entry_point(tiny):
    r = subprocess.run(
        [sys.executable, "-m", "moegrow", "plan", str(tiny("llama", num_layers=2)), "--depth", "2"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "layers" in r.stdout


def test_verify_refuses_models_that_do_not_fit(tiny, tmp_path, run_cli, monkeypatch):
    from moegrow.growth import verify

    src = tiny("mixtral", num_layers=2)
    assert run_cli("grow", src, tmp_path / "out", "--depth", "2", "--quiet")[0] == 0
    monkeypatch.setattr(verify, "available_memory", lambda: 10 * 2**20)
    code, _, err = run_cli("verify", src, tmp_path / "out")
    assert code == 2 and "GiB" in err and "needs about" in err
