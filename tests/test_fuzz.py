"""Fuzz: generated malformed checkpoints, options, corpora, data folders and run folders, fed to
grow, plan, inspect, verify, data prepare, train and train --resume in-process.

Every case must be refused: exit status 2, one error line (argparse's usage line allowed for
its own type errors), no traceback, under 30 s, under 1 GB of peak RSS, and nothing written
(no output folder, no partial folder, no lock file left). The seed is fixed; ``MOEGROW_FUZZ_SEED``
and ``MOEGROW_FUZZ_ROUNDS`` widen the search (``make fuzz``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
import traceback
from pathlib import Path

import fuzz_cases as fc
import pytest

SEED = int(os.environ.get("MOEGROW_FUZZ_SEED", "0"))
ROUNDS = int(os.environ.get("MOEGROW_FUZZ_ROUNDS", "1"))
LOG = os.environ.get("MOEGROW_FUZZ_LOG")  # a file to append every case's error line to
TIME_LIMIT_S = 30
RSS_LIMIT = 1 << 30
FAMILIES = ("mixtral", "qwen2_moe", "deepseek_v3")
LEFTOVER_MARKS = (".moegrow-partial-", ".moegrow-lock", ".moegrow-old-")
TALLY: dict[str, int] = {}


class _Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Runner:
    """Runs cases through ``moegrow.cli.main`` and collects every way one can fail."""

    def __init__(self, capsys, group: str):
        self.capsys = capsys
        self.group = group
        self.failures: list[str] = []
        self.count = 0
        self.slowest = 0.0
        self.peak = 0

    def run(self, label: str, argv: list, *, case_dir: Path, untouched: list[Path] = ()) -> None:
        from moegrow.cli import main

        argv = [str(a) for a in argv]
        before = {p: _listing(p) for p in untouched}
        existed = {p for p in case_dir.iterdir()}
        self.capsys.readouterr()
        _reset_peak_rss()
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(TIME_LIMIT_S)
        start = time.perf_counter()
        problem = None
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code
        except _Hang:
            code, problem = None, f"hang (> {TIME_LIMIT_S} s)"
        except BaseException:
            code, problem = None, "traceback:\n" + traceback.format_exc(limit=-4)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - start
        err = self.capsys.readouterr().err
        self.count += 1
        lines = [line for line in err.strip().splitlines() if line.strip()]
        if problem is None and code != 2:
            problem = f"accepted (exit {code})"
        if problem is None:
            argparse_form = bool(lines) and lines[0].startswith("usage:")
            if "Traceback" in err:
                problem = "traceback on stderr"
            elif not lines or ("error:" not in lines[-1]) or not lines[-1].startswith("moegrow"):
                problem = f"no error line: {err!r}"
            elif not argparse_form and len(lines) != 1:
                problem = f"{len(lines)} lines: {err!r}"
        peak = _peak_rss()
        self.slowest, self.peak = max(self.slowest, seconds), max(self.peak, peak)
        if problem is None and peak > RSS_LIMIT:
            problem = f"peak RSS {peak / 2**20:.0f} MiB"
        if problem is None and seconds > TIME_LIMIT_S:
            problem = f"took {seconds:.1f} s"
        if problem is None:
            left = [
                str(p)
                for p in case_dir.rglob("*")
                if any(m in p.name for m in LEFTOVER_MARKS)
                or (p.name in ("out", "run-new") and p not in existed)
            ]
            if left:
                problem = f"left {left}"
        if problem is None:
            changed = [str(p) for p in untouched if _listing(p) != before[p]]
            if changed:
                problem = f"changed {changed}"
        if LOG:
            with open(LOG, "a") as f:
                f.write(f"[{self.group}] {label} -> {code}: {lines[-1] if lines else ''}\n")
        if problem is not None:
            self.failures.append(f"[{self.group}] {label}: {' '.join(argv)}\n    {problem}")

    def report(self) -> None:
        TALLY[self.group] = self.count
        print(
            f"fuzz {self.group}: {self.count} cases, {len(self.failures)} failures, slowest "
            f"{self.slowest:.2f} s, peak RSS {self.peak / 2**20:.0f} MiB"
        )
        assert not self.failures, f"{len(self.failures)} of {self.count} cases failed:\n" + (
            "\n".join(self.failures[:40])
        )


def _listing(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_size if p.is_file() else -1
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


@pytest.fixture(scope="module")
def sources(tiny, tmp_path_factory):
    """Good tiny checkpoints of three families and a good growth of the first (for verify)."""
    from moegrow.growth.grow import grow
    from moegrow.growth.spec import GrowthSpec

    paths = {f: tiny(f, num_layers=2) for f in FAMILIES}
    grown = tmp_path_factory.mktemp("fuzz") / "grown"
    grow(paths["mixtral"], grown, GrowthSpec(depth=2), progress=False)
    return paths, grown


def test_fuzz_checkpoints(sources, tmp_path, capsys):
    """Damaged config.json, index, headers, shards and links x grow / plan / inspect / verify."""
    paths, grown = sources
    runner = Runner(capsys, "checkpoints")
    rng = random.Random(SEED)
    n = 0
    for _ in range(ROUNDS):
        for family, good in paths.items():
            cfg = json.loads((good / "config.json").read_text())
            for label, mutate in fc.checkpoint_mutations(family, cfg, rng):
                case = tmp_path / f"c{n}"
                n += 1
                case.mkdir()
                src = fc.copy_tree(good, case / "src")
                mutate(src)
                command = rng.choice(["grow", "grow", "plan", "inspect", "verify"])
                if command == "plan" and label == "folder-no-weights":
                    command = "grow"  # plan reads a config-only folder (test_plan_config_only)
                if command == "grow":
                    growth = rng.choice([["--depth", "2"], ["--width", "2"]])
                    argv = ["grow", src, case / "out", *growth, "--quiet"]
                elif command == "plan":
                    argv = ["plan", src, "--depth", "2"]
                elif command == "inspect":
                    argv = ["inspect", src]
                else:
                    argv = ["verify", src, grown] if family == "mixtral" else ["verify", grown, src]
                runner.run(f"{family} {label}", argv, case_dir=case)
                shutil.rmtree(case, ignore_errors=True)
            for label, raw in fc.CARD_MUTATIONS.items():
                for command in ("grow", "flops"):
                    case = tmp_path / f"c{n}"
                    n += 1
                    case.mkdir()
                    src = fc.copy_tree(good, case / "src")
                    (src / fc.CARD).write_bytes(raw)
                    argv = [command, src] + (
                        [case / "out", "--depth", "2", "--quiet"] if command == "grow" else []
                    )
                    runner.run(f"{family} {label}", argv, case_dir=case)
    runner.report()


def test_fuzz_growth_options(sources, tmp_path, capsys):
    """Malformed and absurd growth options x grow / plan."""
    paths, _ = sources
    runner = Runner(capsys, "options")
    for family, good in paths.items():
        for options in fc.GROWTH_OPTION_CASES:
            for command in ("grow", "plan"):
                case = tmp_path / f"{family}-{command}-{runner.count}"
                case.mkdir()
                argv = [command, good] + ([case / "out", "--quiet"] if command == "grow" else [])
                runner.run(f"{family} {options[:4]}", argv + options, case_dir=case)
        for options in fc.GROW_ONLY_OPTION_CASES:
            case = tmp_path / f"{family}-grow-{runner.count}"
            case.mkdir()
            argv = ["grow", good, case / "out", "--quiet", *options]
            runner.run(f"{family} {options}", argv, case_dir=case)
    for options in (["--batch", "0"], ["--seq-len", "0"], ["--seq-len", "1000000000"]):
        case = tmp_path / f"verify-{runner.count}"
        case.mkdir()
        argv = ["verify", paths["mixtral"], sources[1], *options]
        runner.run(f"verify {options}", argv, case_dir=case)
    runner.report()


def test_fuzz_data_prepare(tmp_path, capsys):
    """Corpora with FIFOs, devices, bad encodings and bad JSONL, and bad options."""
    runner = Runner(capsys, "data prepare")
    rng = random.Random(SEED)
    for round_ in range(ROUNDS):
        for label, build in fc.corpus_cases(rng):
            case = tmp_path / f"{round_}-{label}"
            case.mkdir()
            runner.run(label, build(case), case_dir=case)
    runner.report()


@pytest.fixture(scope="module")
def run_folder(base_model, data_dir, tmp_path_factory):
    """A short run with two checkpoints (steps 2 and 4) to damage."""
    from moegrow.training.train import TrainOptions, train

    run = tmp_path_factory.mktemp("fuzz-run") / "run"
    opts = TrainOptions(
        tokens=4 * 4 * 16, batch_size=4, seq_len=16, save_every=2, eval_tokens=256, progress=False
    )
    train(base_model, data_dir, run, opts)
    return run


TRAIN_FAST = ["--batch-size", "4", "--seq-len", "16", "--eval-tokens", "256", "--quiet"]


def test_fuzz_train(base_model, data_dir, tmp_path, capsys):
    """Damaged data folders and malformed training options x train."""
    runner = Runner(capsys, "train")
    rng = random.Random(SEED)
    for round_ in range(ROUNDS):
        for label, mutate in fc.data_folder_mutations(rng):
            case = tmp_path / f"{round_}-{label}"
            case.mkdir()
            data = fc.copy_tree(data_dir, case / "data")
            mutate(data)
            argv = ["train", base_model, "--data", data, "--out", case / "run-new"]
            runner.run(label, argv + ["--tokens", "512", *TRAIN_FAST], case_dir=case)
    for options in fc.TRAIN_OPTION_CASES:
        case = tmp_path / f"opt-{runner.count}"
        case.mkdir()
        argv = ["train", base_model, "--data", data_dir, "--out", case / "run-new"]
        runner.run(str(options), argv + options + ["--quiet"], case_dir=case)
    for label, argv in {
        "model-not-checkpoint": ["train", data_dir, "--data", data_dir],
        "data-not-data": ["train", base_model, "--data", base_model],
        "no-out": ["train", base_model, "--data", data_dir],
    }.items():
        case = tmp_path / label
        case.mkdir()
        extra = [] if label == "no-out" else ["--out", case / "run-new"]
        runner.run(label, argv + extra + ["--tokens", "512", "--quiet"], case_dir=case)
    runner.report()


def _resume_mutations(rng: random.Random):
    import torch
    from safetensors.torch import load_file, save_file

    def newest(run):
        return sorted(run.glob("checkpoint-*"))[-1]

    def run_json(edit):
        def mutate(run):
            p = run / "run.json"
            meta = json.loads(p.read_text())
            edit(meta)
            p.write_text(json.dumps(meta))

        return mutate

    def state(edit):
        def mutate(run):
            p = newest(run) / "trainer_state.json"
            s = json.loads(p.read_text())
            edit(s)
            p.write_text(json.dumps(s))

        return mutate

    def ckpt_config(edit):
        return lambda run: fc.edit_config(newest(run), edit)

    def optimizer(edit):
        def mutate(run):
            p = newest(run) / "optimizer.safetensors"
            tensors = load_file(p)
            edit(tensors)
            save_file(tensors, p)

        return mutate

    def first_moment(tensors):
        return rng.choice(sorted(k for k in tensors if k.endswith("::exp_avg")))

    def reshape_moment(t):
        k = first_moment(t)
        t[k] = torch.zeros(t[k].numel() + 1)

    def bump_steps(t):
        for k in [k for k in t if k.endswith("::step")]:
            t[k] = t[k] + 1000

    def rename_newest(run):
        old = newest(run)
        old.rename(run / "checkpoint-0001000")

    def metrics_lines(fn):
        def mutate(run):
            p = run / "metrics.jsonl"
            lines = p.read_text().splitlines()
            p.write_text("\n".join(fn(lines)) + "\n")

        return mutate

    def truncate_weights(run):
        p = newest(run) / "model.safetensors"
        p.write_bytes(p.read_bytes()[: -rng.randint(1, 1000)])

    def rng_dtype(run):
        p = newest(run) / "rng.safetensors"
        save_file({"cpu": torch.zeros(3, dtype=torch.float32)}, p)

    return {
        "run-json-array": lambda run: (run / "run.json").write_text("[]"),
        "run-json-missing": lambda run: (run / "run.json").unlink(),
        "run-json-not-json": lambda run: (run / "run.json").write_text("{"),
        "run-json-model-number": run_json(lambda m: m.update(model=3)),
        "run-json-data-missing": run_json(lambda m: m.pop("data")),
        "run-json-options-list": run_json(lambda m: m.update(options=[])),
        "run-json-batch-string": run_json(lambda m: m["options"].update(batch_size="4")),
        "run-json-lr-negative": run_json(lambda m: m["options"].update(lr=-1.0)),
        "run-json-seq-len-zero": run_json(lambda m: m["options"].update(seq_len=0)),
        "run-json-tokens-and-flops": run_json(lambda m: m["options"].update(flops=1e9)),
        "run-json-data-elsewhere": run_json(lambda m: m.update(data="/nonexistent/data")),
        "state-step-1000": state(lambda s: s.update(step=1000)),
        "state-step-string": state(lambda s: s.update(step="4")),
        "state-step-negative": state(lambda s: s.update(step=-1)),
        "state-tokens-wrong": state(lambda s: s.update(tokens=1)),
        "state-groups-missing": state(lambda s: s.pop("param_groups")),
        "state-array": lambda run: (newest(run) / "trainer_state.json").write_text("[]"),
        "state-not-json": lambda run: (newest(run) / "trainer_state.json").write_text("{{"),
        "checkpoint-renamed": rename_newest,
        "checkpoint-layers-edited": ckpt_config(lambda c: c.update(num_hidden_layers=1)),
        "ckpt-hidden-edited": ckpt_config(lambda c: c.update(hidden_size=1 + c["hidden_size"])),
        "checkpoint-weights-truncated": truncate_weights,
        "optimizer-moment-shape": optimizer(reshape_moment),
        "optimizer-steps-disagree": optimizer(bump_steps),
        "optimizer-foreign-names": optimizer(lambda t: t.update(bogus=torch.zeros(1))),
        "rng-wrong-dtype": rng_dtype,
        "metrics-garbage-line": metrics_lines(lambda ls: [ls[0], "garbage", *ls[1:]]),
        "metrics-fewer-steps": metrics_lines(lambda ls: ls[:2]),
    }


def test_fuzz_resume(run_folder, tmp_path, capsys):
    """Edited run folders x train --resume: refused before any step, nothing changed."""
    runner = Runner(capsys, "resume")
    rng = random.Random(SEED)
    for label, mutate in _resume_mutations(rng).items():
        case = tmp_path / label
        case.mkdir()
        run = fc.copy_tree(run_folder, case / "run")
        mutate(run)
        argv = ["train", "--resume", run, "--quiet"]
        runner.run(label, argv, case_dir=case, untouched=[run])
    runner.report()


def test_fuzz_total():
    """The suite's acceptance count: at least 400 malformed inputs across the commands."""
    if len(TALLY) < 5:
        pytest.skip("runs after the other fuzz tests of this module")
    total = sum(TALLY.values())
    print(f"fuzz total: {total} cases {TALLY}")
    assert total >= 400, TALLY
