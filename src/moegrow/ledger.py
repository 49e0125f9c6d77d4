"""``moegrow flops``: a checkpoint's size, FLOPs per token, Chinchilla point, its FLOPs ledger
(sunk cost by stage) and what the paper's guidelines advise for growing it.

Guidelines (PAPER.md, "Guidelines"): interposition beats stacking once the base has been trained
past about 1 x F_c (below that the two are similar); grow with relative noise ~0.01 and double
both E and k; prefer checkpoints from the constant-LR phase over annealed ones; budget at least
the sunk FLOPs for continued training, otherwise training from scratch is competitive.
"""

from __future__ import annotations

from pathlib import Path

from moegrow.families import family_for
from moegrow.flops import DEFAULT_SEQ_LEN, tensor_stats
from moegrow.growth.config_only import NOTE, open_for_plan
from moegrow.io.card import ledger_of


def flops_report(
    folder: str | Path, *, seq_len: int = DEFAULT_SEQ_LEN, base_tokens: int | None = None
) -> dict:
    """Parameters, FLOPs per token, F_c, the ledger and the advice for one checkpoint.

    ``base_tokens``: for a checkpoint without a ledger (trained elsewhere), the tokens it was
    trained on; its sunk cost is then estimated as ``flops_per_token * base_tokens``.
    """
    folder = Path(folder)
    with open_for_plan(folder) as ckpt:
        family = family_for(ckpt.config, where=str(folder / "config.json"))
        stats = tensor_stats(ckpt.tensors.values(), family, ckpt.config)
    ledger = ledger_of(folder)
    fpt = stats.flops_per_token(seq_len)
    if base_tokens:
        ledger = [
            {"stage": "base (declared)", "tokens": base_tokens, "flops": fpt * base_tokens},
            *ledger,
        ]
    sunk = sum(float(e.get("flops", 0.0)) for e in ledger)
    tokens = sum(int(e.get("tokens", 0)) for e in ledger)
    fc = stats.chinchilla_flops
    return {
        "model": str(folder),
        "model_type": ckpt.config.get("model_type"),
        "config_only": getattr(ckpt, "config_only", False),
        **stats.to_json(seq_len),
        "ledger": ledger,
        "sunk_flops": sunk,
        "sunk_tokens": tokens,
        "sunk_over_chinchilla": sunk / fc if fc else None,
        "advice": advice(sunk, fc, bool(ledger)),
    }


def advice(sunk: float, fc: float, known: bool) -> list[str]:
    if not known:
        return [
            "no FLOPs ledger: the sunk cost is unknown; pass --base-tokens N (tokens this "
            "checkpoint was trained on) to estimate it"
        ]
    ratio = sunk / fc if fc else 0.0
    if ratio >= 1.0:
        depth = (
            f"depth: interposition (--depth-method interpose); the base is at {ratio:.2g} x F_c, "
            "past the ~1 x F_c point where the paper finds interposition beats stacking"
        )
    else:
        depth = (
            f"depth: the base is at {ratio:.2g} x F_c, below ~1 x F_c, where the paper finds "
            "interposition and stacking similar; interposition is the safe default"
        )
    return [
        depth,
        "width: double experts and top-k together (--width 2 --top-k scale) with --noise 0.01",
        f"budget: continue training for at least the sunk {sunk:.3g} FLOPs; with less, a model "
        "trained from scratch is competitive",
        "prefer a checkpoint from the constant-LR phase over an annealed one",
    ]


