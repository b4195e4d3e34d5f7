"""The `voxtok` console script.

    voxtok data validate data/train
    voxtok data fix data/train
    voxtok data prep-libritts /corpora/LibriTTS data
    voxtok data synth downloads/mini_libritts --num-speakers 24 --utts 30
    voxtok codec encode data/test/wav.scp -o tokens/ --model exp/mini/codec/model
    voxtok codec decode tokens/utt1.vtk -o utt1.wav --model exp/mini/codec/model

Each command group lives in its own `add_*_commands` function; heavy imports happen inside the
handlers so `voxtok --help` stays fast. A VoxTokError becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from voxtok.errors import VoxTokError

Handler = Callable[[argparse.Namespace], int | None]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in epilogs as written and shows defaults."""


def _command(sub, name: str, help_text: str, example: str, handler: Handler) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=f"example:\n  {example}", formatter_class=_Formatter)
    parser.set_defaults(handler=handler)
    return parser


# ----------------------------------------------------------------------------- data


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


def add_data_commands(sub) -> None:
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


# ----------------------------------------------------------------------------- codec


def _codec_encode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voxtok.codecs.tokenize import collect_inputs, encode_files_parallel

    items = collect_inputs(args.inputs)
    out = Path(args.output)
    single_file = out.suffix == ".vtk"
    if single_file and len(items) != 1:
        raise VoxTokError(f"-o {out} names one .vtk file but there are {len(items)} inputs; give a folder")
    out_dir = out.parent if single_file else out
    if single_file:
        items = [(out.stem, items[0][1])]
    report = encode_files_parallel(args.model, items, out_dir, n_q=args.n_q, nj=args.nj,
                                   max_batch_seconds=args.batch_seconds)
    for utt, reason in sorted(report.failed.items()):
        print(f"error: {reason}", file=sys.stderr)
    print(report.summary() + f" -> {out}")
    return 2 if report.failed else 0


def _codec_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from voxtok.audio import save_audio
    from voxtok.codecs.base import load_codec

    codec = load_codec(args.model)
    out = Path(args.output)
    single_file = len(args.tokens) == 1 and out.suffix.lower() in (".wav", ".flac", ".ogg")
    for token_file in args.tokens:
        codes, header = codec.load_tokens(token_file)
        with torch.inference_mode():
            wav = codec.decode(codes[None], header.num_samples)[0]
        target = out if single_file else out / (Path(token_file).stem + ".wav")
        save_audio(target, wav, codec.sample_rate)
        print(f"{token_file} -> {target} ({header.num_samples / codec.sample_rate:.2f} s)")
    return 0


def _codec_info(args: argparse.Namespace) -> int:
    from voxtok.codecs.tokenfile import read_tokens

    for token_file in args.tokens:
        codes, h = read_tokens(token_file)
        seconds = h.num_samples / h.sample_rate
        bits = h.n_q * h.num_frames * (h.codebook_size - 1).bit_length()
        print(f"{token_file}: codec={h.codec} checkpoint={h.checkpoint_hash} format=v{h.format_version} "
              f"sample_rate={h.sample_rate} frame_rate={h.frame_rate:g} n_q={h.n_q} "
              f"codebook_size={h.codebook_size} frames={h.num_frames} duration={seconds:.2f}s "
              f"bitrate={bits / max(seconds, 1e-9):.0f}bit/s distinct_codes={int(codes.unique().numel())}")
    return 0


def add_codec_commands(sub) -> None:
    """`voxtok codec ...`: encode audio to token files and back."""
    codec = sub.add_parser("codec", help="encode/decode audio with a trained codec",
                           description="encode/decode audio with a trained codec").add_subparsers(dest="codec_cmd", required=True)
    p = _command(codec, "encode", "audio files, folders or a wav.scp -> .vtk token files (batched, padded)",
                 "voxtok codec encode data/test/wav.scp -o tokens/ --model exp/mini/codec/model --nj 2", _codec_encode)
    p.add_argument("inputs", nargs="+", help="audio files, folders or wav.scp files")
    p.add_argument("-o", "--output", required=True, help="a folder, or X.vtk for a single input")
    p.add_argument("--model", required=True, help="codec checkpoint folder (save_pretrained output)")
    p.add_argument("--n-q", type=int, default=None, help="keep the first N codebooks (default all)")
    p.add_argument("--nj", type=int, default=1, help="parallel processes")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch")
    p = _command(codec, "decode", ".vtk token files -> audio", 
                 "voxtok codec decode tokens/utt1.vtk -o utt1.wav --model exp/mini/codec/model", _codec_decode)
    p.add_argument("tokens", nargs="+", help=".vtk files")
    p.add_argument("-o", "--output", required=True, help="OUT.wav for one file, else a folder")
    p.add_argument("--model", required=True, help="the codec checkpoint the tokens were made with")
    p = _command(codec, "info", "show a token file's header and statistics", "voxtok codec info tokens/utt1.vtk",
                 _codec_info)
    p.add_argument("tokens", nargs="+", help=".vtk files")


# ----------------------------------------------------------------------------- entry point

COMMAND_GROUPS: list[Callable] = [add_data_commands, add_codec_commands]


def build_parser() -> argparse.ArgumentParser:
    """The full `voxtok` argument parser."""
    parser = argparse.ArgumentParser(
        prog="voxtok", formatter_class=_Formatter,
        description="VoxTok: speech tokenizers, token TTS and tokenizer benchmarks.",
        epilog="example:\n  voxtok data validate data/train\n  voxtok <command> --help",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
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


if __name__ == "__main__":
    sys.exit(main())
