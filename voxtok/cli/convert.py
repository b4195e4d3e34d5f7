"""`voxtok convert KIND ...`: published checkpoints -> VoxTok checkpoint folders.

Each kind is a module of voxtok.convert (listed in `voxtok.convert.CONVERTERS`) that adds its own
subcommand; heavy imports happen inside the handlers so `voxtok --help` stays fast.
"""

from __future__ import annotations

import importlib

from voxtok.cli.common import group
from voxtok.convert import CONVERTERS


def add_commands(sub) -> None:
    """Register `voxtok convert` and one subcommand per converter kind."""
    kinds = group(sub, "convert", "convert a published checkpoint into a VoxTok checkpoint folder")
    for module in CONVERTERS.values():
        importlib.import_module(module).add_command(kinds)
