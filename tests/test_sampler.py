"""The noise samplers: the table sampler's distribution and determinism, one read per noised
source range, and the sampler recorded in the growth card."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tiny_models import read_tensors

from moegrow.errors import GrowthError
from moegrow.growth import grow as grow_module
from moegrow.growth import operators
from moegrow.growth.grow import grow
from moegrow.growth.sampler import LANES, TableSampler, normal_table, stream_key
from moegrow.growth.spec import GrowthSpec
from moegrow.io.checkpoint import Checkpoint

N = 1 << 22  # 4.2 M samples


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    out = np.empty(N, dtype=np.float64)
    TableSampler().fill(out, stream_key(0, "model.layers.0.mlp.experts.9.w1.weight", 1), 0, 1.0)
    return out


def test_table_is_unit_normal_quantiles():
    table = normal_table()
    assert len(table) == 65536 and np.all(np.diff(table) > 0)
    assert abs(table.mean()) < 1e-12 and abs((table * table).mean() - 1) < 1e-12
    assert 4.2 < table[-1] < 4.4  # the cut tail: Phi^-1(1 - 2^-17) = 4.33


def test_moments(samples):
    n = len(samples)
    mean, var = samples.mean(), samples.var()
    z = (samples - mean) / math.sqrt(var)
    assert abs(mean) < 4 / math.sqrt(n)  # 4 standard errors
    assert abs(var - 1) < 4 * math.sqrt(2 / n)
    assert abs((z**3).mean()) < 4 * math.sqrt(6 / n)  # skewness
    assert abs((z**4).mean() - 3) < 4 * math.sqrt(24 / n)  # kurtosis
    assert abs(np.corrcoef(samples[:-1], samples[1:])[0, 1]) < 4 / math.sqrt(n)  # lag 1
    lanes = samples[: n - n % LANES].reshape(-1, LANES)  # the four samples of one hash
    assert abs(np.corrcoef(lanes[:, 0], lanes[:, 1])[0, 1]) < 4 / math.sqrt(n / LANES)


def test_kolmogorov_smirnov(samples):
    """The KS distance to N(0, 1) is within the 99.9 % critical value for this many samples
    (1.95 / sqrt(n)), plus the table's own step of 2^-16."""
    n = len(samples)
    x = torch.from_numpy(np.sort(samples))
    cdf = torch.special.ndtr(x).numpy()
    ranks = np.arange(1, n + 1) / n
    d = max(np.max(ranks - cdf), np.max(cdf - (ranks - 1 / n)))
    assert d < 1.95 / math.sqrt(n) + 2**-16, d


def test_scaled_and_streams_differ():
    s = TableSampler()
    a, b, c = (np.empty(100_000, dtype=np.float32) for _ in range(3))
    s.fill(a, 1, 0, 1.0)
    s.fill(b, 1, 0, 0.25)
    s.fill(c, 2, 0, 1.0)
    assert np.array_equal(a * np.float32(0.25), b)  # the std scales the table exactly (x 2^-2)
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.02


@pytest.mark.parametrize("cuts", [[1], [3, 4, 5], [65_537, 65_536 * 4 + 3], [1000] * 30])
def test_any_split_gives_the_same_samples(cuts):
    """A sample depends on (key, index) alone: filling a range in pieces that start anywhere
    gives the bytes of filling it at once."""
    s = TableSampler()
    whole = np.empty(400_000, dtype=np.float32)
    s.fill(whole, 5, 7, 0.5)
    pieces, start = [], 7
    for size in [*cuts, 400_000 - sum(cuts)]:
        piece = np.empty(size, dtype=np.float32)
        s.fill(piece, 5, start, 0.5)
        pieces.append(piece)
        start += size
    assert np.array_equal(np.concatenate(pieces), whole)


