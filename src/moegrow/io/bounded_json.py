"""JSON files read with limits: a regular file, at most ``max_bytes``, UTF-8, nested at most
``MAX_DEPTH`` deep, no NaN/Infinity, and the top-level type the caller expects; anything else
is a one-line :class:`MoegrowError` naming the file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from moegrow.errors import MoegrowError

MAX_JSON_BYTES = 64 * 2**20
MAX_DEPTH = 64


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json(
    path: str | os.PathLike,
    *,
    expect: type = dict,
    max_bytes: int = MAX_JSON_BYTES,
    error: type[MoegrowError] = MoegrowError,
):
    """The parsed JSON of ``path``, checked as the module docstring says."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file; expected a JSON file")
    if st.st_size > max_bytes:
        raise error(
            f"{path}: {st.st_size} bytes, more than the {max_bytes} allowed for this JSON file"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: more than the {max_bytes} bytes allowed for this JSON file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 (byte {e.start}: {e.reason})") from None
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise error(f"{path}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity
        raise error(f"{path}: not valid JSON ({e})") from None
    depth = _depth(value)
    if depth > MAX_DEPTH:
        raise error(f"{path}: JSON nested {depth} levels deep, more than {MAX_DEPTH}")
    if not isinstance(value, expect):
        raise error(f"{path}: expected a JSON {_json_name(expect)}, got {_json_name(type(value))}")
    return value


def _depth(value) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        stack.extend((c, d + 1) for c in v if isinstance(c, (dict, list)))
    return deepest


def _json_name(t: type) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(t, "number" if t in (int, float) else t.__name__)
