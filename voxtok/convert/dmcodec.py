"""`voxtok convert dmcodec`: a DM-Codec repository checkpoint -> a VoxTok DM-Codec folder.

The DM-Codec repository (mubtasimahasan/DM-Codec) trains SpeechTokenizer's model unchanged (its
`codec/model.py` is SpeechTokenizer's, renamed), with ONE `transform` scored against both the LM
(BERT) and the speech (HuBERT) teacher, and has no checkpoint layout of its own. Its trainer saves
  Model_best_dev.pt   the generator's state_dict (SpeechTokenizer.pt's layout), and
  ModelTrainer_*.pt   {generator, discriminators, optim_g, optim_d, scheduler_g, scheduler_d, ...};
both are read (the generator only: its discriminators are not converted). With `config.json` they
become VoxTok's `dmcodec` with `shared_head: true`: the one head is the repository's `transform`,
scored against each teacher given by --teachers on RVQ layer --layer (the repository's --layer,
counted from 1). Everything else is the SpeechTokenizer converter's (voxtok/convert/speechtokenizer.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from voxtok.cli.common import command
from voxtok.convert.keymap import source_note
from voxtok.convert.speechtokenizer import convert_release, release_arguments, report
from voxtok.errors import BadConfigError

TEACHER_CHOICES = ("lm", "sm")


def parse_teachers(text: str) -> tuple[str, ...]:
    """"lm,sm" -> ("lm", "sm"): the teachers the checkpoint was distilled from, each once."""
    teachers = tuple(t.strip() for t in text.split(",") if t.strip())
    if not teachers or any(t not in TEACHER_CHOICES for t in teachers) or len(set(teachers)) != len(teachers):
        raise BadConfigError(f"--teachers must list some of {', '.join(TEACHER_CHOICES)} once each, got {text!r}")
    return teachers


def convert_dmcodec(config_path: str | os.PathLike, checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike,
                    teachers: Sequence[str] = TEACHER_CHOICES, layer: int = 1) -> Path:
    """Write the VoxTok checkpoint folder of a DM-Codec repository checkpoint; returns `out_dir`.

    teachers: the teachers it was distilled from ("lm", "sm": the LM_SM checkpoint; "lm": the LM
    one); with both, the one `transform` becomes a shared head. layer: the 1-based RVQ layer the
    head reads. A checkpoint that does not fit is a one-line BadConfigError and nothing is written.
    """
    codec = convert_release(config_path, checkpoint_path, teachers=tuple(teachers), layer=layer,
                            what="a DM-Codec checkpoint (Model_best_dev.pt or ModelTrainer_*.pt)",
                            wrappers=("generator", "state_dict"))
    return codec.save_pretrained(out_dir, extra=source_note("dmcodec", config_path, checkpoint_path))


def _run(args: argparse.Namespace) -> int:
    return report(convert_dmcodec(args.config, args.checkpoint, args.output, parse_teachers(args.teachers), args.layer))


def add_command(subparsers) -> None:
    """`voxtok convert dmcodec --config config.json --checkpoint Model_best_dev.pt -o DIR`."""
    p = command(subparsers, "dmcodec",
                "DM-Codec repository config.json + Model_best_dev.pt (or ModelTrainer_*.pt) -> a VoxTok dmcodec "
                "folder (its one projection becomes a head shared by the teachers)",
                "voxtok convert dmcodec --config DM-Codec/config.json "
                "--checkpoint saved_files/combined/Model_best_dev.pt -o exp/dmcodec_lm_sm", _run)
    release_arguments(p, "the repository's config.json the checkpoint was trained with",
                      "Model_best_dev.pt (generator state_dict) or ModelTrainer_*.pt (training package)")
    p.add_argument("--teachers", default="lm,sm",
                   help="teachers it was distilled from: lm,sm (trainer --teacher combined*) or lm (llm) or sm (hubert)")
    p.add_argument("--layer", type=int, default=1, help="RVQ layer (from 1) its projection reads; trainer --layer + 1")
