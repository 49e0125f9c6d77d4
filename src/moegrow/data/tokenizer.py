"""The tokenizer of a prepared data folder.

A byte-level BPE trained on the train documents (``train_tokenizer``, written by
``save_tokenizer`` as a transformers tokenizer folder), or a given tokenizer reused
(``copy_tokenizer``); ``load_tokenizer`` loads either with ``transformers.AutoTokenizer``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from moegrow.data.corpus import Document
from moegrow.errors import MoegrowError

EOS_TOKEN = "<|endoftext|>"
MIN_VOCAB = 258  # 256 byte symbols + EOS + at least one merge
# Files of a tokenizer folder worth copying; a model folder may also hold gigabytes of weights.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)


def train_tokenizer(docs: list[Document], vocab_size: int, *, progress: bool):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``docs``; id 0 is ``<|endoftext|>``.

    Byte-level with no prefix space and no normaliser, so ``decode(encode(text)) == text``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator((d.text for d in docs), trainer, length=len(docs))
    return tokenizer


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Write a trained ``tokenizers.Tokenizer`` as a transformers tokenizer folder.

    ``tokenizer_class`` is set to ``PreTrainedTokenizerFast`` (transformers 5 writes its own
    ``TokenizersBackend``, which 4.x cannot load) and ``special_tokens_map.json`` is written
    because transformers 5 no longer writes it.
    """
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False,  # keeps decode() an exact inverse
    )
    hf.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def copy_tokenizer_files(source: Path, folder: Path) -> None:
    """Copy the tokenizer files of ``source`` (those of :data:`TOKENIZER_FILES` present) into the
    existing ``folder``, byte for byte."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)


def copy_tokenizer(source: Path, folder: Path):
    """Copy the tokenizer files of ``source`` into ``folder``; the loaded copy.

    Files are copied byte for byte so that a reused tokenizer keeps its sha256. A folder with
    only slow-tokenizer files gets a ``tokenizer.json`` converted by transformers.
    """
    folder.mkdir()
    copy_tokenizer_files(source, folder)
    loaded = load_tokenizer(source)
    if not (folder / "tokenizer.json").is_file():
        loaded.save_pretrained(str(folder))
    tokenizer = load_tokenizer(folder)
    if tokenizer.eos_token_id is None:
        raise MoegrowError(
            f"{source}: the tokenizer has no eos_token; documents need one as separator"
        )
    return tokenizer


def load_tokenizer(folder: Path):
    """``transformers.AutoTokenizer`` from a local folder; MoegrowError if it cannot load."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MoegrowError(f"{folder}: not a loadable tokenizer folder ({e})") from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise MoegrowError(
            f"{folder}: only a slow (Python) tokenizer loads from it; need a fast one"
        )
    return tokenizer
