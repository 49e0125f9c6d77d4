"""``moegrow families``: declared families, undeclared MoE model types, growth checks, drafts."""

from __future__ import annotations

import argparse

from moegrow.errors import MoegrowError
from moegrow.modeling.quiet import quiet_transformers

EXIT_NOT_EXACT = 1


@quiet_transformers()
def cmd_families(a: argparse.Namespace) -> int:
    from moegrow.conformance.check import check_all
    from moegrow.conformance.discovery import causal_lm_model_types, discover
    from moegrow.conformance.draft import draft
    from moegrow.conformance.table import markdown
    from moegrow.families import BY_MODEL_TYPE

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
        reports = check_all(a.model_types)
        print(render_check(reports))
        bad = sum(bool(r.family) and not r.exact for r in reports.values())
        return EXIT_NOT_EXACT if bad else 0
    found = discover(a.model_types or None)
    if a.markdown:
        moe = [d.model_type for d in found if d.status == "moe"]
        print(markdown(found, check_all(moe), BY_MODEL_TYPE), end="")
        return 0
    print(render_list(found))
    return 0


def render_check(reports: dict) -> str:
    lines = []
    for t, r in reports.items():
        lines.append(
            f"{t}: family {r.family or '(not declared)'}" + (f": {r.error}" if r.error else "")
        )
        lines += ["  " + o.line() for o in r.outcomes]
    return "\n".join(lines)


def render_list(found: list) -> str:
    from moegrow.families import BY_MODEL_TYPE, FAMILIES

    lines = ["declared families:"]
    for f in FAMILIES:
        lines.append(f"  {f.name:18s} {', '.join(f.model_types)}{'' if f.is_moe else '  (dense)'}")
    todo = [d for d in found if d.status == "moe" and d.model_type not in BY_MODEL_TYPE]
    lines.append(f"MoE model types of this transformers not declared yet ({len(todo)}):")
    lines += [f"  {d.model_type}{'  (hybrid)' if d.hybrid else ''}" for d in todo]
    lines += [
        f"  {d.model_type}: tiny instance not built: {d.detail}"
        for d in found
        if d.status == "unbuildable"
    ]
    return "\n".join(lines)


def add_parsers(sub) -> None:
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
