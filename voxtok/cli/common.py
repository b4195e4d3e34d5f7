"""Shared pieces of the `voxtok` command groups: the help formatter and `command()`."""

from __future__ import annotations

import argparse
from typing import Callable

Handler = Callable[[argparse.Namespace], "int | None"]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in epilogs as written and shows defaults."""


def command(sub, name: str, help_text: str, example: str, handler: Handler) -> argparse.ArgumentParser:
    """Add subcommand `name` with its help, a usage example in the epilog, and its handler."""
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=f"example:\n  {example}", formatter_class=_Formatter)
    parser.set_defaults(handler=handler)
    return parser


def group(sub, name: str, help_text: str):
    """Add a command group (`voxtok NAME ...`); returns its subparsers."""
    return sub.add_parser(name, help=help_text, description=help_text).add_subparsers(
        dest=f"{name}_cmd", required=True)
