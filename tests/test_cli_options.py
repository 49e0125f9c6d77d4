"""Command-line options come from the option dataclasses: every field, its default, its help."""

from __future__ import annotations

import dataclasses

import pytest

from moegrow.cli import build_parser
from moegrow.cli.options import field_docs, from_args
from moegrow.experiments.demo import DemoConfig
from moegrow.growth.spec import GrowthSpec
from moegrow.training.options import TrainOptions


def _parse(*argv: str):
    return build_parser().parse_args([str(a) for a in argv])


def test_growth_defaults_are_the_dataclass_defaults():
    args = _parse("grow", "src", "out")
    assert from_args(GrowthSpec, args) == GrowthSpec()


def test_train_defaults_are_the_dataclass_defaults():
    args = _parse("train", "model", "--data", "d", "--out", "o")
    assert from_args(TrainOptions, args, progress=True) == TrainOptions()


def test_demo_defaults_are_the_dataclass_defaults():
    args = _parse("demo")
    assert from_args(DemoConfig, args, texts=None) == DemoConfig()
    args = _parse("demo", "--budgets", "0.25", "2", "--base-chinchilla", "2")
    cfg = from_args(DemoConfig, args, texts=None)
    assert cfg.budgets == (0.25, 2.0) and cfg.base_chinchilla == 2.0


@pytest.mark.parametrize("cls,command", [(GrowthSpec, "grow"), (TrainOptions, "train")])
def test_every_field_is_an_option_with_its_docstring_as_help(cls, command):
    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command").choices[
        command
    ]
    by_dest = {a.dest: a for a in sub._actions}
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name == "progress":  # --quiet
            continue
        assert f.name in by_dest, f"--{f.name.replace('_', '-')} missing from moegrow {command}"
        if f.name in docs:
            first_words = " ".join(docs[f.name].split()[:3]).replace("``", "")
            assert first_words in (by_dest[f.name].help or ""), f.name


def test_options_parse_into_the_spec():
    args = _parse(
        "grow", "s", "o", "--depth", "2", "--depth-method", "stack", "--zero-init",
        "--width", "3", "--top-k", "keep", "--noise", "0", "--expert-order", "interleave",
        "--seed", "7", "--layer-map", "0,1",
    )  # fmt: skip
    with pytest.raises(Exception, match="--layer-map and --depth"):
        from_args(GrowthSpec, args)
    args = _parse("grow", "s", "o", "--width", "3", "--top-k", "5", "--router", "random")
    spec = from_args(GrowthSpec, args)
    assert (spec.width, spec.top_k, spec.router) == (3, 5, "random")


def test_option_errors_are_one_line(run_cli):
    code, _, err = run_cli("grow", "s", "o", "--depth-method", "sideways")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("moegrow: error: argument --depth-method: invalid choice: 'sideways'")
    code, _, err = run_cli("train", "m", "--schedule", "linear")
    assert code == 2 and "invalid choice: 'linear'" in err
