"""`voxtok bench ...`: the DASB-style tokenizer benchmark and its report."""

from __future__ import annotations

import argparse

from voxtok.cli.common import command, group
from voxtok.device import add_device_options

SYSTEMS_HELP = """system specs (KIND[:PATH][@key=value,...]):
  identity                          the original audio (ground truth)
  codec2_700c codec2_1200 codec2_3200 opus_6k opus_12k
                                    classical codecs through their command-line tools
  vtk:DIR[@n_q=N]                   a VoxTok checkpoint folder with its first N codebooks
  encodec:FILE[@bw=KBPS]            EnCodec from a local state-dict file (bw 1.5/3/6/12/24)
  dac:FILE[@n_q=N]                  Descript Audio Codec weights file (package descript-audio-codec)
  speechtokenizer:DIR[@n_q=N]       SpeechTokenizer release folder (config.json + SpeechTokenizer.pt)
  snac:DIR                          SNAC folder (config.json + pytorch_model.bin)
  hf:DIR[@n_q=N | @bw=KBPS]         transformers codec folder (EncodecModel, DacModel, MimiModel, XcodecModel)
  mimi:DIR[@n_q=N]                  Mimi through transformers' MimiModel
  ssl_kmeans:DIR@layer=N[@k=K]      discrete SSL units: a transformers HuBERT/WavLM/wav2vec2 folder +
                                    k-means (K clusters, default 500) fitted on --train; layer=3+7 gives
                                    one codebook per layer; encode only (no reconstruction metrics)
  any spec also takes name=LABEL, e.g. vtk:exp/a/model@n_q=2,name=a-2q
Nothing is downloaded: every PATH is local."""


def _bench_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from voxtok.bench.lm import LMConfig
    from voxtok.bench.runner import ALL_RECON_METRICS, BenchConfig, run_benchmark

    from voxtok.bench.probes import probe_preset

    probe = probe_preset(args.probe_preset)
    probe = replace(probe, asr_steps=args.probe_steps or probe.asr_steps,
                    speaker_steps=args.speaker_steps or probe.speaker_steps)
    lm = LMConfig()
    lm = replace(lm, steps=args.lm_steps or lm.steps)
    cfg = BenchConfig(test_dir=args.data, train_dir=args.train, out_dir=args.output, systems=args.systems,
                      nj=args.nj, threads=args.threads, device=args.device, dtype=args.dtype, ngpu=args.ngpu,
                      recon_nj=args.recon_nj, max_test_utts=args.max_test,
                      max_train_utts=args.max_train, asr=not args.no_asr, probes=not args.no_probes,
                      lm=not args.no_lm, swuggy_words=args.swuggy_words, probe=probe, lm_model=lm,
                      progress=not args.quiet, metrics=args.metrics or list(ALL_RECON_METRICS),
                      speaker_encoder=args.speaker_encoder, utmos_checkpoint=args.utmos)
    rows = run_benchmark(cfg)
    failed = [r for r in rows if r.get("status") != "ok"]
    for r in failed:
        print(f"failed: {r['system']}: {r.get('error')}")
    print(f"{len(rows) - len(failed)} of {len(rows)} systems evaluated -> {args.output}/report.md")
    return 0


def _bench_report(args: argparse.Namespace) -> int:
    from voxtok.bench.report import load_results, write_report

    rows, meta = load_results(args.dir)
    path = write_report(rows, args.dir, meta)
    print(path.read_text() if args.print else f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def _bench_discover(args: argparse.Namespace) -> int:
    import sys

    from voxtok.bench.discover import discover_systems

    specs, skipped = discover_systems(args.dir, args.ssl_layer, args.ssl_k)
    for name, reason in skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print("\n".join(specs))
    return 0


def add_commands(sub) -> None:
    """`voxtok bench run|report|discover`."""
    bench = group(sub, "bench", "compare tokenizers and codecs (DASB-style benchmark)")
    p = command(bench, "run",
                "evaluate systems on a test data dir: reconstruction, ASR, token statistics, probes, token LM",
                "voxtok bench run --data data/test --train data/train --systems identity codec2_1200 "
                "opus_6k vtk:exp/mini/codec_wavtokenizer/model@n_q=1 -o exp/bench --nj 2\n\n" + SYSTEMS_HELP,
                _bench_run)
    p.add_argument("--data", required=True, help="test data dir (Kaldi: wav.scp, text, utt2spk)")
    p.add_argument("--train", default=None, help="training data dir for the probes and the token LM")
    p.add_argument("--systems", nargs="+", required=True, metavar="SPEC", help="systems to compare (see below)")
    p.add_argument("-o", "--output", required=True, help="output folder (results are cached there)")
    p.add_argument("--nj", type=int, default=1, help="systems evaluated in parallel")
    p.add_argument("--threads", type=int, default=None, help="torch/Whisper threads per process; unset: cores / nj")
    add_device_options(p)
    p.add_argument("--ngpu", type=int, default=0, help="split each system's reconstruction over N GPUs (one worker each)")
    p.add_argument("--recon-nj", type=int, default=1, help="else: CPU worker processes per system's reconstruction")
    p.add_argument("--max-test", type=int, default=None, help="use at most N test utterances")
    p.add_argument("--max-train", type=int, default=None, help="use at most N training utterances")
    p.add_argument("--probe-steps", type=int, default=None, help="ASR probe training steps")
    p.add_argument("--speaker-steps", type=int, default=None, help="speaker probe training steps")
    p.add_argument("--lm-steps", type=int, default=None, help="token LM training steps")
    p.add_argument("--swuggy-words", type=int, default=40, help="word / pseudo-word pairs (0: skip)")
    p.add_argument("--no-asr", action="store_true", help="skip Whisper (WER/dWER)")
    p.add_argument("--no-probes", action="store_true", help="skip the ASR and speaker probes")
    p.add_argument("--no-lm", action="store_true", help="skip the token LM and sWUGGY")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help="reconstruction metrics (default: all but utmos): pesq_wb pesq_nb stoi si_sdr "
                        "mel_distance speaker_similarity dnsmos utmos")
    p.add_argument("--probe-preset", default="quick", choices=["quick", "dasb"],
                   help="probe sizes: quick (minutes on CPU) or dasb (DASB's BiLSTM/ECAPA sizes and epochs)")
    p.add_argument("--speaker-encoder", default="resemblyzer",
                   help="speaker-similarity encoder: resemblyzer or wavlm:DIR (a WavLMForXVector folder)")
    p.add_argument("--utmos", default=None, metavar="FILE",
                   help="UTMOS TorchScript checkpoint (utmos_scripted.pt); needed by --metrics utmos")
    p = command(bench, "report", "re-create the report (CSV, tables, plots, report.md/html) from a run's results",
                "voxtok bench report exp/bench", _bench_report)
    p.add_argument("dir", help="output folder of `voxtok bench run`")
    p.add_argument("--print", action="store_true", help="print report.md")
    p = command(bench, "discover", "print a system spec for each published checkpoint found in DIR (one sub-folder each)",
                "voxtok bench discover ckpt/published --ssl-k 500", _bench_discover)
    p.add_argument("dir", help="folder with one sub-folder per checkpoint")
    p.add_argument("--ssl-layer", default=None, help="layer(s) of SSL models (default: half their depth)")
    p.add_argument("--ssl-k", type=int, default=None, help="k-means clusters of SSL models (default 500)")
