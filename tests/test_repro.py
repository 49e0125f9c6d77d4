"""``moegrow repro``: cached and resumable runs, equal-extra-FLOPs bookkeeping, the statistics,
and every experiment end to end at a test scale (tiny budgets, a corpus that needs no download)."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace

import pytest

from moegrow.errors import MoegrowError
from moegrow.experiments.curves import loss_at
from moegrow.experiments.repro import CAMPAIGN_NAMES, NAMES
from moegrow.experiments.repro.analysis import loss_spike, recovery_steps
from moegrow.experiments.repro.depth_causes import CAMPAIGN
from moegrow.experiments.repro.experiments import EXPERIMENTS, GAP_COLUMN
from moegrow.experiments.repro.runs import RESULT_FILE, RunIncomplete, RunStore
from moegrow.experiments.repro.scales import SCALES
from moegrow.experiments.repro.stats import (
    fmt_interval,
    mean_std,
    paired_interval,
    pearson,
    ranks,
    spearman,
    t975,
)
from moegrow.growth.spec import GrowthSpec
from moegrow.io.card import ledger_of

SCALE = replace(
    SCALES["micro"],
    name="test",
    vocab=300,
    seq_len=32,
    batch_size=8,
    base_warmup_steps=2,
    grown_warmup_steps=2,
    base_fc=0.04,
    points=(0.01, 0.02, 0.03, 0.04),
    early=0.01,
    late=0.02,
    mid=0.01,
    extra_fc=0.004,
    total_fc=0.03,
    total_points=(0.01, 0.02),
    eval_points=2,
    eval_tokens=512,
    heldout_tokens=2048,
    device="cpu",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import pydoc_data.topics

    folder = tmp_path_factory.mktemp("corpus")
    for i, (_, text) in enumerate(sorted(pydoc_data.topics.topics.items())):
        (folder / f"{i:03d}.txt").write_text(text)
    return [str(folder / "*.txt")]


@pytest.fixture(scope="module")
def trained_base(tmp_path_factory, corpus):
    """A store root whose base run is trained to ``SCALE.late`` (copy it: runs are folders)."""
    root = tmp_path_factory.mktemp("based")
    RunStore(root, SCALE, texts=corpus, progress=False).base(SCALE.late)
    return root


def _complete(make_store, call):
    """Call ``call(store)`` on fresh stores until no run stops early; returns (result, stops)."""
    stops = 0
    while True:
        try:
            return call(make_store()), stops
        except RunIncomplete:
            stops += 1
            assert stops < 100


def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_statistics_on_known_values():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)
    assert pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # monotonic but not linear: ranks agree perfectly, values do not
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(0.984374, abs=1e-6)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)


def test_scale_keys_and_markdown_cells():
    from moegrow.experiments.repro.experiments import Table
    from moegrow.experiments.repro.report import markdown_table

    deeper = replace(SCALE, layers=4)
    # a base of other depth is another set of runs, in its own folder
    assert "layers" not in SCALE.base_key()
    assert deeper.base_key()["layers"] == 4 and deeper.continued_key()["layers"] == 4
    # what only continued runs use leaves the base runs' keys alone
    other = replace(SCALE, grown_warmup_steps=7, extra_fc=1.0, cooldown_fraction=0.3)
    assert other.base_key() == SCALE.base_key()
    assert other.continued_key() != SCALE.continued_key()
    assert (SCALE.label, deeper.label) == ("test", "test-4layers")
    table = markdown_table(Table("t", ["mean |cos|", "b"], [[1, "x|y"]]))
    assert table.splitlines()[2] == "| mean \\|cos\\| | b |"
    assert table.splitlines()[4] == "| 1 | x\\|y |"


def test_growth_keys_hold_what_changes_the_bytes():
    from moegrow.experiments.repro.runs import growth_key

    depth = GrowthSpec(depth=2)
    # options that cannot change a depth-only growth stay out of its key (runs cached before
    # they existed stay valid), ...
    assert growth_key(depth) == growth_key(replace(depth, sampler="torch"))
    assert "sampler" not in growth_key(depth) and "balance_bias_noise" not in growth_key(depth)
    # ... but a noised width growth draws with the sampler, and the bias noise changes bytes
    width = GrowthSpec(width=2, noise=0.01)
    assert growth_key(width) != growth_key(replace(width, sampler="torch"))
    assert growth_key(width) != growth_key(replace(width, balance_bias_noise=True))
    assert growth_key(replace(width, noise=0.0)) == growth_key(
        replace(width, noise=0.0, sampler="torch")
    )


def test_paired_intervals_on_known_values():
    # differences 1, 2, 3: mean 2, sd 1, n 3 -> half-width t(0.975, 2) / sqrt(3) = 2.48414
    mean, lo, hi = paired_interval([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert mean == pytest.approx(2.0)
    assert (lo, hi) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-4)
    # pairing removes what both sides share: a large common offset per seed does not widen it
    a, b = [5.0, 1.0, 9.0, 3.0], [4.9, 0.9, 8.9, 2.9]
    assert paired_interval(a, b) == pytest.approx((0.1, 0.1, 0.1))
    # two pairs, differences 0 and 2: mean 1, sd sqrt 2 -> 12.7062 * sqrt(2) / sqrt(2)
    assert paired_interval([0.0, 2.0], [0.0, 0.0])[1:] == pytest.approx((1 - 12.7062, 1 + 12.7062))
    assert fmt_interval([11.0, 12.0, 13.0], [10.0] * 3, 2) == "+2.00 [-0.48, +4.48]"
    assert fmt_interval([1.5], [1.0]) == "+0.5000 (1 pair: no interval)"
    assert (t975(1), t975(10), t975(30)) == (12.7062, 2.2281, 2.0423)
    assert t975(60) == pytest.approx(2.0003, abs=1e-3)
    assert t975(120) == pytest.approx(1.9799, abs=1e-3)
    with pytest.raises(ValueError):
        paired_interval([1.0], [1.0, 2.0])


def test_spike_and_recovery_on_synthetic_losses():
    # level 2.0; a spike to 3.0 decaying by 0.1 a step
    losses = [3.0 - 0.1 * i for i in range(30)]
    # running mean of 5 at step 5 = mean(3.0..2.6) = 2.8: the highest in the first 20 steps
    assert loss_spike(losses, 2.0) == pytest.approx(0.8)
    # the running mean at step s is the loss of step s - 2: 2.0 first at step 13
    assert recovery_steps(losses, 2.0) == 13
    assert recovery_steps(losses, 0.0) is None


def test_moment_cosine_maps_layers_and_compares_original_rows(tmp_path):
    import torch
    from safetensors.torch import save_file

    from moegrow.experiments.repro.analysis import moment_cosine
    from moegrow.training.run_dir import OPTIMIZER_FILE, SEP

    def write(name, moments):
        (tmp_path / name).mkdir()
        tensors = {f"{k}{SEP}exp_avg": v.clone() for k, v in moments.items()}
        save_file(
            {**tensors, f"head{SEP}step": torch.tensor(1.0)}, tmp_path / name / OPTIMIZER_FILE
        )
        return tmp_path / name

    x, y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    base = write("base", {"layers.0.w": x, "layers.1.w": y, "experts": torch.stack([x, y])})
    # depth-grown: layers 0, 1 copy base layer 0; 2, 3 copy base layer 1
    deep = write("deep", {"layers.0.w": x, "layers.1.w": -x, "layers.2.w": y, "layers.3.w": x})
    got = moment_cosine(deep, base, lambda j: j // 2)
    assert got["tensors"] == 4
    assert got["mean_abs_per_tensor"] == pytest.approx(0.75)  # |1|, |-1|, |1|, |0|
    assert got["global"] == pytest.approx(1 / 4)  # (1 - 1 + 1 + 0) / sqrt(4 * 4)
    # width-grown: the copies appended on axis 0 are left out, the originals compared
    wide = write("wide", {"layers.0.w": y, "experts": torch.stack([x, y, -x, -y])})
    got = moment_cosine(base, wide)
    assert got["tensors"] == 2 and got["max_abs_per_tensor"] == pytest.approx(1.0)
    assert got["mean_abs_per_tensor"] == pytest.approx(0.5)  # layers.0: 0; experts: 1
    with pytest.raises(ValueError, match="no shared parameters"):
        moment_cosine(write("other", {"embed": x}), base)


def test_equal_extra_flops_bookkeeping(tmp_path, corpus, trained_base):
    shutil.copytree(trained_base, tmp_path / "a")
    store = RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False)
    base = store.base(SCALE.late)
    assert base.sunk_flops == pytest.approx(
        sum(e["flops"] for e in ledger_of(base.path)), rel=1e-12
    )
    assert base.sunk_flops / store.chinchilla_flops == pytest.approx(SCALE.late, rel=0.02)
    # a base folder holding only some checkpoints (as kept in docs/results for a continuation
    # elsewhere) serves the points it has, and names the fix for the ones it lacks
    early = store.base(SCALE.early).path
    shutil.rmtree(early)
    assert store.base(SCALE.late).path == base.path
    with pytest.raises(MoegrowError, match="delete"):
        store.base(SCALE.early)
    depth = store.grown(base, GrowthSpec(depth=2), SCALE.extra_fc, 0, "depth")
    width = store.grown(base, GrowthSpec(width=2), SCALE.extra_fc, 0, "width")
    # every run keeps the branch checkpoint of a cooldown at its own budget; at a budget it
    # was not trained for, the annealed reading is missing, with a note
    from moegrow.experiments.repro.readings import annealed_run

    notes: list[str] = []
    assert annealed_run(store, depth, SCALE.extra_fc, "depth", notes) is not None
    assert annealed_run(store, depth, 0.5 * SCALE.extra_fc, "depth", notes) is None
    assert len(notes) == 1 and "no checkpoint at step" in notes[0]
    budget = SCALE.extra_fc * store.chinchilla_flops
    fpts = set()
    for run in (depth, width):
        fpt = run.extra_flops / (run.steps * run.tokens_per_step)
        fpts.add(round(fpt))
        assert run.budget_flops == pytest.approx(budget)
        # trained to the budget, overshooting by less than one step
        assert budget <= run.extra_flops < budget + fpt * run.tokens_per_step
        # the comparison value is the curve at exactly the budget, and the ledger agrees
        assert run.loss_at_budget == pytest.approx(loss_at(run.curve, budget))
        assert ledger_of(run.final)[-1]["flops"] == pytest.approx(run.extra_flops)
        assert run.sunk_flops == base.sunk_flops
        assert run.curve[0] == (0.0, run.start_val_loss)
    assert len(fpts) == 2  # different sizes, hence different step counts for the same FLOPs
    assert depth.steps != width.steps


def test_interrupted_runs_resume_to_the_uninterrupted_result(tmp_path, corpus, monkeypatch):
    spec = GrowthSpec(width=2, noise=0.01)
    keep = (0.5 * SCALE.extra_fc,)  # the run stops to keep a branch checkpoint, resumed too

    def call(store):
        return store.grown(store.base(0.01), spec, SCALE.extra_fc, 1, "resume", cooldowns=keep)

    interrupted, stops = _complete(
        lambda: RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False, stop_after=7), call
    )
    assert stops >= 3  # the base and the grown run were each stopped and resumed
    plain = call(RunStore(tmp_path / "b", SCALE, texts=corpus, progress=False))
    assert interrupted.train_losses == plain.train_losses
    assert interrupted.curve == plain.curve
    assert interrupted.loss_at_budget == plain.loss_at_budget

    # a completed run is never trained again
    import moegrow.training.train

    def refuse(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(moegrow.training.train, "train", refuse)
    again = call(RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False))
    assert again.to_json() == interrupted.to_json()
    assert json.loads((again.folder / RESULT_FILE).read_text())["steps"] == again.steps


def test_every_experiment_writes_csv_plots_and_markdown(tmp_path, corpus, monkeypatch):
    """The paper's seven, the decisive finding-1 experiment and a cause test (its shared path)."""
    from moegrow.experiments.repro.runner import run_repro

    assert tuple(EXPERIMENTS) == NAMES and tuple(CAMPAIGN) == CAMPAIGN_NAMES
    monkeypatch.setitem(SCALES, "test", SCALE)
    outcomes = run_repro(
        ["all", "depth-horizon", "depth-zero-init"],
        "test",
        out=tmp_path,
        seeds=1,
        texts=corpus,
        device="cpu",
        progress=False,
    )
    assert [o.name for o in outcomes] == [*NAMES, "depth-horizon", "depth-zero-init"]
    horizon, zero = outcomes[-2:]
    root = tmp_path / "test"
    for outcome in outcomes:
        folder = root / outcome.name
        rows = _csv(folder / f"{outcome.name}.csv")
        assert len(rows) == len(outcome.rows) > 0
        md = (folder / f"{outcome.name}.md").read_text()
        assert f"moegrow repro {outcome.name} --scale test" in md
        assert sum(line.startswith("|---") for line in md.splitlines()) == len(outcome.tables) > 0
        for plot in outcome.plots:
            assert (folder / plot.filename).stat().st_size > 1000
    results = (root / "results.md").read_text()
    assert all(f"## {name}:" in results for name in NAMES)
    # experiments share runs: the base was trained once, every grown run has a result
    assert len(list((root / "runs").glob("base-*"))) == 2  # pre-norm and post-norm
    noise = {r["variant"]: r for r in _csv(root / "noise" / "noise.csv")}
    # exact copies get identical gradients and cannot specialise (PAPER.md); noise breaks that
    assert float(noise["alpha=0"]["copy_weight_cosine"]) > 0.99999
    assert float(noise["alpha=0"]["co_selection"]) == 1.0
    assert float(noise["alpha=0.1"]["co_selection"]) < 1.0
    assert float(noise["random new experts"]["copy_weight_cosine"]) < 0.5
    order = _csv(root / "order" / "order.csv")[0]
    # the two paths share the base's weights, which dominate the raw cosine; their updates
    # from the base grown both ways exactly agree less
    updates, weights = float(order["update_cosine_global"]), float(order["weight_cosine_global"])
    assert -1 <= updates < weights <= 1
    for axis in ("depth", "width"):
        assert -1 <= float(order[f"adam_m_cosine_base_vs_{axis}_global"]) <= 1
        assert 0 <= float(order[f"adam_m_cosine_base_vs_{axis}_mean_abs_per_tensor"]) <= 1
    summary = next(o for o in outcomes if o.name == "order").tables[1].rows
    drift = "calibration: Adam m cosine of the base at 0.01 vs at 0.02 x F_c"
    assert sum(row[0].startswith(drift) for row in summary) == 1
    # sunk-cost and total-budget are also read annealed (a cooldown branch of every run), and
    # every continued run's final model has held-out scores
    by_name = {o.name: o for o in outcomes}
    for name in ("sunk-cost", "total-budget"):
        rows = _csv(root / name / f"{name}.csv")
        assert all(r["val_loss_at_budget_annealed"] and r["heldout_loss"] for r in rows)
        assert all(r["annealed_heldout_accuracy"] for r in rows)
        assert not by_name[name].notes  # no run lacked its branch
    gap_tables = {
        "routing": 6,  # three comparisons, at the budget and at half of it
        "post-norm": 2,  # alpha 0 vs 0.01 on each base
        "total-budget": 2 * (len(SCALE.total_points)),  # each point vs scratch, two readings
    }
    for name, n in gap_tables.items():
        table = next(t for t in by_name[name].tables if GAP_COLUMN in t.columns)
        assert len(table.rows) == n
    assert all(r["heldout_loss"] for r in _csv(root / "routing" / "routing.csv"))
    for name in ("depth-method", "noise"):  # held-out scores beside the loss, paired gaps too
        summary, gaps = by_name[name].tables[:2]
        assert all(row[-1] != "-" and row[-2] != "-" for row in summary.rows)
        assert all(row[-1].endswith("(1 pair: no interval)") for row in gaps.rows)
        assert any("per source-document group" in t.title for t in by_name[name].tables)
    assert any("per source-document group" in t.title for t in by_name["routing"].tables)
    gaps = horizon.tables[0]
    assert len(gaps.rows) == 6  # three budgets, constant LR and annealed
    for row in gaps.rows:
        assert row[5].endswith("(1 pair: no interval)") and row[6].endswith("/1")
    rows = [r for r in horizon.rows if r.get("reading") == "annealed"]
    assert {r["budget_fc"] for r in rows} == {
        0.5 * SCALE.extra_fc,
        SCALE.extra_fc,
        2 * SCALE.extra_fc,
    }
    # at the budget the cause tests share, the reference rows are the decisive runs' values
    ref = [r for r in zero.rows if r["setting"].startswith("reference")]
    same = [r for r in rows if r["budget_fc"] == SCALE.extra_fc]
    assert sorted(r["gap_stack_minus_interpose"] for r in ref if r["reading"] == "annealed") == (
        sorted(r["gap_stack_minus_interpose"] for r in same)
    )
    symmetry = {r["method"]: r for r in horizon.rows if r.get("setting") == "symmetry"}
    # copies start identical and train briefly here: their weights stay close
    assert all(0.5 < symmetry[m]["weight_cosine"] <= 1 for m in ("stack", "interpose"))
    assert symmetry["stack"]["pairs"] == symmetry["interpose"]["pairs"] == 2


