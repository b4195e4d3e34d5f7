"""`voxtok codec ...`: encode audio to .vtk token files and back."""

from __future__ import annotations

import argparse
import sys

from voxtok.cli.common import command as _command
from voxtok.device import add_device_options
from voxtok.errors import VoxTokError


def _codec_encode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voxtok.codecs.tokenize import EncodeJob, collect_inputs, encode_corpus
    from voxtok.device import worker_devices

    if args.nj < 1 or args.ngpu < 0:
        raise VoxTokError(f"--nj must be >= 1 and --ngpu >= 0 (got --nj {args.nj} --ngpu {args.ngpu})")
    if args.batch_size is not None and args.batch_size < 1:
        raise VoxTokError(f"--batch-size must be >= 1 (got {args.batch_size})")
    devices = worker_devices(args.ngpu, args.nj, args.device)  # an absent GPU: one line, before any work
    items = collect_inputs(args.inputs)
    out = Path(args.output)
    single_file = out.suffix == ".vtk"
    if single_file and len(items) != 1:
        raise VoxTokError(f"-o {out} names one .vtk file but there are {len(items)} inputs; give a folder")
    out_dir = out.parent if single_file else out
    if single_file:
        items = [(out.stem, items[0][1])]
    job = EncodeJob(str(args.model), str(out_dir), n_q=args.n_q, dtype=args.dtype, batch_seconds=args.batch_seconds,
                    batch_items=args.batch_size)
    report = encode_corpus(job, items, devices, overwrite=args.overwrite)
    for utt, reason in sorted(report.failed.items()):
        print(f"error: {reason}", file=sys.stderr)
    hint = " (--overwrite to redo them)" if report.skipped else ""
    print(report.summary() + hint + f" -> {out}")
    return 2 if report.failed else 0


def _codec_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voxtok.audio import save_audio
    from voxtok.codecs.tokenize import decode_stream
    from voxtok.device import resolve_device, resolve_dtype
    from voxtok.registry import load

    if args.batch_size < 1:
        raise VoxTokError(f"--batch-size must be >= 1 (got {args.batch_size})")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    codec = load(args.model, map_location=device, kind="codec")
    out = Path(args.output)
    single_file = len(args.tokens) == 1 and out.suffix.lower() in (".wav", ".flac", ".ogg")
    # Every file is read and checked against the codec before any audio is written.
    entries = []
    for index, token_file in enumerate(args.tokens):
        codes, header = codec.load_tokens(token_file)
        entries.append((index, codes, header.num_samples))
    for index, wav in decode_stream(codec, entries, args.batch_size, dtype):
        token_file = args.tokens[index]
        target = out if single_file else out / (Path(token_file).stem + ".wav")
        save_audio(target, wav, codec.sample_rate)
        print(f"{token_file} -> {target} ({wav.shape[-1] / codec.sample_rate:.2f} s)")
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


def add_commands(sub) -> None:
    """`voxtok codec ...`: encode audio to token files and back."""
    codec = sub.add_parser("codec", help="encode/decode audio with a trained codec",
                           description="encode/decode audio with a trained codec").add_subparsers(dest="codec_cmd", required=True)
    p = _command(codec, "encode", "audio files, folders or a wav.scp -> .vtk token files (batched, padded; "
                 "a rerun skips the files already written)",
                 "voxtok codec encode data/test/wav.scp -o tokens/ --model exp/mini/codec/model --nj 2\n"
                 "  voxtok codec encode data/train -o tokens/ --model exp/mini/codec/model --ngpu 4 --dtype bfloat16",
                 _codec_encode)
    p.add_argument("inputs", nargs="+", help="audio files, folders, data dirs or wav.scp files")
    p.add_argument("-o", "--output", required=True, help="a folder, or X.vtk for a single input")
    p.add_argument("--model", required=True, help="codec checkpoint folder (save_pretrained output)")
    p.add_argument("--n-q", type=int, default=None, help="keep the first N codebooks (default all)")
    p.add_argument("--nj", type=int, default=1, help="worker processes on --device (CPU: one torch thread each)")
    p.add_argument("--ngpu", type=int, default=0, help="one worker per GPU cuda:0..N-1 (instead of --device/--nj)")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch")
    p.add_argument("--batch-size", type=int, default=None, help="at most N utterances per batch (none: "
                   "only --batch-seconds limits)")
    p.add_argument("--overwrite", action="store_true", help="re-encode inputs whose .vtk file already exists")
    add_device_options(p)
    p = _command(codec, "decode", ".vtk token files -> audio",
                 "voxtok codec decode tokens/utt1.vtk -o utt1.wav --model exp/mini/codec/model", _codec_decode)
    p.add_argument("tokens", nargs="+", help=".vtk files")
    p.add_argument("-o", "--output", required=True, help="OUT.wav for one file, else a folder")
    p.add_argument("--model", required=True, help="the codec checkpoint the tokens were made with")
    p.add_argument("--batch-size", type=int, default=1, help="token files decoded together (padded; >1 is faster "
                   "but the last ~0.1 s of the shorter files differ slightly)")
    add_device_options(p)
    p = _command(codec, "info", "show a token file's header and statistics", "voxtok codec info tokens/utt1.vtk",
                 _codec_info)
    p.add_argument("tokens", nargs="+", help=".vtk files")