def render(report: dict) -> str:
    from moegrow.growth.report import human

    lines = [
        f"{report['model']} ({report['model_type']})",
        *([f"  {NOTE}"] if report.get("config_only") else []),
        f"  total params      {human(report['total_params'])}",
        f"  active params     {human(report['active_params'])}",
        f"  FLOPs/token       {human(report['flops_per_token'])} (training, T="
        f"{report['flops_per_token_seq_len']}: 6 x active matmul params + attention)",
        f"  Chinchilla F_c    {human(report['chinchilla_flops'])} (6 N_a x 20 N_a)",
        "ledger:",
    ]
    if not report["ledger"]:
        lines.append("  (empty)")
    for e in report["ledger"]:
        lines.append(
            f"  {e['stage']:<16} tokens {human(e.get('tokens', 0)):>8}  "
            f"FLOPs {human(e.get('flops', 0.0)):>8}"
        )
    ratio = report["sunk_over_chinchilla"]
    lines.append(
        f"sunk: {human(report['sunk_flops'])} FLOPs, {human(report['sunk_tokens'])} tokens"
        + (f" = {ratio:.3g} x F_c" if ratio is not None else "")
    )
    lines.append("advice:")
    lines += [f"  - {a}" for a in report["advice"]]
    return "\n".join(lines)


def with_stage(model_dir: Path, entry: dict) -> dict:
    """The card of ``model_dir`` (empty if none) with ``entry`` appended to its ledger: the
    card a checkpoint derived from ``model_dir`` by one more stage carries."""
    from moegrow.io.card import read_card

    card = dict(read_card(model_dir) or {})
    card["ledger"] = [*ledger_of(model_dir), entry]
    return card


def record_external_training(
    folder: str | Path,
    tokens: int,
    *,
    started_from: str | Path | None = None,
    flops: float | None = None,
    seq_len: int = DEFAULT_SEQ_LEN,
    note: str = "external",
) -> dict:
    """Append to the ledger of ``folder`` a training stage run outside moegrow (torchtitan,
    Megatron, ...) on ``tokens`` tokens, and return the entry. Its FLOPs are ``flops`` when
    given (the other engine's count), else moegrow's own ``flops_per_token(seq_len) x tokens``
    for the model in ``folder``, as ``train`` counts them. A folder exported by the other
    engine has no card: ``started_from`` names the checkpoint the training started from, whose
    card (and ledger) it then carries; the two must have the same parameter count."""
    from moegrow.errors import MoegrowError
    from moegrow.io.card import CARD_NAME, read_card, write_json

    folder = Path(folder)
    if tokens <= 0:
        raise MoegrowError(f"--add-tokens must be a positive number of tokens, got {tokens}")
    stats = _stats(folder)
    if read_card(folder) is None:
        if started_from is None:
            raise MoegrowError(
                f"{folder / CARD_NAME}: missing; pass --from DIR, the checkpoint the external "
                "training started from, whose ledger this checkpoint continues"
            )
        origin = _stats(Path(started_from))
        if origin.total != stats.total:
            raise MoegrowError(
                f"--from {started_from}: {origin.total} parameters, but {folder} has "
                f"{stats.total}; name the checkpoint the training started from"
            )
        card = dict(read_card(Path(started_from)) or {})
        card["derived_from"] = str(Path(started_from).resolve())
        base = ledger_of(Path(started_from))
    elif started_from is not None:
        raise MoegrowError(
            f"{folder / CARD_NAME}: exists already and carries its ledger; leave out --from"
        )
    else:
        card = dict(read_card(folder) or {})
        base = ledger_of(folder)
    fpt = stats.flops_per_token(seq_len)
    entry = {
        "stage": "train",
        "tokens": int(tokens),
        "flops": float(flops) if flops is not None else fpt * tokens,
        "flops_source": "declared" if flops is not None else f"moegrow, seq_len {seq_len}",
        "note": note,
        "active_params": stats.active,
    }
    card["ledger"] = [*base, entry]
    tmp = folder / f".{CARD_NAME}.tmp"
    write_json(tmp, card)
    tmp.replace(folder / CARD_NAME)
    return entry


def _stats(folder: Path):
    with open_for_plan(folder) as ckpt:
        family = family_for(ckpt.config, where=str(folder / "config.json"))
        return tensor_stats(ckpt.tensors.values(), family, ckpt.config)
