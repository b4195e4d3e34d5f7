"""`voxtok convert vocos`: the published Vocos mel vocoder -> a VoxTok mel vocoder folder.

Takes the release's two files, config.yaml (feature_extractor / backbone / head, each a
{class_path, init_args} block; a Lightning training config with them under `model.init_args` also
works) and pytorch_model.bin, and writes a `tts/mel_vocoder` checkpoint (`voxtok.tts.vocoder`):
`voxtok.load(OUT)(mel [B, n_mels, T'])` decodes like `Vocos.decode`, and `.mel(wav)` computes
Vocos's `MelSpectrogramFeatures` (the "vocos" MelConfig preset: torchaudio-style magnitude mel,
HTK scale, no norm, log floor 1e-7; centred when the release's padding is "center").

Vocos's backbone and ISTFT head are VoxTok's `VocosBackbone` / `ISTFTHead` under the same names, so
the key map is the identity; the buffers Vocos stores (STFT windows, the mel filterbank) are
rebuilt by VoxTok and only checked. Only the mel model converts: the EnCodec-feature model (codes
-> EnCodec embeddings -> Vocos) and the IMDCT / ResNet variants are refused in one line, decided
from config.yaml and from the checkpoint's keys.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

from voxtok.cli.common import command
from voxtok.convert.class_config import check_init_args, class_block, read_class_blocks
from voxtok.errors import BadConfigError

MEL_FEATURES = "vocos.feature_extractors.MelSpectrogramFeatures"
ENCODEC_FEATURES = "vocos.feature_extractors.EncodecFeatures"
BACKBONE = "vocos.models.VocosBackbone"
HEAD = "vocos.heads.ISTFTHead"
# Vocos's constructor defaults, for init_args a config leaves out.
MEL_DEFAULTS = {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"}
BACKBONE_ARGS = ("input_channels", "dim", "intermediate_dim", "num_layers", "layer_scale_init_value",
                 "adanorm_num_embeddings")
HEAD_ARGS = ("dim", "n_fft", "hop_length", "padding")
# Vocos key -> VoxTok key (regex, replacement); None drops a buffer VoxTok rebuilds itself.
RULES = (
    (r"feature_extractor\.mel_spec\.(spectrogram\.window|mel_scale\.fb)", None),
    (r"head\.istft\.window", None),
    # A Lightning training checkpoint also holds the discriminators and the loss's mel: not the vocoder.
    (r"(multiperioddisc|multiresddisc|melspec_loss)\..*", None),
)
ENCODEC_VARIANT = ("it is the Vocos EnCodec-feature model ({why}), which is not supported: only the Vocos "
                   "mel model (MelSpectrogramFeatures) converts")
CONFIG_FILE = "a Vocos config.yaml"
CHECKPOINT_FILE = "a Vocos pytorch_model.bin"


def read_vocos_config(path: str | os.PathLike) -> dict[str, Any]:
    """The release's config.yaml -> VoxTok mel vocoder config {mel, backbone, head}.

    Refuses (one line) the EnCodec-feature model, other backbones / heads, AdaLayerNorm
    conditioning, and settings whose parts disagree (backbone input vs n_mels, head hop vs mel hop).
    """
    _, blocks = read_class_blocks(path, CONFIG_FILE)
    feature, backbone, head = (class_block(blocks, name, CONFIG_FILE, path)
                               for name in ("feature_extractor", "backbone", "head"))
    if feature[0] == ENCODEC_FEATURES:
        raise BadConfigError(ENCODEC_VARIANT.format(why=f"feature_extractor {ENCODEC_FEATURES}"), path)
    _expect_class("feature_extractor", feature[0], MEL_FEATURES, path)
    _expect_class("backbone", backbone[0], BACKBONE, path)
    _expect_class("head", head[0], HEAD, path)
    mel = {**MEL_DEFAULTS, **check_init_args("feature_extractor", feature[1], MEL_DEFAULTS, path)}
    trunk = check_init_args("backbone", backbone[1], BACKBONE_ARGS, path)
    out = {"padding": "same", **check_init_args("head", head[1], HEAD_ARGS, path)}
    missing = [f"backbone.{k}" for k in ("input_channels", "dim", "intermediate_dim", "num_layers") if k not in trunk]
    missing += [f"head.{k}" for k in ("dim", "n_fft", "hop_length") if k not in out]
    if missing:
        raise BadConfigError(f"not {CONFIG_FILE}: init_args lack {missing}", path)
    if trunk.get("adanorm_num_embeddings"):
        raise BadConfigError(ENCODEC_VARIANT.format(why="backbone conditioned on the bandwidth by AdaLayerNorm, "
                                                    "adanorm_num_embeddings"), path)
    for name, got, want in (("backbone input_channels", trunk["input_channels"], mel["n_mels"]),
                            ("head dim", out["dim"], trunk["dim"]),
                            ("head hop_length", out["hop_length"], mel["hop_length"])):
        if got != want:
            raise BadConfigError(f"config parts disagree: {name} is {got}, expected {want}", path)
    if mel["padding"] not in ("center", "same") or out["padding"] not in ("center", "same"):
        raise BadConfigError(f"padding must be 'center' or 'same' (feature_extractor {mel['padding']!r}, "
                             f"head {out['padding']!r})", path)
    if out["padding"] == "same" and (out["n_fft"] - out["hop_length"]) % 2:
        # Vocos trims (n_fft - hop) // 2 on both sides, VoxTok the odd sample on the right.
        raise BadConfigError(f"head n_fft - hop_length must be even with 'same' padding, got "
                             f"{out['n_fft']} - {out['hop_length']}", path)
    # Vocos turns a layer scale of 0 / None into 1 / num_layers; a negative one means none.
    scale = trunk.get("layer_scale_init_value") or 1.0 / trunk["num_layers"]
    return {
        "mel": {"preset": "vocos", "sample_rate": mel["sample_rate"], "n_fft": mel["n_fft"],
                "hop_length": mel["hop_length"], "n_mels": mel["n_mels"], "center": mel["padding"] == "center"},
        "backbone": {"dim": trunk["dim"], "intermediate_dim": trunk["intermediate_dim"],
                     "num_layers": trunk["num_layers"], "layer_scale_init_value": scale},
        "head": {"n_fft": out["n_fft"], "padding": out["padding"]},
    }


def _expect_class(name: str, got: str, want: str, path) -> None:
    if got != want:
        raise BadConfigError(f"{name} {got} is not supported (only {want}: the Vocos mel model)", path)


def check_mel_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """One-line error when the checkpoint's keys are not the Vocos mel model's, saying what it is."""
    from voxtok.convert.keymap import describe

    encodec = [k for k in state
               if k.startswith("feature_extractor.encodec.") or k == "feature_extractor.codebook_weights"]
    if any(k.startswith("backbone.pos_net.") for k in state):
        raise BadConfigError("this is a WavTokenizer generator (backbone.pos_net.*), not a Vocos mel model: convert "
                             f"it with `voxtok convert wavtokenizer`; the file has {describe(state)}", path)
    if encodec:
        raise BadConfigError(f"{ENCODEC_VARIANT.format(why=f'keys {encodec[0]}, ...')}; the file has "
                             f"{describe(state)}", path)


def check_mel_front_end(state: Mapping[str, Any], vocoder, path: str | os.PathLike) -> None:
    """The filterbank Vocos stored must be the one config.yaml's mel settings give (else they belong
    to different models). Both are HTK mel triangles; they differ by float32 rounding only (< 1e-4)."""
    fb = state.get("feature_extractor.mel_spec.mel_scale.fb")
    if fb is None:
        return  # a state_dict without the feature extractor's buffers: nothing to check
    ours = vocoder.features.mel_basis.T  # [n_freqs, n_mels], the layout torchaudio stores
    if tuple(fb.shape) != tuple(ours.shape) or float((fb.float() - ours).abs().max()) > 1e-4:
        raise BadConfigError(f"the checkpoint's mel filterbank {tuple(fb.shape)} is not the one config.yaml's mel "
                             f"settings give {tuple(ours.shape)}: config.yaml and the checkpoint are of different "
                             "models", path)


def convert_vocos(config: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Release config.yaml + pytorch_model.bin -> VoxTok `tts/mel_vocoder` folder at `out`.

    Returns `out`. Any mismatch is a one-line BadConfigError and nothing is written.
    """
    from voxtok.convert.keymap import load_mapped, read_state_dict, rename
    from voxtok.convert.keymap import source_note
    from voxtok.tts.vocoder import MelVocoder

    out = Path(out)
    # save_pretrained replaces `out` whole: never a folder that is not a checkpoint (e.g. `-o .`).
    if out.exists() and not (out / "metadata.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise BadConfigError("output exists and is not a VoxTok checkpoint folder; refusing to replace it", out)
    vocoder_config = read_vocos_config(config)
    original = read_state_dict(checkpoint, CHECKPOINT_FILE)
    check_mel_checkpoint(original, checkpoint)
    try:
        vocoder = MelVocoder(vocoder_config, where="vocoder")
    except BadConfigError as err:  # settings VoxTok's vocoder cannot take: say which file holds them
        raise BadConfigError(str(err), config) from None
    check_mel_front_end(original, vocoder, checkpoint)
    load_mapped(vocoder, rename(original, RULES, keep_unmatched=True), checkpoint, "the Vocos mel model of "
                "config.yaml", original=original)
    return vocoder.eval().save_pretrained(out, extra=source_note("vocos", config, checkpoint))


def _handle(args: argparse.Namespace) -> int:
    out = convert_vocos(args.config, args.checkpoint, args.output)
    from voxtok.registry import read_metadata

    info = read_metadata(out)["info"]
    print(f"wrote {out} (tts mel_vocoder: {info['sample_rate']} Hz, {info['n_mels']} mels, hop {info['hop_length']}, "
          f"{'centred' if info['mel_center'] else 'uncentred'} mel, head padding {info['head_padding']})")
    return 0


def add_command(subparsers) -> None:
    """Register `voxtok convert vocos`."""
    parser = command(
        subparsers, "vocos",
        "the published Vocos mel vocoder (config.yaml + pytorch_model.bin, e.g. charactr/vocos-mel-24khz) -> "
        "a VoxTok mel vocoder folder (tts/mel_vocoder), usable as the TTS vocoder",
        "voxtok convert vocos --config vocos-mel-24khz/config.yaml "
        "--checkpoint vocos-mel-24khz/pytorch_model.bin -o exp/vocos_mel_24khz",
        _handle,
    )
    parser.add_argument("--config", required=True, help="the release's config.yaml (or its training config)")
    parser.add_argument("--checkpoint", required=True, help="the release's pytorch_model.bin (a state_dict)")
    parser.add_argument("-o", "--output", required=True, help="checkpoint folder to write (replaced atomically)")
