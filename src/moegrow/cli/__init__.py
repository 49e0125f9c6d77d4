"""``moegrow`` command line: each subcommand parses options and calls one library function.

Options that a library dataclass holds (``GrowthSpec``, ``TrainOptions``, ``DemoConfig``) are
generated from it (:mod:`moegrow.cli.options`), so defaults and help live in one place.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

from moegrow import __version__
from moegrow.cli import experiments, families, growth, training
from moegrow.errors import MoegrowError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """Option errors in one line, like every other error of moegrow (subcommands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"moegrow: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="moegrow",
        description="Grow pretrained (MoE) checkpoints in depth and width and keep training them.",
    )
    parser.add_argument("--version", action="version", version=f"moegrow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in (growth, training, experiments, families):
        commands.add_parsers(sub)
    return parser


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or an option error already printed
        return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # kill: clean up like Ctrl-C
    try:
        return args.func(args)
    except MoegrowError as e:
        message = " ".join(str(e).split())  # one line, whatever a wrapped message held
        print(f"moegrow: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("moegrow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        # The user's environment (full or read-only disk, permissions, memory): one line.
        # Anything else is a bug of moegrow and keeps its traceback.
        from moegrow.io.resources import environment_message

        env_message = environment_message(e)
        if env_message is None:
            raise
        print(f"moegrow: error: {env_message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]
