"""Held-out evaluation: loss and perplexity on the validation split, next-token accuracy and the
loss per source-document group, router load balance and entropy per MoE layer, the weight-norm
profile, and an optional hand-off to lm-evaluation-harness.

The validation split is read as consecutive non-overlapping windows of ``seq_len + 1`` tokens
from its start, so every model evaluated on the same data folder sees the same tokens. A target
token belongs to the group of the document it lies in (``moegrow.data.corpus.document_group``:
the source file, or the built-in corpus's part), whatever document its context came from.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from moegrow.errors import MoegrowError
from moegrow.modeling.lm_loss import NextTokenLoss
from moegrow.training import distributed as ddp
from moegrow.training.options import EVAL_SEQ_LEN, EVAL_TOKENS
from moegrow.training.router_stats import RouterCapture, RouterKind, balance_metrics, expert_loads


def eval_windows(
    num_tokens: int, seq_len: int, budget: int, batch: int, *, spread: bool = False
) -> list[list[int]]:
    """This process's validation window offsets, in batches; every process gets the same number
    of windows (FSDP needs every process in every forward). ``spread``: the windows evenly
    spaced over the whole split instead of consecutive from its start (a budget smaller than
    the split then samples every document, not only the first ones)."""
    available = (num_tokens - 1) // seq_len
    count = max(min(available, budget // seq_len), 1)
    rank, size = ddp.world()
    count = math.ceil(count / size) * size
    if spread:
        starts = [(i * available // count % available) * seq_len for i in range(count)]
    else:
        starts = [(i % available) * seq_len for i in range(count)]
    mine = starts[rank::size]
    return [mine[i : i + batch] for i in range(0, len(mine), batch)]


@torch.no_grad()
def validation_loss(
    model,
    split,
    *,
    seq_len: int,
    tokens: int,
    batch: int = 8,
    device: torch.device | str = "cpu",
    kind: RouterKind | None = None,
    biases: list | None = None,
    capture: RouterCapture | None = None,
    autocast: bool = False,
    next_token_loss: NextTokenLoss | None = None,
    scores: bool = False,
    spread: bool = False,
) -> dict:
    """Mean next-token loss over the first ``tokens`` validation tokens (all processes), with
    router balance metrics when ``kind`` and the model's router ``capture`` are given.
    ``next_token_loss``: the model's loss (default: one made for ``model``). ``scores``: also
    the next-token accuracy (``val_accuracy``) and, where the data names its documents, the
    tokens, loss and accuracy of each document group (``val_groups``); the loss is then summed
    token by token in float64 (the same value up to rounding). ``spread``: windows spread over
    the whole split (:func:`eval_windows`)."""
    if len(split) < seq_len + 1:
        raise MoegrowError(
            f"validation split has {len(split)} tokens, fewer than one window of {seq_len + 1}"
        )
    was_training = model.training
    model.eval()
    total = count = 0.0
    loads = None
    tally = _Tally(split) if scores else None
    for starts in eval_windows(len(split), seq_len, tokens, batch, spread=spread):
        rows = torch.stack([torch.from_numpy(split.window(s, seq_len + 1)) for s in starts])
        rows = rows.long().to(device)
        if next_token_loss is None:
            next_token_loss = NextTokenLoss(model, rows[:1, :-1], fused=not ddp.sharded())
            if capture is not None:
                capture.take()  # the check's forward passes
        with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            if tally is None:
                total += next_token_loss(rows[:, :-1], rows[:, 1:]).item()
            else:
                losses, hits = next_token_loss.token_scores(rows[:, :-1], rows[:, 1:])
                total += tally.add(starts, seq_len, losses, hits)
        count += rows[:, 1:].numel()
        router_logits = capture.take() if capture is not None else ()
        if kind is not None and router_logits:
            no_bias: list[torch.Tensor | None] = [None] * len(router_logits)
            layer_loads = expert_loads(router_logits, kind, biases or no_bias, reduce=False)
            loads = layer_loads if loads is None else loads + layer_loads
    total, count = ddp.all_sum([total, count])
    if was_training:
        model.train()
    loss = total / count
    result: dict[str, object] = {
        "val_loss": loss,
        "val_ppl": math.exp(min(loss, 50.0)),
        "val_tokens": int(count),
    }
    if tally is not None:
        result.update(tally.result(count))
    if loads is not None:
        if ddp.world()[1] > 1:
            torch.distributed.all_reduce(loads)
        result.update({f"val_{k}": v for k, v in balance_metrics(loads).items()})
    return result


class _Tally:
    """Tokens, summed loss and hits of the scored windows, in all and per document group."""

    def __init__(self, split):
        groups = split.document_groups()
        self.split = split
        self.names = sorted(set(groups)) if groups else []
        index = {name: i for i, name in enumerate(self.names)}
        self.group_of = np.asarray([index[g] for g in groups or []], dtype=np.int64)
        self.hits = 0.0
        # per group: tokens, loss sum, hits
        self.sums = np.zeros((3, len(self.names)), dtype=np.float64)

    def add(self, starts: list[int], seq_len: int, losses: torch.Tensor, hits) -> float:
        """Count one batch (windows at ``starts``); returns its summed loss."""
        loss = losses.detach().double().cpu().numpy()
        hit = hits.detach().cpu().numpy().astype(np.float64)
        self.hits += float(hit.sum())
        if self.names:
            targets = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(1, seq_len + 1)
            group = self.group_of[self.split.documents_at(targets.reshape(-1))]
            n = len(self.names)
            self.sums[0] += np.bincount(group, minlength=n)
            self.sums[1] += np.bincount(group, weights=loss, minlength=n)
            self.sums[2] += np.bincount(group, weights=hit, minlength=n)
        return float(loss.sum())

    def result(self, count: float) -> dict:
        """``val_accuracy`` over all ``count`` scored tokens (all processes) and ``val_groups``
        (None where the data does not name its documents)."""
        sums = ddp.all_sum([self.hits, *self.sums.reshape(-1).tolist()])
        per_group = np.asarray(sums[1:]).reshape(3, -1)
        groups = {
            name: {
                "tokens": int(per_group[0, i]),
                "loss": float(per_group[1, i] / per_group[0, i]),
                "accuracy": float(per_group[2, i] / per_group[0, i]),
            }
            for i, name in enumerate(self.names)
            if per_group[0, i] > 0
        }
        return {"val_accuracy": sums[0] / count, "val_groups": groups if self.names else None}


def evaluate(
    model_dir: str | Path,
    data_dir: str | Path,
    *,
    seq_len: int = EVAL_SEQ_LEN,
    tokens: int = EVAL_TOKENS,
    batch: int = 8,
    device: str = "auto",
    scores: bool = True,
    spread: bool = False,
) -> dict:
    """``moegrow eval``: validation loss/perplexity, next-token accuracy and the loss per
    document group (``scores``), router balance and the norm profile; ``spread``: windows
    spread over the whole split (:func:`eval_windows`)."""
    from moegrow.data.token_shards import TokenData
    from moegrow.families import family_for
    from moegrow.growth.norms import norm_profile
    from moegrow.io.checkpoint import Checkpoint
    from moegrow.modeling.loading import load_model, pick_device
    from moegrow.training.router_stats import expert_bias_buffers, router_kind

    model_dir = Path(model_dir)
    data = TokenData(data_dir)
    dev = pick_device(device)
    with Checkpoint(model_dir) as ckpt:
        config = ckpt.config
        family = family_for(config, where=str(model_dir / "config.json"))
        profile = norm_profile(ckpt, family)
    check_vocab(config, data, model_dir)
    model = load_model(model_dir, dev)
    kind = router_kind(config)
    result = validation_loss(
        model,
        data.split("val"),
        seq_len=seq_len,
        tokens=tokens,
        batch=batch,
        device=dev,
        kind=kind,
        biases=expert_bias_buffers(model, config),
        capture=RouterCapture(model) if kind is not None else None,
        autocast=dev.type == "cuda",
        scores=scores,
        spread=spread,
    )
    result["norm_profile"] = [round(p.value, 6) for p in profile]
    result["model"] = str(model_dir)
    result["data"] = str(data_dir)
    return result


def check_vocab(config: dict, data, model_dir: Path) -> None:
    vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    if vocab is not None and data.max_token_id >= vocab:
        raise MoegrowError(
            f"{model_dir / 'config.json'}: vocab_size {vocab} does not cover the data's token ids "
            f"(largest {data.max_token_id}); initialise the model with this data's tokenizer "
            "(moegrow init --tokenizer DATA)"
        )


def run_lm_eval(
    model_dir: str | Path,
    tasks: list[str],
    *,
    include_path: str | None = None,
    limit: int | None = None,
    device: str = "cpu",
) -> dict:
    """Hand the model to lm-evaluation-harness (optional extra ``lm-eval``), in this process so
    that moegrow's registered model variants load."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MoegrowError(
            "--lm-eval needs lm-evaluation-harness: pip install 'lm-eval>=0.4' (or moegrow[eval])"
        ) from None
    from moegrow.modeling.variants import register

    register()  # moegrow's own model types, known to transformers' Auto classes

    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise MoegrowError(
            f"--lm-eval: unknown task(s) {', '.join(unknown)}; give --include-path DIR for local "
            "task YAMLs (lm-eval's own tasks download their data)"
        )
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=tasks,
        device=device,
        limit=limit,
        task_manager=manager,
    )
    return {task: metrics for task, metrics in results["results"].items()}
