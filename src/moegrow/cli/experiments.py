"""Subcommands that run experiments: ``demo`` and ``repro``."""

from __future__ import annotations

import argparse

from moegrow.cli.options import add_options, from_args
from moegrow.extras import require


def cmd_demo(a: argparse.Namespace) -> int:
    require("matplotlib", "plot", "moegrow demo (it draws its loss curves)")
    from moegrow.experiments.demo import DemoConfig, run_demo

    run_demo(a.out, from_args(DemoConfig, a, texts=a.text), overwrite=a.overwrite)
    return 0


def cmd_repro(a: argparse.Namespace) -> int:
    require("matplotlib", "plot", "moegrow repro (it draws each experiment's plots)")
    from moegrow.experiments.repro.runner import run_repro

    run_repro(
        a.experiment,
        a.scale,
        out=a.out,
        seeds=a.seeds,
        texts=a.text,
        device=a.device,
        layers=a.layers,
    )
    return 0


def add_parsers(sub) -> None:
    from moegrow.experiments.demo import DemoConfig
    from moegrow.experiments.repro import ALL, CAMPAIGN_GROUP, CAMPAIGN_NAMES, EXTRA_NAMES, NAMES

    p = sub.add_parser(
        "demo", help="pretrain a tiny MoE, grow it, continue training, compare with scratch"
    )
    p.add_argument("--out", default="moegrow-demo", help="output folder (default moegrow-demo)")
    p.add_argument(
        "--text", action="append", metavar="PATH/GLOB", help="corpus (default: built-in)"
    )
    add_options(p, DemoConfig, skip=("texts",))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "repro",
        help="reproduce the paper's findings at small scale (resumable, cached runs)",
        description="Experiments: " + ", ".join(NAMES) + f" ({ALL}: these seven); the "
        "finding-1 campaign: " + ", ".join(CAMPAIGN_NAMES) + f" ({CAMPAIGN_GROUP}: all of them, "
        "decisive comparison first); beyond the paper: " + ", ".join(EXTRA_NAMES) + " (a dense "
        "checkpoint upcycled vs continued vs an MoE from scratch). Several run in the order given.",
    )
    p.add_argument(
        "experiment",
        nargs="+",
        choices=[*NAMES, *CAMPAIGN_NAMES, *EXTRA_NAMES, ALL, CAMPAIGN_GROUP],
    )
    p.add_argument("--scale", choices=["micro", "deep", "small"], default="micro")
    p.add_argument(
        "--seeds",
        type=int,
        help="seeds per setting (default: 3 for depth-method, noise, the depth campaign and "
        "upcycle, else 1)",
    )
    p.add_argument("--out", default="moegrow-repro", help="output folder (default moegrow-repro)")
    p.add_argument(
        "--text", action="append", metavar="PATH/GLOB", help="corpus (default: built-in)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--layers",
        type=int,
        help="base model layers instead of the preset's (a deeper base for depth growth)",
    )
    p.set_defaults(func=cmd_repro)
