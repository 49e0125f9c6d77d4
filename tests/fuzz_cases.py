"""Generated malformed inputs for the fuzz suite: damaged checkpoints, options, corpora, data
folders and run folders, each paired with the moegrow command that must refuse it.

A case is ``(label, build)``: ``build(case_dir)`` makes the damaged input inside ``case_dir`` and
returns the command line. Every case is malformed on purpose (none is a valid input by
accident), so the only right answer is exit status 2 with a one-line error. Mutations are drawn
from a seeded ``random.Random``: the same seed gives the same cases.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

Build = Callable[[Path], list[str]]
Case = tuple[str, Build]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))


def rewrite_header(path: Path, edit) -> None:
    """Apply ``edit(header)`` to a safetensors file, keeping its data bytes."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def tensor_names(header: dict) -> list[str]:
    return sorted(k for k in header if k != "__metadata__")


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
BAD_CONFIG_FILES: dict[str, bytes] = {
    "array": b"[]",
    "null": b"null",
    "string": b'"config"',
    "number": b"42",
    "empty": b"",
    "truncated": b'{"model_type": "mixtral", "num_hidden_layers": ',
    "not-utf8": b'{"model_type": "\xff\xfe"}',
    "nested": b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nan": b'{"model_type": "mixtral", "num_hidden_layers": NaN}',
    "no-model-type": b'{"num_hidden_layers": 2}',
    "unknown-model-type": b'{"model_type": "not-a-model", "num_hidden_layers": 2}',
    "model-type-number": b'{"model_type": 7, "num_hidden_layers": 2}',
}

#: Values no integer count field accepts (besides out-of-range numbers, added per field).
WRONG_TYPES = ["2", 2.5, True, [], {}, "two"]


def _int_field_values(key: str, good: int, rng: random.Random) -> list[object]:
    values: list[object] = [-1, 10**9, -(10**12)]
    values += rng.sample(WRONG_TYPES, 3)
    if key not in ("first_k_dense_replace", "num_nextn_predict_layers"):
        values.append(0)
    return values


