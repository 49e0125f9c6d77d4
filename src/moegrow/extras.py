"""Optional dependencies, checked when a command that needs one starts (not minutes later)."""

from __future__ import annotations

import importlib.util

from moegrow.errors import MoegrowError


def require(module: str, extra: str, what: str) -> None:
    """Refuse ``what`` with the install command when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise MoegrowError(
            f"{what} needs the optional package {module}, which is not installed: "
            f'pip install "moegrow[{extra}]"'
        )
