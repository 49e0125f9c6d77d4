"""The package layers of ``src/moegrow`` import one way only (docs/ARCHITECTURE.md).

Every ``import`` and ``from ... import`` in the source, including those inside functions, is
parsed; a module may import from its own package or from a layer listed before its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "moegrow"

#: Layers from the bottom up; a module of layer i imports only layers < i (or its own package).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("moegrow.errors",),
    ("moegrow.extras",),
    ("moegrow",),  # the package root re-exports the errors and the version
    ("moegrow.families",),  # declarations: data, importing nothing but errors
    ("moegrow.io",),  # checkpoints are read, and their configs checked, by their family
    ("moegrow.flops",),
    ("moegrow.modeling",),
    ("moegrow.growth",),
    ("moegrow.conformance",),  # every MoE type of the installed transformers, checked
    ("moegrow.ledger", "moegrow.data"),
    ("moegrow.training",),
    ("moegrow.experiments",),
    ("moegrow.cli",),
    ("moegrow.__main__",),
)


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, unit) of a dotted module name: the unit is the longest listed prefix."""
    best: tuple[int, str] | None = None
    for i, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and (
                best is None or len(unit) > len(best[1])
            ):
                best = (i, unit)
    if best is None:
        raise AssertionError(f"{module}: not in any layer of tests/test_architecture.py")
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every moegrow module that ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("moegrow")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("moegrow"):
                continue
            if node.module == "moegrow":  # from moegrow import x: x may be a subpackage
                for a in node.names:
                    sub = f"moegrow.{a.name}"
                    is_pkg = (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file()
                    found.append((node.lineno, sub if is_pkg else "moegrow"))
            else:
                found.append((node.lineno, node.module))
    return found


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    me = module_name(path)
    my_layer, my_unit = layer_of(me)
    bad = []
    for line, target in imported_modules(path):
        layer, unit = layer_of(target)
        if unit == my_unit or target == "moegrow":
            continue
        if layer >= my_layer:
            bad.append(f"{path.relative_to(SRC)}:{line} imports {target} ({unit}, layer {layer})")
    assert not bad, f"{me} (layer {my_layer}) may only import lower layers:\n" + "\n".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path):
    """The parser sees imports inside functions and ``from moegrow import pkg``."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from moegrow import training\n    import moegrow.cli\n")
    targets = [t for _, t in imported_modules(src)]
    assert targets == ["moegrow.training", "moegrow.cli"]
    assert layer_of("moegrow.training.train")[0] > layer_of("moegrow.growth.plan")[0]
