"""The streaming writer produces files the reference safetensors library reads bit for bit."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from moegrow.io.safetensors_io import (
    StreamingShardWriter,
    read_header,
    tensor_bytes,
)
from moegrow.io.sequential_writer import BLOCK


@pytest.mark.parametrize("direct", [False, True])
def test_streamed_file_round_trips(tmp_path, direct):
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a.f32": torch.randn(3, 5, generator=gen),
        "b.bf16": torch.randn(7, generator=gen).to(torch.bfloat16),
        "c.fp8": torch.randn(4, 4, generator=gen).to(torch.float8_e4m3fn),
        "d.u8": torch.randint(0, 255, (3,), generator=gen).to(torch.uint8),
        "e.scalar": torch.tensor(2.5),
        "f.empty": torch.zeros(0, 4),
        # more than one block of the writer, ending mid-block
        "g.large": torch.randn(BLOCK * 3 // 8 + 3, generator=gen).to(torch.float32),
    }
    order = sorted(tensors, key=lambda k: -tensors[k].element_size())
    entries = [(k, _dtype(tensors[k]), tuple(tensors[k].shape)) for k in order]
    path = tmp_path / "x.safetensors"
    writer = StreamingShardWriter(path, entries, {"format": "pt"}, direct=direct)
    for k in order:
        writer.write(tensor_bytes(tensors[k]))
    writer.finish()
    with safe_open(path, "pt") as f:
        assert f.metadata() == {"format": "pt"}
        for k, t in tensors.items():
            got = f.get_tensor(k)
            assert got.dtype == t.dtype and got.shape == t.shape
            assert got.reshape(-1).view(torch.uint8).equal(t.reshape(-1).view(torch.uint8))
    infos, _ = read_header(path)
    assert all(i.offset % i.itemsize == 0 for i in infos.values())


def test_reader_agrees_with_reference_writer(tmp_path):
    t = {"w": torch.arange(12, dtype=torch.float16).reshape(3, 4), "s": torch.ones(2)}
    save_file(t, tmp_path / "r.safetensors")
    infos, meta = read_header(tmp_path / "r.safetensors")
    assert infos["w"].shape == (3, 4) and infos["w"].dtype == "F16" and infos["w"].nbytes == 24
    raw = (tmp_path / "r.safetensors").read_bytes()
    w = infos["w"]
    assert raw[w.offset : w.offset + w.nbytes] == t["w"].numpy().tobytes()


def _dtype(t: torch.Tensor) -> str:
    return {
        torch.float32: "F32",
        torch.bfloat16: "BF16",
        torch.float8_e4m3fn: "F8_E4M3",
        torch.uint8: "U8",
    }[t.dtype]
