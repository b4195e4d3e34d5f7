"""The `voxtok` console script.

    voxtok data validate data/train
    voxtok data fix data/train
    voxtok data prep-libritts /corpora/LibriTTS data
    voxtok data synth downloads/mini_libritts --num-speakers 24 --utts 30
    voxtok codec encode data/test/wav.scp -o tokens/ --model exp/mini/codec/model
    voxtok codec decode tokens/utt1.vtk -o utt1.wav --model exp/mini/codec/model

Each command group is a module of this package with an `add_commands(subparsers)` function
(listed in COMMAND_GROUPS); heavy imports happen inside the
handlers so `voxtok --help` stays fast. A VoxTokError becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from voxtok.cli.common import _Formatter
from voxtok.errors import VoxTokError


COMMAND_GROUPS = ["data", "codec", "convert", "asr", "tts", "bench"]  # modules of voxtok.cli, in --help order


def build_parser() -> argparse.ArgumentParser:
    """The full `voxtok` argument parser."""
    parser = argparse.ArgumentParser(
        prog="voxtok", formatter_class=_Formatter,
        description="VoxTok: speech tokenizers, token TTS and tokenizer benchmarks.",
        epilog="example:\n  voxtok data validate data/train\n  voxtok <command> --help",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_GROUPS:
        importlib.import_module(f"voxtok.cli.{name}").add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a VoxTokError)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except VoxTokError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `voxtok tts speakers | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so Python's exit-time flush of stdout does not fail again
        return 0