def test_same_bytes_whatever_the_chunks_and_threads(tiny, tmp_path, monkeypatch):
    """Growth with the table sampler writes the same bytes with other chunk sizes and thread
    counts (and in other shardings); the torch sampler's bytes differ from them."""
    src = tiny("mixtral", num_layers=2, intermediate_size=96)
    spec = GrowthSpec(depth=2, width=2, noise=0.05, seed=4)
    grow(src, tmp_path / "ref", spec, progress=False)
    ref = read_tensors(tmp_path / "ref")
    for i, (chunk, threads) in enumerate([(1000, 1), (4099, 3), (1 << 16, 2)]):
        monkeypatch.setattr(operators, "CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(grow_module, "COMPUTE_THREADS", threads)
        grow(src, tmp_path / f"o{i}", spec, progress=False, max_shard_size="40KB")
        got = read_tensors(tmp_path / f"o{i}")
        assert got.keys() == ref.keys()
        assert [k for k in ref if not got[k].equal(ref[k])] == [], (chunk, threads)
    monkeypatch.undo()
    torch_spec = GrowthSpec(depth=2, width=2, noise=0.05, seed=4, sampler="torch")
    grow(src, tmp_path / "torch", torch_spec, progress=False)
    other = read_tensors(tmp_path / "torch")
    differ = [k for k in ref if not other[k].equal(ref[k])]
    assert differ and all(".experts." in k or k.endswith("gate.weight") for k in differ)
    cards = [json.loads((tmp_path / n / "moegrow_card.json").read_text()) for n in ("ref", "torch")]
    assert [c["spec"]["sampler"] for c in cards] == ["table", "torch"]


def test_each_noised_source_range_is_read_once(tiny, tmp_path, monkeypatch):
    """Its std and its noise come from one read; no range stays held after the growth."""
    src = tiny("mixtral", num_layers=2, intermediate_size=96)
    reads: list[tuple[str, int, int]] = []
    read_into = Checkpoint.read_into
    monkeypatch.setattr(
        Checkpoint,
        "read_into",
        lambda self, name, start, view: (
            reads.append((name, start, view.nbytes)) or read_into(self, name, start, view)
        ),
    )
    monkeypatch.setattr(operators, "CHUNK_ELEMENTS", 1000)  # several chunks per tensor
    jobs = []
    init = operators.PartJobs.__init__
    monkeypatch.setattr(
        operators.PartJobs,
        "__init__",
        lambda self, *a, **k: jobs.append(self) or init(self, *a, **k),
    )
    grow(src, tmp_path / "out", GrowthSpec(width=2, noise=0.01), progress=False)
    ckpt = Checkpoint(src)
    experts = [n for n in ckpt.tensors if ".experts." in n]
    routers = [n for n in ckpt.tensors if n.endswith("gate.weight")]
    per_tensor: dict[str, int] = {}
    for name, _, nbytes in reads:
        per_tensor[name] = per_tensor.get(name, 0) + nbytes
    assert per_tensor == {n: ckpt.tensors[n].nbytes for n in experts + routers}
    assert jobs[0]._scopes.resident() <= 2 * max(ckpt.tensors[n].nbytes for n in experts)
    assert not jobs[0]._scopes._scopes  # every range released
    name = experts[0]
    x = ckpt.tensor(name).double()
    std = jobs[0].std(name, 0, ckpt.tensors[name].nbytes)
    assert std == pytest.approx(x.std(unbiased=False).item(), rel=1e-5)
    assert not jobs[0]._scopes._scopes


def test_bad_sampler_is_a_one_line_error(tiny, tmp_path, run_cli):
    with pytest.raises(GrowthError, match="--sampler must be one of table, torch, got 'fast'"):
        GrowthSpec(width=2, sampler="fast")
    code, _, err = run_cli("grow", tiny("mixtral", num_layers=2), tmp_path / "o", "--width", "2",
                           "--sampler", "fast")  # fmt: skip
    assert code == 2 and "--sampler" in err and not (tmp_path / "o").exists()
