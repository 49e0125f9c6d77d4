"""Errors raised for bad user input.

Every error moegrow raises for input it was given is a :class:`MoegrowError`: the CLI prints its
one-line message and exits with status 2. Internal invariants use ``assert`` instead.
"""

from __future__ import annotations


class MoegrowError(ValueError):
    """Bad input: the message names the file/tensor/option, what was expected, what was found
    and what to do about it."""


class CheckpointError(MoegrowError):
    """A checkpoint folder or one of its files is malformed or unsupported."""


class GrowthError(MoegrowError):
    """A growth option is invalid, or the requested growth cannot be done for this model."""