def test_heldout_scores_are_stored_and_old_results_read_as_missing(tmp_path, corpus, trained_base):
    from moegrow.experiments.repro.experiments import DEFAULT_SEEDS
    from moegrow.experiments.repro.readings import group_rows, heldout_cells, heldout_row
    from moegrow.experiments.repro.runs import HELDOUT_FILE, RunResult
    from moegrow.training.evaluate import evaluate

    assert [DEFAULT_SEEDS.get(n, 1) for n in NAMES] == [3, 3, 3, 1, 1, 3, 3]
    shutil.copytree(trained_base, tmp_path / "a")
    store = RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False)
    run = store.grown(store.base(SCALE.late), GrowthSpec(depth=2), SCALE.extra_fc, 0, "depth")
    h = run.heldout
    assert h is not None
    # the final model's scores, as ``moegrow eval`` gives them on as many tokens
    again = evaluate(
        run.final,
        store.data,
        seq_len=SCALE.seq_len,
        tokens=SCALE.heldout_tokens,
        batch=SCALE.batch_size,
        device="cpu",
        spread=True,
    )
    # the whole budget, or every whole window of the validation split where it is shorter:
    # which documents are held out depends on their names, here paths under pytest's temporary
    # folder, so the split's length changes from run to run
    split = json.loads((store.data / "manifest.json").read_text())["splits"]["val"]["tokens"]
    windows = min((split - 1) // SCALE.seq_len, SCALE.heldout_tokens // SCALE.seq_len)
    assert h["tokens"] == again["val_tokens"] == windows * SCALE.seq_len > SCALE.eval_tokens
    assert (h["loss"], h["accuracy"]) == (again["val_loss"], again["val_accuracy"])
    assert sum(g["tokens"] for g in h["groups"].values()) == h["tokens"]
    assert json.loads((run.folder / HELDOUT_FILE).read_text()) == h
    assert RunResult.from_json(json.loads((run.folder / RESULT_FILE).read_text())) == run
    row = heldout_row(run)
    assert row["heldout_loss"] == h["loss"] and len(row) == 3 + 2 * len(h["groups"])
    assert heldout_cells([run])[1] == f"{h['accuracy']:.4f}"
    # a result cached before held-out scores existed has none; nothing is made up for it
    old = run.to_json()
    del old["heldout"]
    cached = RunResult.from_json(old)
    assert cached.heldout is None and heldout_row(cached) == {}
    assert heldout_cells([run, cached]) == ["-", "-"]
    columns, rows = group_rows({"new": [run], "old": [cached]})
    assert [r[0] for r in rows] == ["new"] and len(columns) == 1 + len(h["groups"])
    assert group_rows({"old": [cached]}) is None


def test_growth_points_past_the_base_come_from_a_longer_base_run(tmp_path, corpus, trained_base):
    from moegrow.training.run_dir import RunDir

    scale = replace(SCALE, long_base_fc=0.07, long_points=(0.05,))
    assert scale.base_run(SCALE.late) is scale and scale.base_key() == SCALE.base_key()
    longer = scale.base_run(0.05)
    assert longer.base_key() == {**SCALE.base_key(), "base_fc": 0.07}
    with pytest.raises(MoegrowError, match=r"growth point 0.045 x F_c is not one of"):
        scale.base_run(0.045)
    shutil.copytree(trained_base, tmp_path / "a")
    store = RunStore(tmp_path / "a", scale, texts=corpus, progress=False)
    before = sorted(p.name for p in (tmp_path / "a" / "runs").glob("base-*"))
    first = RunStore(trained_base, SCALE, texts=corpus, progress=False).base(SCALE.late)
    assert store.base(SCALE.late).key == first.key
    source = store.base(0.05)
    after = sorted(p.name for p in (tmp_path / "a" / "runs").glob("base-*"))
    assert len(after) == len(before) + 1  # its own run; the first base is left alone
    assert source.key["base"]["scale"]["base_fc"] == 0.07 and source.key["point"] == 0.05
    fc = store.chinchilla_flops
    fpt = store._report(source.path)["flops_per_token"]
    assert source.step == store.steps_for(0.05 * fc, fpt)
    # trained only as far as the point, still at the peak LR (the WSD decay starts at 0.056)
    metrics = RunDir(source.path.parent).read_metrics()
    assert metrics[-1]["step"] == source.step
    assert metrics[-1]["lr"] == pytest.approx(SCALE.lr)


def test_group_table_has_one_column_per_group_and_means_over_seeds():
    from types import SimpleNamespace

    from moegrow.experiments.repro.readings import group_rows

    def run(**losses):
        groups = {g: {"loss": v, "tokens": 10} for g, v in losses.items()}
        return SimpleNamespace(heldout={"groups": groups})

    columns, rows = group_rows(
        {"a": [run(kjv=1.0, milton=2.0), run(kjv=3.0, milton=4.0), run(kjv=5.0, poe=9.0)]}
    )
    assert columns == ["arm", "kjv (10 tokens)", "milton (10 tokens)", "poe"]
    assert rows == [["a", "3.0000", "3.0000", "9.0000"]]


def test_repro_rejects_bad_options(run_cli):
    code, _, err = run_cli("repro", "noise", "--seeds", "0")
    assert code == 2 and "--seeds must be >= 1" in err
    code, _, err = run_cli("repro", "no-such-experiment")
    assert code == 2 and "invalid choice: 'no-such-experiment'" in err
    # the small scale is plan-only on the built-in corpus: it says what it would need
    code, _, err = run_cli("repro", "noise", "--scale", "small")
    assert code == 2 and "plan-only" in err and "600 M tokens" in err


def test_cooldown_branch_schedule_and_exact_resume(tmp_path, corpus, trained_base):
    """A cooldown branch keeps the run's weights, optimizer state and batches, decays the LR
    linearly to min_ratio x peak over the last fraction of its budget, and, interrupted and
    resumed, gives the uninterrupted branch bit for bit."""
    from moegrow.experiments.repro.branches import cooldown_steps
    from moegrow.training.run_dir import RunDir

    horizon, budget = SCALE.extra_fc, 0.5 * SCALE.extra_fc
    spec = GrowthSpec(depth=2)

    def parent(store):
        base = store.base(SCALE.late)
        return store.grown(base, spec, horizon, 0, "parent", cooldowns=(budget, horizon))

    shutil.copytree(trained_base, tmp_path / "a")
    run = parent(RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False))
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same parent, for the interrupted branch
    plain = RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False).cooldown(run, budget, "c")
    fpt = run.extra_flops / (run.steps * run.tokens_per_step)
    start, end = cooldown_steps(RunStore(tmp_path / "a", SCALE, texts=corpus), budget, fpt)
    assert end - start == max(round(end * SCALE.cooldown_fraction), 1) and 0 < start < end
    assert plain.steps == end < run.steps
    metrics = RunDir(plain.folder / "run").read_metrics()
    logged = RunDir(run.folder / "run").read_metrics()
    lrs = {m["step"]: m["lr"] for m in metrics}
    # constant (the parent's) up to the branch, then linear to 0.1 x peak at the last step
    assert all(lrs[k] == logged[k - 1]["lr"] == SCALE.lr for k in range(3, start + 1))
    for k in range(start + 1, end + 1):
        progress = (k - start) / (end - start)
        assert lrs[k] == pytest.approx(SCALE.lr * (1 - (1 - SCALE.cooldown_min_ratio) * progress))
    assert lrs[end] == pytest.approx(SCALE.cooldown_min_ratio * SCALE.lr)
    # the branch continues the parent's model and batches: the first decayed step's loss (taken
    # before its update) is the parent's; the parent's own steps are logged up to the branch
    assert metrics[start]["loss"] == logged[start]["loss"]
    assert metrics[start + 1]["loss"] != logged[start + 1]["loss"]
    assert plain.train_losses[:start] == run.train_losses[:start]
    assert plain.loss_at_budget == plain.curve[-1][1] == metrics[-1]["val_loss"]

    interrupted, stops = _complete(
        lambda: RunStore(tmp_path / "b", SCALE, texts=corpus, progress=False, stop_after=1),
        lambda store: store.cooldown(parent(store), budget, "c"),
    )
    assert stops == end - start - 1
    assert interrupted.train_losses == plain.train_losses
    assert interrupted.loss_at_budget == plain.loss_at_budget
    # a budget the run kept no branch for is refused, naming the fix
    with pytest.raises(MoegrowError, match="no checkpoint at step"):
        RunStore(tmp_path / "a", SCALE, texts=corpus, progress=False).cooldown(
            run, 0.5 * budget, "unkept"
        )


