"""Encode / decode real-time factor of codecs on CPU, 1 and 2 threads, for 10 s of audio.

    python benchmarks/speed/codec_speed.py [--seconds 10] [--repeats 3] [--threads 1 2]

Systems: VoxTok WavTokenizer at the published sizes (75 and 40 tokens/s), and the EnCodec (24 kHz,
1.5 kbit/s) and Vocos (mel, 24 kHz) architectures built from their own packages with random
weights (speed does not depend on weight values; no checkpoint is downloaded). RTF = processing
time / audio duration (lower is faster); the best of `--repeats` runs is reported.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from voxtok.recipes import CONFIG_DIR
from voxtok.registry import build

CONFIGS = CONFIG_DIR / "codec"


def best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` calls of fn() after one warm-up call, in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def voxtok_system(name: str):
    """(encode, decode) closures for a VoxTok codec config at 24 kHz."""
    codec = build("codec", "wavtokenizer", yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]).eval()

    def encode(wav):
        return codec.encode(wav)

    return encode, lambda codes: codec.decode(codes)


def encodec_system():
    """EnCodec 24 kHz from the `encodec` package, random weights, 1.5 kbit/s."""
    from encodec import EncodecModel

    model = EncodecModel._get_model(target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], sample_rate=24000,
                                    channels=1, causal=True, model_norm="weight_norm", audio_normalize=False,
                                    name="encodec_24khz").eval()
    model.set_target_bandwidth(1.5)
    return (lambda wav: model.encode(wav)), (lambda frames: model.decode(frames))


def vocos_system():
    """Vocos (mel -> waveform) from the `vocos` package, random weights; 'encode' = mel features."""
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone
    from vocos.pretrained import Vocos

    model = Vocos(MelSpectrogramFeatures(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100),
                  VocosBackbone(input_channels=100, dim=512, intermediate_dim=1536, num_layers=8),
                  ISTFTHead(dim=512, n_fft=1024, hop_length=256)).eval()
    return (lambda wav: model.feature_extractor(wav[:, 0])), (lambda mel: model.decode(mel))


SYSTEMS = {
    "voxtok wavtokenizer 75 tok/s (paper size)": lambda: voxtok_system("wavtokenizer_75_paper"),
    "voxtok wavtokenizer 40 tok/s (paper size)": lambda: voxtok_system("wavtokenizer_40_paper"),
    "encodec 24 kHz 1.5 kbit/s (package arch)": encodec_system,
    "vocos mel 24 kHz (package arch)": vocos_system,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.manual_seed(0)
    wav = torch.randn(1, 1, int(24000 * args.seconds)) * 0.1
    rows = []
    for name, make in SYSTEMS.items():
        encode, decode = make()
        for threads in args.threads:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                codes = encode(wav)
                enc = best_time(lambda: encode(wav), args.repeats)
                dec = best_time(lambda: decode(codes), args.repeats)
            rows.append((name, threads, enc / args.seconds, dec / args.seconds))
    print(f"\n{args.seconds:g} s of 24 kHz audio, CPU, best of {args.repeats}; RTF = time / duration\n")
    print("| system | threads | encode RTF | decode RTF |\n|---|---|---|---|")
    for name, threads, enc, dec in rows:
        print(f"| {name} | {threads} | {enc:.4f} | {dec:.4f} |")


if __name__ == "__main__":
    main()
