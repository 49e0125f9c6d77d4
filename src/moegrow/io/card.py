"""The growth card: provenance written beside grown weights, and the FLOPs ledger it carries.

``moegrow_card.json`` records where a checkpoint came from (source config and file hashes), the
plan that made it, the seed, moegrow's version, parameter counts, and the ledger: every stage of
compute spent on the weights so far (base training, growths, continued training), so that sunk
and extra FLOPs can be told apart later.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from moegrow.errors import CheckpointError
from moegrow.io.bounded_json import read_json

CARD_NAME = "moegrow_card.json"


def sha256_file(path: Path, chunk: int = 1 << 23) -> str:
    """Read through one reused buffer: a fresh block per read would fault in its pages anew
    (1.5 M page faults for a 6 GB checkpoint)."""
    h = hashlib.sha256()
    buf = memoryview(bytearray(chunk))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(buf[:n])
    return h.hexdigest()


def read_card(folder: Path) -> dict | None:
    """The card of a checkpoint folder, or None when it has none; a card that is not a JSON
    object is an error naming it (its ledger would otherwise be dropped silently)."""
    path = Path(folder) / CARD_NAME
    if not (path.exists() or path.is_symlink()):
        return None
    return read_json(path, max_bytes=1 << 24, error=CheckpointError)


def ledger_of(folder: Path) -> list[dict]:
    """The FLOPs ledger carried by a checkpoint (empty when it has no card), each stage with
    numeric ``tokens`` and ``flops`` >= 0."""
    card = read_card(folder)
    ledger = card.get("ledger", []) if card else []
    where = Path(folder) / CARD_NAME
    if not isinstance(ledger, list):
        raise CheckpointError(f"{where}: 'ledger' must be a list of stages, got {ledger!r:.60}")
    for i, stage in enumerate(ledger):
        if not isinstance(stage, dict):
            raise CheckpointError(f"{where}: ledger[{i}] must be an object, got {stage!r:.60}")
        for key in ("tokens", "flops"):
            value = stage.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise CheckpointError(
                    f"{where}: ledger[{i}].{key} must be a number >= 0, got {value!r:.60}"
                )
    return list(ledger)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
