"""Command-line options generated from the option dataclasses.

Each field of an options dataclass (``GrowthSpec``, ``TrainOptions``, ...) becomes ``--field-name``
with the field's default, its type (``Literal`` choices, ``int``, ``float``, ``bool`` switches,
``X | None``) and, as help, the docstring written under the field. Defaults and help therefore
live in one place, the dataclass, and the command line cannot drift from the library.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, Literal

from moegrow.errors import MoegrowError


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (and of its dataclass bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (e.g. frozen into an executable)
            continue
        body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = after.value.value
    return docs


def _help_text(doc: str) -> str:
    """A field docstring as argparse help: reST markup removed, ``%`` escaped, one line."""
    text = " ".join(doc.split())
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
    return text.replace("%", "%%")


def _unwrap_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    return tp


def user_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a parser that raises :class:`MoegrowError` so argparse reports its own message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except MoegrowError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    parsers: dict[str, Callable[[str], Any]] | None = None,
    metavars: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
) -> None:
    """Add one option per field of the dataclass ``cls`` (restricted to ``only``, less ``skip``).

    ``parsers`` gives a field a parser of its own (its errors become argparse errors);
    ``defaults`` replaces a field's default on the command line (say, ``None`` meaning "not
    given", where the command must know); ``flags`` renames an option (``sources`` ->
    ``--from``). A field without a default is a required option; a tuple of strings is a
    repeatable option."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    wanted = set(only) if only is not None else None
    parsers = parsers or {}
    metavars = metavars or {}
    defaults = defaults or {}
    flags = flags or {}
    for f in dataclasses.fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in skip:
            continue
        flag = flags.get(f.name, "--" + f.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": f.name}
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default, kwargs["required"] = None, True
        help_text = _help_text(docs.get(f.name, ""))
        kwargs["default"] = default
        tp = _unwrap_optional(hints[f.name])
        if f.name in parsers:
            kwargs["type"] = user_type(parsers[f.name])
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
        elif typing.get_origin(tp) is Literal:
            kwargs["choices"] = typing.get_args(tp)
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif typing.get_origin(tp) is tuple and typing.get_args(tp) == (str, Ellipsis):
            kwargs.update(action="append", default=None)  # --from A --from B
        elif typing.get_origin(tp) is tuple and typing.get_args(tp)[1:] == (Ellipsis,):
            kwargs.update(type=typing.get_args(tp)[0], nargs="+")  # --budgets 0.5 1.0
        if f.name in metavars:
            kwargs["metavar"] = metavars[f.name]
        shown = not (default is None or isinstance(default, bool) or default in ("", ()))
        if shown and "%(default)" not in help_text:
            help_text += (" " if help_text else "") + "(default: %(default)s)"
        kwargs["help"] = help_text or None
        parser.add_argument(flag, **kwargs)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of ``cls`` from the options :func:`add_options` added, plus ``extra``."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.init and hasattr(args, f.name) and f.name not in extra
    }
    # None: not given (a repeatable option never given), so the field's own default applies
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}
    return cls(**values, **extra)


def parse_count(text: str) -> int:
    """``"2e6"`` -> 2000000."""
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        raise MoegrowError(f"expected a finite number like 2e6, got {text!r}") from None


def library_default(func: Callable, name: str) -> Any:
    """The default of ``func``'s keyword ``name``: a command's help text quotes the library's
    default instead of repeating it."""
    default = inspect.signature(func).parameters[name].default
    assert default is not inspect.Parameter.empty, f"{func.__name__}({name}) has no default"
    return default


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` that the user gave (added with ``default=SUPPRESS``), so that
    the library's own defaults apply to the rest."""
    return {n: getattr(args, n) for n in names if hasattr(args, n)}