def checkpoint_mutations(family: str, cfg: dict, rng: random.Random) -> list[tuple[str, object]]:
    """(label, mutate(folder)) pairs for a checkpoint of ``family`` whose config is ``cfg``."""
    out: list[tuple[str, object]] = []

    for label, raw in BAD_CONFIG_FILES.items():
        out.append((f"config-{label}", lambda f, raw=raw: (f / "config.json").write_bytes(raw)))

    fields = [
        k
        for k in (
            "num_hidden_layers",
            "num_local_experts",
            "num_experts",
            "n_routed_experts",
            "num_experts_per_tok",
            "hidden_size",
            "vocab_size",
            "decoder_sparse_step",
            "n_group",
            "topk_group",
            "num_attention_heads",
        )
        if isinstance(cfg.get(k), int)
    ]
    for key in fields:
        for value in _int_field_values(key, cfg[key], rng):

            def mutate(f, key=key, value=value):
                edit_config(f, lambda c: c.__setitem__(key, value))

            out.append((f"config-{key}={value!r}", mutate))
    n = cfg["num_hidden_layers"]
    count_keys = ("num_local_experts", "num_experts", "n_routed_experts")
    experts = next(cfg[k] for k in count_keys if k in cfg)
    edits = {
        "layers-one-fewer": ("num_hidden_layers", n - 1),
        "layers-one-more": ("num_hidden_layers", n + 1),
        "top-k-above-experts": ("num_experts_per_tok", experts + 1),
        "hidden-size-disagrees": ("hidden_size", cfg["hidden_size"] * 2),
        "vocab-disagrees": ("vocab_size", cfg["vocab_size"] + 1),
        "initializer-range-negative": ("initializer_range", -0.02),
        "initializer-range-string": ("initializer_range", "0.02"),
        "layer-types-string": ("layer_types", "full_attention"),
    }
    for label, (key, value) in edits.items():

        def mutate(f, k=key, v=value):
            edit_config(f, lambda c: c.update({k: v}))

        out.append((f"config-{label}", mutate))
    if "mlp_only_layers" in cfg:
        for value in ([99], ["a"], [-1]):
            out.append(
                (
                    f"config-mlp_only_layers={value}",
                    lambda f, v=value: edit_config(f, lambda c: c.update(mlp_only_layers=v)),
                )
            )

    def header(edit_fn):
        return lambda f: rewrite_header(f / "model.safetensors", edit_fn)

    def pick(h, suffix):
        names = [k for k in tensor_names(h) if k.endswith(suffix)]
        return rng.choice(names) if names else tensor_names(h)[0]

    router = "block_sparse_moe.gate.weight" if family == "mixtral" else "mlp.gate.weight"
    header_edits = {
        "router-shape-empty": lambda h: h[pick(h, router)].update(shape=[]),
        "router-rows-wrong": lambda h: h[pick(h, router)].update(
            shape=[h[pick(h, router)]["shape"][0] + 1, *h[pick(h, router)]["shape"][1:]]
        ),
        "dtype-unknown": lambda h: h[rng.choice(tensor_names(h))].update(dtype="Q9"),
        "shape-negative": lambda h: h[rng.choice(tensor_names(h))].update(shape=[-4, 4]),
        "shape-string": lambda h: h[rng.choice(tensor_names(h))].update(shape="4x4"),
        "offsets-past-end": lambda h: h[rng.choice(tensor_names(h))].update(
            data_offsets=[10**12, 10**12 + 4]
        ),
        "offsets-reversed": lambda h: h[rng.choice(tensor_names(h))].update(data_offsets=[8, 0]),
        "tensor-missing": lambda h: h.pop(pick(h, "o_proj.weight")),
        "embedding-missing": lambda h: h.pop("model.embed_tokens.weight"),
        "layer-index-beyond": lambda h: h.__setitem__(
            "model.layers.7.input_layernorm.weight", h.pop(pick(h, "input_layernorm.weight"))
        ),
        "metadata-not-strings": lambda h: h.__setitem__("__metadata__", {"format": 1}),
        "entry-not-object": lambda h: h.__setitem__(rng.choice(tensor_names(h)), [1, 2]),
    }
    for label, edit_fn in header_edits.items():
        out.append((f"header-{label}", header(edit_fn)))

    def raw_file(fn):
        def mutate(f):
            p = f / "model.safetensors"
            p.write_bytes(fn(p.read_bytes()))

        return mutate

    raw_edits = {
        "truncated": lambda b: b[: len(b) - rng.randint(1, 400)],
        "header-length-huge": lambda b: struct.pack("<Q", 2**62) + b[8:],
        "header-not-json": lambda b: (
            b[:8] + b"\x00" * struct.unpack("<Q", b[:8])[0] + b[8 + struct.unpack("<Q", b[:8])[0] :]
        ),
        "empty-file": lambda b: b"",
        "seven-bytes": lambda b: b[:7],
    }
    for label, fn in raw_edits.items():
        out.append((f"shard-{label}", raw_file(fn)))

    def folder_edit(fn):
        return fn

    def link_config_outside(f):
        outside = f.parent / "outside-config.json"
        shutil.copy(f / "config.json", outside)
        (f / "config.json").unlink()
        (f / "config.json").symlink_to(outside)

    def link_shard_outside(f):
        outside = f.parent / "outside.safetensors"
        shutil.move(f / "model.safetensors", outside)
        (f / "model.safetensors").symlink_to(outside)

    def lone_shard_outside(f):
        outside = f.parent / "elsewhere.safetensors"
        shutil.move(f / "model.safetensors", outside)
        (f / "weights.safetensors").symlink_to(outside)

    def index(values):
        def mutate(f):
            names = json.loads(
                (f / "model.safetensors").read_bytes()[
                    8 : 8 + struct.unpack("<Q", (f / "model.safetensors").read_bytes()[:8])[0]
                ]
            )
            weight_map = {k: values(k) for k in tensor_names(names)}
            (f / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))

        return mutate

    def shard_is_dir(f):
        index(lambda k: "shard-dir.safetensors")(f)
        (f / "model.safetensors").unlink()
        (f / "shard-dir.safetensors").mkdir()

    def shard_loop(f):
        (f / "loop-a.safetensors").symlink_to("loop-b.safetensors")
        (f / "loop-b.safetensors").symlink_to("loop-a.safetensors")
        index(lambda k: "loop-a.safetensors")(f)
        (f / "model.safetensors").unlink()

    def config_fifo(f):
        (f / "config.json").unlink()
        os.mkfifo(f / "config.json")

    def config_dir(f):
        (f / "config.json").unlink()
        (f / "config.json").mkdir()

    def only_pickle(f):
        (f / "model.safetensors").unlink()
        (f / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")

    folder_edits = {
        "config-symlink-outside": link_config_outside,
        "shard-symlink-outside": link_shard_outside,
        "lone-shard-symlink-outside": lone_shard_outside,
        "index-values-numbers": index(lambda k: 1),
        "index-values-null": index(lambda k: None),
        "index-dotdot": index(lambda k: "../model.safetensors"),
        "index-absolute": index(lambda k: "/etc/passwd"),
        "index-missing-shard": index(lambda k: "nope.safetensors"),
        "index-weight-map-list": lambda f: (f / "model.safetensors.index.json").write_text(
            '{"weight_map": []}'
        ),
        "index-array": lambda f: (f / "model.safetensors.index.json").write_text("[]"),
        "shard-is-directory": shard_is_dir,
        "shard-symlink-loop": shard_loop,
        "config-fifo": config_fifo,
        "config-directory": config_dir,
        "config-missing": lambda f: (f / "config.json").unlink(),
        "only-pickle": only_pickle,
        "no-weights": lambda f: (f / "model.safetensors").unlink(),
    }
    for label, fn in folder_edits.items():
        out.append((f"folder-{label}", folder_edit(fn)))
    return out


CARD = "moegrow_card.json"
#: Damaged growth cards (their FLOPs ledger is read by grow, train and flops).
CARD_MUTATIONS: dict[str, bytes] = {
    "card-array": b"[]",
    "card-not-json": b'{"ledger": [',
    "card-ledger-object": b'{"ledger": {"stage": "base"}}',
    "card-ledger-entry-string": b'{"ledger": ["base"]}',
    "card-ledger-flops-string": b'{"ledger": [{"stage": "base", "flops": "1e20"}]}',
    "card-ledger-tokens-negative": b'{"ledger": [{"stage": "base", "tokens": -5}]}',
    "card-ledger-flops-bool": b'{"ledger": [{"stage": "base", "flops": true}]}',
}


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------
GROWTH_OPTION_CASES: list[list[str]] = [
    ["--depth", "1"],
    ["--depth", "0"],
    ["--depth=-3"],
    ["--depth", "1000000"],
    ["--depth", "x"],
    ["--depth", "2.5"],
    ["--depth", ""],
    ["--width", "1"],
    ["--width", "100000"],
    ["--width", "nan"],
    ["--width", "2", "--noise", "inf"],
    ["--width", "2", "--noise", "nan"],
    ["--width", "2", "--noise=-1"],
    ["--width", "2", "--noise", "1e400"],
    ["--width", "2", "--top-k", "0"],
    ["--width", "2", "--top-k=-1"],
    ["--width", "2", "--top-k", "1000"],
    ["--width", "2", "--top-k", "x"],
    ["--top-k", "0"],
    ["--layer-map", ""],
    ["--layer-map", ","],
    ["--layer-map", "0,,1"],
    ["--layer-map", "5"],
    ["--layer-map=-1"],
    ["--layer-map", "a,b"],
    ["--layer-map", "0,1", "--depth", "2"],
    ["--layer-map", ",".join(["0"] * 100000)],
    ["--depth", "2", "--keep-first", "99"],
    ["--depth", "2", "--keep-first", "-1"],
    ["--depth", "2", "--keep-first", "x"],
    ["--depth", "2", "--seed", "-1"],
    ["--depth", "2", "--depth-method", "sideways"],
    ["--width", "2", "--expert-order", "random"],
    [],
]
GROW_ONLY_OPTION_CASES: list[list[str]] = [
    ["--depth", "2", "--max-shard-size", "0"],
    ["--depth", "2", "--max-shard-size=-5GB"],
    ["--depth", "2", "--max-shard-size", "lots"],
    ["--depth", "2", "--max-shard-size", "nanGB"],
]


# --------------------------------------------------------------------------------------------
# corpora (data prepare) and data folders
# --------------------------------------------------------------------------------------------
def corpus_cases(rng: random.Random) -> list[tuple[str, Build]]:
    def texts(d: Path, n: int = 3) -> Path:
        t = d / "texts"
        t.mkdir()
        for i in range(n):
            (t / f"{i}.txt").write_text(f"document {i} " * rng.randint(5, 50))
        return t

    def fifo(d):
        t = texts(d)
        os.mkfifo(t / "pipe.txt")
        return ["data", "prepare", d / "out", "--text", t / "pipe.txt", "--vocab", "300"]

    def fifo_in_glob(d):
        t = texts(d, 1)
        os.mkfifo(t / "pipe.txt")
        return ["data", "prepare", d / "out", "--text", str(t / "*.txt"), "--vocab", "300"]

    def dev_zero_link(d):
        t = texts(d)
        (t / "zero.txt").symlink_to("/dev/zero")
        return ["data", "prepare", d / "out", "--text", t / "zero.txt", "--vocab", "300"]

    def dev_zero(d):
        return ["data", "prepare", d / "out", "--text", "/dev/zero", "--vocab", "300"]

    def not_utf8(d):
        t = texts(d)
        (t / "bad.txt").write_bytes(b"caf\xe9 \xff\xfe")
        return ["data", "prepare", d / "out", "--text", t / "bad.txt", "--vocab", "300"]

    def jsonl(lines: list[str]):
        def build(d):
            p = d / "c.jsonl"
            p.write_text("\n".join(lines) + "\n")
            return ["data", "prepare", d / "out", "--text", p, "--vocab", "300"]

        return build

    def one_document(d):
        t = texts(d, 1)
        return ["data", "prepare", d / "out", "--text", t, "--vocab", "300"]

    def empty_docs(d):
        t = d / "texts"
        t.mkdir()
        for i in range(3):
            (t / f"{i}.txt").write_text("  \n")
        return ["data", "prepare", d / "out", "--text", t, "--vocab", "300"]

    def option(*extra):
        def build(d):
            t = texts(d)
            return ["data", "prepare", d / "out", "--text", t, *extra]

        return build

    def out_is_file(d):
        t = texts(d)
        (d / "out").write_text("precious")
        return ["data", "prepare", d / "out", "--text", t, "--vocab", "300", "--overwrite"]

    def out_exists(d):
        t = texts(d)
        (d / "out").mkdir()
        return ["data", "prepare", d / "out", "--text", t, "--vocab", "300"]

    def tokenizer_missing(d):
        t = texts(d)
        return ["data", "prepare", d / "out", "--text", t, "--tokenizer", d / "nope"]

    def tokenizer_empty(d):
        t = texts(d)
        (d / "tok").mkdir()
        return ["data", "prepare", d / "out", "--text", t, "--tokenizer", d / "tok"]

    cases = {
        "fifo": fifo,
        "fifo-in-glob-only": fifo_in_glob,
        "dev-zero-symlink": dev_zero_link,
        "dev-zero": dev_zero,
        "not-utf8": not_utf8,
        "jsonl-not-json": jsonl(['{"text": "a"}', "{not json"]),
        "jsonl-text-number": jsonl(['{"text": 1}', '{"text": "b"}']),
        "jsonl-array": jsonl(["[1, 2]", '{"text": "b"}']),
        "jsonl-no-text": jsonl(['{"body": "a"}', '{"text": "b"}']),
        "one-document": one_document,
        "empty-documents": empty_docs,
        "missing-path": lambda d: ["data", "prepare", d / "out", "--text", d / "nope.txt"],
        "wrong-suffix": lambda d: (
            (d / "a.csv").write_text("x"),
            ["data", "prepare", d / "out", "--text", d / "a.csv"],
        )[1],
        "glob-matches-nothing": lambda d: ["data", "prepare", d / "o", "--text", str(d / "*.txt")],
        "vocab-huge": option("--vocab", "1000000000"),
        "vocab-zero": option("--vocab", "0"),
        "vocab-negative": option("--vocab", "-5"),
        "vocab-text": option("--vocab", "many"),
        "val-fraction-zero": option("--val-fraction", "0"),
        "val-fraction-one": option("--val-fraction", "1"),
        "val-fraction-nan": option("--val-fraction", "nan"),
        "val-fraction-negative": option("--val-fraction", "-0.5"),
        "out-is-file": out_is_file,
        "out-exists": out_exists,
        "tokenizer-missing": tokenizer_missing,
        "tokenizer-empty-folder": tokenizer_empty,
    }
    return list(cases.items())


def data_folder_mutations(rng: random.Random) -> list[tuple[str, object]]:
    """(label, mutate(data_folder)) pairs: damaged manifests, shards and offsets."""

    def manifest(edit):
        def mutate(d):
            p = d / "manifest.json"
            m = json.loads(p.read_text())
            edit(m)
            p.write_text(json.dumps(m))

        return mutate

    def shard(m, split="train"):
        return m["splits"][split]["shards"][0]

    def truncate_shard(d):
        p = sorted(d.glob("train-*.bin"))[0]
        p.write_bytes(p.read_bytes()[: -rng.randint(1, 100) * 2])

    def docs_npy(array_fn):
        def mutate(d):
            import numpy as np

            path = d / "train-docs.npy"
            np.save(path, array_fn(np.load(path)), allow_pickle=True)

        return mutate

    def shard_symlink_outside(d):
        p = sorted(d.glob("train-*.bin"))[0]
        outside = d.parent / "outside.bin"
        shutil.move(p, outside)
        p.symlink_to(outside)

    cases = {
        "manifest-array": lambda d: (d / "manifest.json").write_text("[]"),
        "manifest-not-json": lambda d: (d / "manifest.json").write_text("{"),
        "manifest-missing": lambda d: (d / "manifest.json").unlink(),
        "manifest-not-utf8": lambda d: (d / "manifest.json").write_bytes(b'{"a": "\xff"}'),
        "format-wrong": manifest(lambda m: m.update(format="other")),
        "dtype-float": manifest(lambda m: m.update(dtype="float64")),
        "dtype-object": manifest(lambda m: m.update(dtype="object")),
        "vocab-string": manifest(lambda m: m.update(vocab_size="512")),
        "vocab-negative": manifest(lambda m: m.update(vocab_size=-1)),
        "eos-huge": manifest(lambda m: m.update(eos_id=10**9)),
        "max-token-id-string": manifest(lambda m: m.update(max_token_id="x")),
        "splits-missing": manifest(lambda m: m.pop("splits")),
        "splits-list": manifest(lambda m: m.update(splits=[])),
        "val-split-missing": manifest(lambda m: m["splits"].pop("val")),
        "shard-dotdot": manifest(lambda m: shard(m).update(file="../../etc/passwd")),
        "shard-absolute": manifest(lambda m: shard(m).update(file="/etc/passwd")),
        "shard-missing": manifest(lambda m: shard(m).update(file="train-99999.bin")),
        "shard-tokens-string": manifest(lambda m: shard(m).update(tokens="many")),
        "shard-tokens-more": manifest(lambda m: shard(m).update(tokens=shard(m)["tokens"] + 1)),
        "shards-not-list": manifest(lambda m: m["splits"]["train"].update(shards={})),
        "split-tokens-wrong": manifest(
            lambda m: m["splits"]["train"].update(tokens=m["splits"]["train"]["tokens"] + 7)
        ),
        "doc-starts-dotdot": manifest(
            lambda m: m["splits"]["train"].update(document_starts="../x.npy")
        ),
        "tokenizer-dir-dotdot": manifest(lambda m: m["tokenizer"].update(dir="..")),
        "tokenizer-dir-absolute": manifest(lambda m: m["tokenizer"].update(dir="/etc")),
        "shard-truncated": truncate_shard,
        "shard-symlink-outside": shard_symlink_outside,
        "doc-starts-object-array": docs_npy(lambda a: a.astype(object)),
        "doc-starts-float": docs_npy(lambda a: a.astype("float64")),
        "doc-starts-decreasing": docs_npy(lambda a: a[::-1].copy()),
        "doc-starts-2d": docs_npy(lambda a: a.reshape(1, -1)),
        "doc-starts-garbage": lambda d: (d / "train-docs.npy").write_bytes(b"\x93NUMPY garbage"),
    }
    return list(cases.items())


TRAIN_OPTION_CASES: list[list[str]] = [
    ["--tokens", "0"],
    ["--tokens=-256"],
    ["--tokens", "nan"],
    ["--tokens", "inf"],
    ["--tokens", "lots"],
    ["--flops", "nan"],
    ["--flops=-1"],
    ["--flops", "inf"],
    ["--tokens", "512", "--batch-size", "0"],
    ["--tokens", "512", "--batch-size", "-8"],
    ["--tokens", "512", "--seq-len", "0"],
    ["--tokens", "512", "--seq-len", "1000000000"],
    ["--tokens", "512", "--grad-accum", "3"],
    ["--tokens", "512", "--grad-accum", "0"],
    ["--tokens", "512", "--lr", "nan"],
    ["--tokens", "512", "--lr=-1e-3"],
    ["--tokens", "512", "--lr", "inf"],
    ["--tokens", "512", "--lr", "0"],
    ["--tokens", "512", "--warmup-steps", "-1"],
    ["--tokens", "512", "--keep-checkpoints=-1"],
    ["--tokens", "512", "--eval-tokens", "0"],
    ["--tokens", "512", "--min-lr-ratio", "2"],
    ["--tokens", "512", "--decay-fraction", "nan"],
    ["--tokens", "512", "--grad-clip", "nan"],
    ["--tokens", "512", "--weight-decay=-0.1"],
    ["--tokens", "512", "--aux-loss-coef", "inf"],
    ["--tokens", "512", "--expert-bias-rate=-1"],
    ["--tokens", "512", "--stop-after", "0"],
    ["--tokens", "512", "--save-every", "-2"],
    ["--tokens", "512", "--eval-every", "-1"],
    ["--tokens", "512", "--seed", "-1"],
    ["--tokens", "512", "--schedule", "linear"],
]
