"""VoxTok against the reference implementations with the same weights: encode / decode speed on CPU.

    python benchmarks/speed/reference_speed.py [--threads 1 2] [--batch 16] [--batch-threads 2]
        [--seconds 10] [--repeats 3] [--systems speechtokenizer encodec vocos]

Each system is built by its reference code at the published size with random weights (speed does not
depend on weight values; nothing is downloaded), saved in the reference's own checkpoint layout,
converted with VoxTok's converter (voxtok/convert/), and checked to compute the same thing (codes
equal, audio max |diff|) before both are timed on the same input:
    speechtokenizer  the `speechtokenizer` package's SpeechTokenizer (release config: 64 filters,
                     dimension 1024, BiLSTM, 8 x 1024 codes, 16 kHz) -> `voxtok convert speechtokenizer`
    encodec          the `encodec` package's SEANet encoder and decoder (its 24 kHz sizes: 32 filters,
                     ratios 8,5,4,2, dimension 128, 2-layer LSTM, weight norm; non-causal, since VoxTok's
                     causal SEANet pads with zeros where EnCodec reflects) and residual VQ (8 x 1024 codes,
                     6 kbit/s) -> VoxTok's SEANetEncoder / ResidualVQ / SEANetDecoder (the EnCodec rename rules)
    vocos            the `vocos` package's mel Vocos (100 mels, dim 512, 8 layers, n_fft 1024 / hop 256,
                     centred; decode = mel -> audio) -> `voxtok convert vocos`
Rows: every --threads count with one --seconds clip, and a batch of --batch clips on --batch-threads
threads. Runs alternate (reference, VoxTok, reference, ...) after one warm-up each and the best of
--repeats is kept: other processes may share the CPU. RTF = time / audio duration (per clip in a
batch); "ratio" = VoxTok's time / the reference's (<= 1: VoxTok is as fast or faster).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

# The reference packages still use torch.nn.utils.weight_norm and torch.jit; their warnings are noise here.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)



@dataclass
class System:
    """One reference / VoxTok pair with the same weights: each side encodes audio [B, 1, T] to its own
    code layout (`encode`) and decodes that back to audio (`decode`); `to_voxtok_codes` maps the
    reference's codes onto VoxTok's [B, Q, T'] for the parity check. A decode-only system (a vocoder)
    has `encode` = its features."""

    name: str
    sample_rate: int
    ref_encode: Callable
    ref_decode: Callable
    voxtok_encode: Callable
    voxtok_decode: Callable
    to_voxtok_codes: Callable | None = None  # None: `encode` gives features, compared by value
    decode_only: bool = False


def test_signal(batch: int, samples: int, sample_rate: int) -> torch.Tensor:
    """[batch, 1, samples]: a few tones that glide, plus noise (speech-like level, ~-20 dBFS)."""
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(samples) / sample_rate
    rows = []
    for i in range(batch):
        f0 = 110.0 + 20.0 * i
        tone = sum(torch.sin(2 * math.pi * f0 * k * t * (1 + 0.05 * torch.sin(2 * math.pi * 0.5 * t))) / k
                   for k in (1, 2, 3))
        rows.append(0.1 * tone + 0.01 * torch.randn(samples, generator=gen))
    return torch.stack(rows)[:, None].float()


def fit_codebooks(codebooks, latent: torch.Tensor) -> None:
    """Give EnCodec-style codebooks (residual order) noisy frames of the latent [B, D, T] they
    quantize, marked initialised, so codes spread over the codebook as a trained model's do. The
    noise (one standard deviation) keeps entries apart: no near ties that float rounding could flip."""
    gen = torch.Generator().manual_seed(1)
    residual = latent.transpose(1, 2).reshape(-1, latent.shape[1])
    for codebook in codebooks:
        rows = torch.randint(residual.shape[0], (codebook.embed.shape[0],), generator=gen)
        picked = residual[rows] + residual.std(0) * torch.randn(len(rows), residual.shape[1], generator=gen)
        codebook.embed.copy_(picked)
        codebook.embed_avg.copy_(picked)
        codebook.cluster_size.fill_(1.0)
        codebook.inited.fill_(1.0)
        residual = residual - codebook.decode(codebook.encode(residual))


def speechtokenizer_system(work: Path) -> System:
    """The release-size SpeechTokenizer (package) and its `voxtok convert speechtokenizer` folder."""
    from speechtokenizer import SpeechTokenizer

    import voxtok
    from voxtok.convert.speechtokenizer import convert_speechtokenizer

    config = {"n_filters": 64, "strides": [8, 5, 4, 2], "dimension": 1024, "semantic_dimension": 768,
              "bidirectional": True, "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1,
              "lstm_layers": 2, "activation": "ELU", "codebook_size": 1024, "n_q": 8, "sample_rate": 16000}
    torch.manual_seed(0)
    ref = SpeechTokenizer(config).eval()
    with torch.no_grad():
        fit_codebooks([layer._codebook for layer in ref.quantizer.vq.layers],
                      ref.encoder(test_signal(2, 16000, 16000)))
    folder = work / "speechtokenizer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(ref.state_dict(), folder / "SpeechTokenizer.pt")
    ours = voxtok.load(convert_speechtokenizer(folder / "config.json", folder / "SpeechTokenizer.pt",
                                               work / "speechtokenizer_voxtok"), kind="codec").eval()
    return System("SpeechTokenizer (package)", 16000, lambda wav: ref.encode(wav), lambda codes: ref.decode(codes),
                  lambda wav: ours.encode(wav), lambda codes: ours.decode(codes),
                  to_voxtok_codes=lambda codes: codes.permute(1, 0, 2))


def encodec_system(work: Path) -> System:
    """EnCodec's SEANet + RVQ (package) and VoxTok's SEANet + ResidualVQ with the same weights."""
    from encodec.modules import SEANetDecoder as RefDecoder
    from encodec.modules import SEANetEncoder as RefEncoder
    from encodec.quantization import ResidualVectorQuantizer

    from voxtok.codecs.modules.quantize import ResidualVQ
    from voxtok.codecs.modules.seanet import SEANetDecoder, SEANetEncoder
    from voxtok.convert.encodec_layout import as_voxtok_flags, rvq_rules, seanet_rules
    from voxtok.convert.keymap import load_mapped, rename

    sizes = dict(channels=1, dimension=128, n_filters=32, n_residual_layers=1, ratios=[8, 5, 4, 2], causal=False)
    torch.manual_seed(0)
    ref_enc, ref_dec = RefEncoder(**sizes, lstm=2).eval(), RefDecoder(**sizes, lstm=2).eval()
    ref_q = ResidualVectorQuantizer(dimension=128, n_q=8, bins=1024).eval()
    with torch.no_grad():
        fit_codebooks([layer._codebook for layer in ref_q.vq.layers], ref_enc(test_signal(2, 24000, 24000)))
    saved = work / "encodec.pt"  # the reference's own key names, through a file as a converter reads them
    torch.save({"encoder": ref_enc.state_dict(), "decoder": ref_dec.state_dict(), "quantizer": ref_q.state_dict()}, saved)
    state = torch.load(saved, weights_only=True)
    enc, dec = SEANetEncoder(**sizes, lstm_layers=2).eval(), SEANetDecoder(**sizes, lstm_layers=2).eval()
    quant = ResidualVQ(n_q=8, dim=128, codebook_size=1024).eval()
    for module, part, rules in ((enc, "encoder", seanet_rules("", "")), (dec, "decoder", seanet_rules("", "")),
                                (quant, "quantizer", rvq_rules("", ""))):
        load_mapped(module, as_voxtok_flags(rename(state[part], rules)), saved, f"VoxTok's {part}",
                    original=state[part])
    return System("EnCodec SEANet + RVQ 8x1024 (package)", 24000,
                  lambda wav: ref_q.encode(ref_enc(wav), 75), lambda codes: ref_dec(ref_q.decode(codes)),
                  lambda wav: quant.encode(enc(wav)), lambda codes: dec(quant.decode(codes)),
                  to_voxtok_codes=lambda codes: codes.permute(1, 0, 2))


def vocos_system(work: Path) -> System:
    """The release-size mel Vocos (package) and its `voxtok convert vocos` folder; mel -> audio."""
    from vocos import Vocos

    import voxtok
    from voxtok.convert.vocos import convert_vocos

    config = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100,
                                            "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "center"}},
    }
    folder = work / "vocos"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(0)
    ref = Vocos.from_hparams(str(folder / "config.yaml")).eval()
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    ours = voxtok.load(convert_vocos(folder / "config.yaml", folder / "pytorch_model.bin", work / "vocos_voxtok"))
    ours.eval()
    # Both decode the same mel (the reference's features), so decode times compare like for like.
    features = lambda wav: ref.feature_extractor(wav[:, 0])  # noqa: E731
    return System("Vocos mel vocoder (package)", 24000, features, lambda mel: ref.decode(mel),
                  features, lambda mel: ours(mel), decode_only=True)


def parity(system: System, wav: torch.Tensor) -> str:
    """'codes equal, audio max |diff| X (peak P)' for one input, or the features' max |diff|."""
    ref_codes, codes = system.ref_encode(wav), system.voxtok_encode(wav)
    ref_audio, audio = system.ref_decode(ref_codes), system.voxtok_decode(codes)
    diff = float((audio.reshape(ref_audio.shape) - ref_audio).abs().max())
    peak = float(ref_audio.abs().max())
    if system.to_voxtok_codes is None:
        same = "same features"
    else:
        same = "codes equal" if torch.equal(system.to_voxtok_codes(ref_codes), codes) else "CODES DIFFER"
    return f"{same}, audio max |diff| {diff:.1e} (peak {peak:.2f})"


def race(system: System, wav: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best seconds of reference / VoxTok encode and decode, runs alternating, after a warm-up."""
    ref_codes, codes = system.ref_encode(wav), system.voxtok_encode(wav)
    jobs = {"decode": ((lambda: system.ref_decode(ref_codes)), (lambda: system.voxtok_decode(codes)))}
    if not system.decode_only:
        jobs["encode"] = ((lambda: system.ref_encode(wav)), (lambda: system.voxtok_encode(wav)))
    best = {}
    for op, (ref_job, voxtok_job) in jobs.items():
        ref_job(), voxtok_job()
        for _ in range(repeats):
            for who, job in (("reference", ref_job), ("voxtok", voxtok_job)):
                start = time.perf_counter()
                job()
                best[f"{op} {who}"] = min(best.get(f"{op} {who}", math.inf), time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads, one clip")
    parser.add_argument("--batch", type=int, default=16, help="clips in the batch rows (0: no batch rows)")
    parser.add_argument("--batch-threads", type=int, default=2, help="torch threads for the batch rows")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (best kept)")
    parser.add_argument("--systems", nargs="+", default=["speechtokenizer", "encodec", "vocos"],
                        choices=["speechtokenizer", "encodec", "vocos"])
    args = parser.parse_args()
    makers = {"speechtokenizer": speechtokenizer_system, "encodec": encodec_system, "vocos": vocos_system}
    settings = [(1, t) for t in args.threads] + ([(args.batch, args.batch_threads)] if args.batch else [])
    # Rows are printed as they are measured: a long run that is stopped keeps what it measured.
    print(f"CPU, best of {args.repeats} alternating runs; RTF = time / audio duration (per clip in a batch)\n")
    print("| system | op | input | threads | reference RTF | VoxTok RTF | ratio |\n|---|---|---|---|---|---|---|",
          flush=True)
    checks = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for key in args.systems:
            work = Path(tmp) / key
            work.mkdir()
            with torch.inference_mode(False):
                system = makers[key](work)
            torch.set_num_threads(max(args.threads))
            checks.append(f"- {system.name}: {parity(system, test_signal(1, system.sample_rate, system.sample_rate))}")
            print(checks[-1], file=sys.stderr, flush=True)
            for batch, threads in settings:
                torch.set_num_threads(threads)
                wav = test_signal(batch, int(args.seconds * system.sample_rate), system.sample_rate)
                best = race(system, wav, args.repeats)
                audio = args.seconds * batch
                for op in ("encode", "decode"):
                    if f"{op} voxtok" in best:
                        ref, ours = best[f"{op} reference"] / audio, best[f"{op} voxtok"] / audio
                        print(f"| {system.name} | {op} | {batch} x {args.seconds:g} s | {threads} | "
                              f"{ref:.4f} | {ours:.4f} | {ours / ref:.2f} |", flush=True)
    print("\nSame weights, same outputs:\n" + "\n".join(checks))


if __name__ == "__main__":
    main()
