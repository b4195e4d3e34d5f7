"""`voxtok data ...`: Kaldi data dirs and corpora."""

from __future__ import annotations

import argparse

from voxtok.cli.common import command as _command


def _data_validate(args: argparse.Namespace) -> int:
    from voxtok.data.kaldi import validate_data_dir

    problems = validate_data_dir(args.dir)
    errors = [p for p in problems if not p.startswith("warning:")]
    for p in problems:
        print(p)
    print(f"{args.dir}: {'OK' if not errors else f'{len(errors)} problem(s)'}"
          + (f", {len(problems) - len(errors)} warning(s)" if len(problems) > len(errors) else ""))
    return 1 if errors else 0


def _data_fix(args: argparse.Namespace) -> int:
    from voxtok.data.kaldi import fix_data_dir

    report = fix_data_dir(args.dir, args.output)
    print(report.summary())
    return 0


def _data_prep_libritts(args: argparse.Namespace) -> int:
    from voxtok.data.libritts import prepare_splits

    summary = prepare_splits(args.root, args.out, subsets=args.subsets)
    for split, info in summary.items():
        print(f"{split}: " + "; ".join(r.summary() for r in info))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from voxtok.data.synth import SynthConfig, synthesize_corpus

    config = SynthConfig(seed=args.seed, num_speakers=args.num_speakers, utts_per_speaker=args.utts,
                         num_dev_speakers=args.dev_speakers, num_test_speakers=args.test_speakers,
                         hours=args.hours)
    print(synthesize_corpus(args.out, config, nj=args.nj))
    return 0


def add_commands(sub) -> None:
    """`voxtok data ...`: Kaldi data dirs and corpora."""
    data = sub.add_parser("data", help="Kaldi data dirs and corpora",
                          description="Kaldi data dirs and corpora").add_subparsers(dest="data_cmd", required=True)
    p = _command(data, "validate", "check a Kaldi data dir (exit 1 when it has problems)",
                 "voxtok data validate data/train", _data_validate)
    p.add_argument("dir")
    p = _command(data, "fix", "sort a data dir and drop inconsistent utterances (originals kept in .backup/)",
                 "voxtok data fix data/train", _data_fix)
    p.add_argument("dir")
    p.add_argument("-o", "--output", default=None, help="write the fixed dir here instead of in place")
    p = _command(data, "prep-libritts", "LibriTTS tree -> data dirs <out>/{train,dev,test}",
                 "voxtok data prep-libritts /corpora/LibriTTS data", _data_prep_libritts)
    p.add_argument("root")
    p.add_argument("out")
    p.add_argument("--subsets", nargs="*", default=None, help="LibriTTS subsets (default: all found)")
    p = _command(data, "synth", "synthesize the multi-speaker mini corpus in LibriTTS layout",
                 "voxtok data synth downloads/mini_libritts --num-speakers 24 --utts 30 --nj 2", _data_synth)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-speakers", type=int, default=24)
    p.add_argument("--utts", type=int, default=30, help="utterances per speaker")
    p.add_argument("--dev-speakers", type=int, default=2)
    p.add_argument("--test-speakers", type=int, default=4)
    p.add_argument("--hours", type=float, default=None, help="target size; overrides --utts")
    p.add_argument("--nj", type=int, default=2)