def test_upcycle_arms_share_the_extra_flops(tmp_path, corpus, trained_base, monkeypatch):
    """``upcycle``: a dense base, then upcycled / continued / scratch-MoE arms with one extra
    budget each (the bookkeeping and the tables, not the science)."""
    import moegrow.training.train
    from moegrow.experiments.repro import EXTRA_NAMES
    from moegrow.experiments.repro.runner import REGISTRY
    from moegrow.experiments.repro.upcycling import ARMS, arms, horizon, upcycle

    assert set(EXTRA_NAMES) <= set(REGISTRY)
    # every training call measures the matmul peak for its MFU (0.5 s); 16 calls here
    monkeypatch.setattr(moegrow.training.train, "measured_matmul_peak", lambda *a: 1e12)
    scale = replace(SCALE, upcycle_point=0.01, extra_fc=0.002)
    shutil.copytree(trained_base, tmp_path / "a")  # its data and F_c
    store = RunStore(tmp_path / "a", scale, texts=corpus, progress=False)
    # dense bases are runs of their own; the MoE bases' keys are what they were
    assert "model" not in store._base_key("pre") and store._base_key("pre", dense=True)["model"]
    outcome = upcycle(store, [0])  # one seed: pairing and intervals are tested above
    dense = store.base(0.01, dense=True)
    assert json.loads((dense.path / "config.json").read_text())["model_type"] == "qwen3"
    h, budgets = horizon(store)
    budget = h * store.chinchilla_flops
    runs = arms(store, 0)  # cached: the same runs
    reports = {a: store._report(r.folder / "init") for a, r in runs.items()}
    for arm, run in runs.items():
        step = reports[arm]["flops_per_token"] * run.tokens_per_step
        assert run.budget_flops == pytest.approx(budget)
        assert budget <= run.extra_flops < budget + step
        assert ledger_of(run.final)[-1]["flops"] == pytest.approx(run.extra_flops)
    up, cont, scratch = (runs[a] for a in ARMS)
    assert up.sunk_flops == cont.sunk_flops == dense.sunk_flops and scratch.sunk_flops == 0
    assert "upcycle" in [e["stage"] for e in ledger_of(up.folder / "init")]
    # the scratch MoE has the upcycled shape; the dense model, fewer FLOPs per token
    moe, twin = reports["upcycled"], reports["MoE from scratch"]
    assert (moe["total_params"], moe["active_params"]) == (
        twin["total_params"],
        twin["active_params"],
    )
    assert reports["dense continued"]["flops_per_token"] < moe["flops_per_token"]
    assert cont.steps > up.steps == scratch.steps
    # continuing starts from the base itself; the upcycled MoE nearly computes it (noise)
    assert cont.start_val_loss == pytest.approx(dense.val_loss, abs=1e-4)
    assert abs(up.start_val_loss - dense.val_loss) < 0.02
    assert up.key["train"] == {"aux_loss_coef": 1e-3}
    summary, gaps = outcome.tables
    assert [row[0] for row in summary.rows] == list(ARMS)
    readings = len(budgets["constant"]) + len(budgets["annealed"])
    assert all(len(row) == len(summary.columns) == 5 + readings for row in summary.rows)
    assert len(gaps.rows) == 2 * readings  # the two other arms
    assert all(b in budgets["constant"] for b in budgets["annealed"])
    assert all(row[3].endswith("/1") and "no interval" in row[1] for row in gaps.rows)
    assert len(outcome.rows) == len(ARMS) * readings
    # a repeated invocation trains nothing
    monkeypatch.setattr(moegrow.training.train, "train", lambda *a, **k: pytest.fail("trained"))
    again = upcycle(RunStore(tmp_path / "a", scale, texts=corpus, progress=False), [0])
    assert again.rows == outcome.rows
