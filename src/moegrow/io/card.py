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
    """The card of a checkpoint folder, or None when it has none."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def ledger_of(folder: Path) -> list[dict]:
    """The FLOPs ledger carried by a checkpoint (empty when it has no card)."""
    card = read_card(folder)
    return list(card.get("ledger", [])) if card else []


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
