"""Bad input: a one-line error naming the file/tensor/option, exit code 2, no OUT left behind."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
from fuzz_cases import rewrite_header as _rewrite_header


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _first_two(header):
    names = sorted(k for k in header if k != "__metadata__")
    return names[0], names[1]


def _check(run_cli, tmp_path, src, *extra, expect: str):
    out = tmp_path / "out"
    code, stdout, err = run_cli("grow", src, out, *(extra or ("--depth", "2")))
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("moegrow: error: "), err
    assert expect in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "moegrow-partial" in p.name]
    return lines[0]


def test_truncated_shard(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")
    f = src / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    msg = _check(run_cli, tmp_path, src, expect="model.safetensors")
    assert "truncated" in msg


def test_header_length_past_end(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")
    f = src / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", len(raw) * 4) + raw[8:])
    assert "header length" in _check(run_cli, tmp_path, src, expect="model.safetensors")


def test_overlapping_offsets(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")

    def overlap(h):
        names = [k for k in h if k.endswith("w1.weight")]
        h[names[1]]["data_offsets"] = h[names[0]]["data_offsets"]

    _rewrite_header(src / "model.safetensors", overlap)
    assert "overlap" in _check(run_cli, tmp_path, src, expect="w1.weight")


def test_out_of_range_offsets(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")

    def past_end(h):
        a, _ = _first_two(h)
        start, end = h[a]["data_offsets"]
        h[a]["data_offsets"] = [start + 10**9, end + 10**9]

    _rewrite_header(src / "model.safetensors", past_end)
    _check(run_cli, tmp_path, src, expect="past the")


def test_dtype_shape_mismatch(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")

    def wrong_shape(h):
        h["model.norm.weight"]["shape"] = [h["model.norm.weight"]["shape"][0] * 2]

    _rewrite_header(src / "model.safetensors", wrong_shape)
    msg = _check(run_cli, tmp_path, src, expect="model.norm.weight")
    assert "needs" in msg and "bytes" in msg


def test_missing_required_tensor(tiny, tmp_path, run_cli):
    from safetensors.torch import load_file, save_file

    src = _copy(tiny("qwen3_moe", num_layers=2), tmp_path / "src")
    tensors = load_file(src / "model.safetensors")
    del tensors["model.norm.weight"]
    save_file(tensors, src / "model.safetensors")
    _check(run_cli, tmp_path, src, expect="'model.norm.weight'")


def test_missing_expert_tensor(tiny, tmp_path, run_cli):
    from safetensors.torch import load_file, save_file

    src = _copy(tiny("qwen3_moe", num_layers=2), tmp_path / "src")
    tensors = load_file(src / "model.safetensors")
    del tensors["model.layers.0.mlp.experts.2.up_proj.weight"]
    save_file(tensors, src / "model.safetensors")
    _check(run_cli, tmp_path, src, "--width", "2", expect="experts.2.up_proj.weight")


def test_index_leaving_the_folder(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2, max_shard_size="60KB"), tmp_path / "src")
    index_path = src / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "../x.safetensors"
    index_path.write_text(json.dumps(index))
    (tmp_path / "x.safetensors").write_bytes(b"")
    msg = _check(run_cli, tmp_path, src, expect="../x.safetensors")
    assert "leaves" in msg


def test_symlinked_shard_leaving_the_folder(tiny, tmp_path, run_cli):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")
    outside = tmp_path / "elsewhere.safetensors"
    (src / "model.safetensors").rename(outside)
    (src / "model.safetensors").symlink_to(outside)
    _check(run_cli, tmp_path, src, expect="outside the checkpoint folder")


def test_pickle_checkpoint_refused(tmp_path, run_cli):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    msg = _check(run_cli, tmp_path, src, expect="pytorch_model.bin")
    assert "pickle" in msg


def test_unknown_model_type(tiny, tmp_path, run_cli):
    src = _copy(tiny("llama", num_layers=2), tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "bert"
    (src / "config.json").write_text(json.dumps(cfg))
    msg = _check(run_cli, tmp_path, src, expect="'bert'")
    assert "mixtral" in msg and "qwen3_moe" in msg


@pytest.mark.parametrize("value", ["1", "1.5", "two"])
def test_bad_depth(tiny, tmp_path, run_cli, value):
    _check(run_cli, tmp_path, tiny("llama", num_layers=2), "--depth", value, expect="--depth")


def test_top_k_larger_than_experts(tiny, tmp_path, run_cli):
    src = tiny("mixtral", num_layers=2)
    _check(run_cli, tmp_path, src, "--width", "2", "--top-k", "100", expect="--top-k")


def test_existing_out_refused_then_overwritten(tiny, tmp_path, run_cli):
    src = tiny("mixtral", num_layers=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, _, err = run_cli("grow", src, out, "--depth", "2")
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "precious"
    code, _, _ = run_cli("grow", src, out, "--depth", "2", "--overwrite", "--quiet")
    assert code == 0 and not (out / "keep.txt").exists() and (out / "config.json").exists()


def test_nothing_to_grow(tiny, tmp_path, run_cli):
    code, _, err = run_cli("plan", tiny("llama", num_layers=2))
    assert code == 2 and "nothing to grow" in err


def test_interrupt_leaves_nothing(tiny, tmp_path, monkeypatch):
    """An interrupt in the middle of writing removes the partial output."""
    from moegrow.growth import operators
    from moegrow.growth.grow import grow
    from moegrow.growth.spec import GrowthSpec

    calls = {"n": 0}
    real = operators.StreamingShardWriter.copy_range

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(operators.StreamingShardWriter, "copy_range", flaky)
    with pytest.raises(KeyboardInterrupt):
        grow(tiny("mixtral", num_layers=2), tmp_path / "out", GrowthSpec(depth=2), progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_killed_process_leaves_nothing(tmp_path, sig):
    """A real `moegrow grow` process stopped mid-write (kill / Ctrl-C) leaves no OUT behind."""
    import signal
    import subprocess
    import sys
    import time

    import torch
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    cfg = {
        "model_type": "mixtral",
        "num_hidden_layers": 1,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "hidden_size": 512,
        "intermediate_size": 4096,
    }
    (src / "config.json").write_text(json.dumps(cfg))
    p = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": torch.zeros(8, 512),
        "model.norm.weight": torch.ones(512),
        p + "input_layernorm.weight": torch.ones(512),
        p + "self_attn.o_proj.weight": torch.zeros(512, 512),
        p + "block_sparse_moe.gate.weight": torch.randn(8, 512),
    }
    for e in range(8):  # 8 experts x 3 x 8 MiB: noise on the copies takes a while
        for w in ("w1", "w2", "w3"):
            tensors[f"{p}block_sparse_moe.experts.{e}.{w}.weight"] = torch.randn(4096, 512)
    save_file(tensors, src / "model.safetensors")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moegrow", "grow", str(src), str(out), "--width", "4", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and children inherit that: give
        # the grower the default disposition a terminal's Ctrl-C reaches.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not any("moegrow-partial" in q.name for q in tmp_path.iterdir()):
        assert proc.poll() is None and time.time() < deadline, "grow ended before it was stopped"
        time.sleep(0.01)
    time.sleep(0.2)
    assert proc.poll() is None, "grow ended before it was stopped"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("top_k", [0, -1])
def test_non_positive_top_k_is_refused(tiny, tmp_path, run_cli, top_k):
    src = _copy(tiny("mixtral", num_layers=2), tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    cfg["num_experts_per_tok"] = top_k
    (src / "config.json").write_text(json.dumps(cfg))
    line = _check(run_cli, tmp_path, src, "--width", "2", expect="num_experts_per_tok")
    assert f"got {top_k}" in line
