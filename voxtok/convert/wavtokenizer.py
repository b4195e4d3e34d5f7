"""`voxtok convert wavtokenizer`: a published WavTokenizer (training YAML + Lightning .ckpt) -> a VoxTok codec folder.

Where each setting of the VoxTok `wavtokenizer` config comes from:
    the YAML (configs/*.yaml of jishengpeng/WavTokenizer: the blocks under `model.init_args`, or at
    the top level as in an inference config):
        sample_rate
        feature_extractor (EncodecFeatures): dowmsamples -> encoder ratios (the hop), vq_bins ->
            codebook size, vq_kmeans -> k-means iterations, num_quantizers (inference reads layer 0)
        backbone (VocosBackbone, which always has pos_net): input_channels, dim, intermediate_dim,
            num_layers, layer_scale_init_value, adanorm_num_embeddings
        head (ISTFTHead): n_fft, hop_length (must be the hop), padding
    the checkpoint's tensors: the SEANet width (n_filters) and LSTM depth, which the reference's
        EncodecFeatures fixes in code (32, 2) rather than in the YAML; the latent width is the
        backbone's input_channels (512 in the reference's code).

Keys of the Lightning module's state_dict:
    feature_extractor.encodec.encoder.*    -> encoder.* (EnCodec layout: voxtok.convert.encodec_layout)
    feature_extractor.encodec.quantizer.vq.layers.0._codebook.{embed, embed_avg, cluster_size, inited}
                                           -> quantizer.{codebook, ema_embed_sum, ema_cluster_size, initialized}
                                              (`embed` is what the reference's inference reads)
    backbone.*, head.out.*                 -> the same names (VoxTok's VocosBackbone with pos_net, ISTFTHead)
    dropped: the unused SEANet decoder (feature_extractor.encodec.decoder.*), quantizer layers past 0,
        head.istft.window and the training loss's mel buffers (VoxTok computes these itself)
    multiperioddisc.*, multiresddisc.*, dac.*, dacdiscriminator.*: the discriminators; written beside
        the codec by voxtok.convert.wavtokenizer_discriminators when that module exists, else dropped.

The folder's config has `framing: reference` (codes equal to the reference's `encode_infer` up to
the last frame of an utterance) and `bandwidth_id` (the AdaLN id decoding uses; the reference's
inference uses 0).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from voxtok.cli.common import command
from voxtok.convert.class_config import check_init_args, class_block, read_class_blocks
from voxtok.convert.encodec_layout import (
    REFERENCE_QUANTIZER, as_voxtok_flags, check_codebooks_trained, seanet_rules, vq_layer_rules,
)
from voxtok.convert.keymap import source_note
from voxtok.errors import BadConfigError

if TYPE_CHECKING:
    import torch

    from voxtok.codecs.wavtokenizer import WavTokenizer

CONFIG_FILE = "a WavTokenizer config.yaml"
CHECKPOINT_FILE = "a WavTokenizer checkpoint"
FEATURES = "decoder.feature_extractors.EncodecFeatures"
BACKBONE = "decoder.models.VocosBackbone"
HEAD = "decoder.heads.ISTFTHead"
ENCODER = "feature_extractor.encodec.encoder."
QUANTIZER = "feature_extractor.encodec.quantizer."
DISCRIMINATORS = ("multiperioddisc.", "multiresddisc.", "dac.", "dacdiscriminator.")
# The reference constructors' defaults, for init_args a YAML leaves out (their signatures).
FEATURE_DEFAULTS = {"encodec_model": "encodec_24khz", "bandwidths": [1.5, 3.0, 6.0, 12.0], "train_codebooks": False,
                    "num_quantizers": 1, "dowmsamples": [6, 5, 5, 4], "vq_bins": 16384, "vq_kmeans": 800}
BACKBONE_ARGS = ("input_channels", "dim", "intermediate_dim", "num_layers", "layer_scale_init_value",
                 "adanorm_num_embeddings")
HEAD_ARGS = ("dim", "n_fft", "hop_length", "padding")
# Fixed in the reference's EncodecFeatures; used when the checkpoint has no encoder to read them from.
REFERENCE_ENCODER = {"n_filters": 32, "lstm_layers": 2}
_DROPPED = (
    (rf"{re.escape(QUANTIZER)}vq\.layers\.\d+\._codebook\.\w+", None),  # layers past 0 (layer 0 is mapped first)
    (r"feature_extractor\.encodec\.decoder\..*", None),
    (r"head\.istft\.window", None),
    (r"melspec_loss\..*", None),
)


def generator_rules() -> list[tuple[str, str | None]]:
    """Renames from the reference generator's keys to VoxTok's WavTokenizer; unlisted keys
    (backbone.*, head.out.*) keep their names."""
    return [*seanet_rules(ENCODER, "encoder."), *vq_layer_rules(QUANTIZER, 0, "quantizer."), *_DROPPED]


def read_reference_config(path: str | os.PathLike) -> dict[str, Any]:
    """The reference's YAML -> {"sample_rate", "features", "backbone", "head"} (each block's init_args
    with the reference's defaults filled in), checked to be WavTokenizer's classes and consistent."""
    data, blocks = read_class_blocks(path, CONFIG_FILE)
    features = _init_args(blocks, "feature_extractor", FEATURES, FEATURE_DEFAULTS, path)
    backbone = _init_args(blocks, "backbone", BACKBONE, BACKBONE_ARGS, path)
    head = {"padding": "same", **_init_args(blocks, "head", HEAD, HEAD_ARGS, path)}
    missing = [f"backbone.{k}" for k in BACKBONE_ARGS[:4] if k not in backbone]
    missing += [f"head.{k}" for k in HEAD_ARGS[:3] if k not in head]
    if missing:
        raise BadConfigError(f"not {CONFIG_FILE}: init_args lack {missing}", path)
    features = {**FEATURE_DEFAULTS, **features}
    if features["encodec_model"] != "encodec_24khz":
        raise BadConfigError(f"feature_extractor encodec_model {features['encodec_model']!r} is not one the "
                             "reference builds (encodec_24khz)", path)
    hop = math.prod(int(r) for r in features["dowmsamples"])
    for name, got, want in (("head hop_length", head["hop_length"], hop), ("head dim", head["dim"], backbone["dim"])):
        if got != want:
            raise BadConfigError(f"config parts disagree: {name} is {got}, expected {want} "
                                 "(feature_extractor dowmsamples / backbone dim)", path)
    if head["padding"] == "same" and (head["n_fft"] - hop) % 2:
        # The reference trims (n_fft - hop) // 2 on both sides, VoxTok the odd sample on the right.
        raise BadConfigError(f"head n_fft - hop_length must be even with 'same' padding, got {head['n_fft']} - {hop}",
                             path)
    return {"sample_rate": int(blocks.get("sample_rate", 24000)), "features": features, "backbone": backbone,
            "head": head, "document": data}


def _init_args(blocks: Mapping[str, Any], name: str, class_path: str, allowed, path) -> dict[str, Any]:
    got, args = class_block(blocks, name, CONFIG_FILE, path)
    if got != class_path:
        hint = " (a Vocos config: convert it with `voxtok convert vocos`)" if got.startswith("vocos.") else ""
        raise BadConfigError(f"{name} {got} is not WavTokenizer's {class_path}{hint}", path)
    return check_init_args(name, args, allowed, path)


def encoder_sizes(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """SEANet n_filters and LSTM layers read from the reference encoder's tensors (the first conv's
    output width, the LSTM's layer count); the reference's fixed sizes when the checkpoint has no
    such encoder (load_mapped then names what it has instead)."""
    prefix = re.escape(ENCODER)
    first = state.get(f"{ENCODER}model.0.conv.conv.weight_v", state.get(f"{ENCODER}model.0.conv.conv.weight"))
    lstm = {m.group(1) for k in state if (m := re.fullmatch(rf"{prefix}model\.\d+\.lstm\.weight_ih_l(\d+)", k))}
    if first is None:
        return dict(REFERENCE_ENCODER)
    return {"n_filters": int(first.shape[0]), "lstm_layers": len(lstm)}


def check_generator(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """One-line error naming what the file is when it is a Vocos model (its backbone has no pos_net)."""
    from voxtok.convert.keymap import describe

    if any(k.startswith("backbone.") for k in state) and not any(k.startswith("backbone.pos_net.") for k in state):
        raise BadConfigError("this is a Vocos model (backbone.* without pos_net), not a WavTokenizer generator "
                             f"(a Vocos mel model converts with `voxtok convert vocos`); the file has {describe(state)}",
                             path)


def codec_config(reference: Mapping[str, Any], sizes: Mapping[str, int], bandwidth_id: int = 0) -> dict[str, Any]:
    """The VoxTok `wavtokenizer` model block computing what the reference computes."""
    features, backbone, head = reference["features"], reference["backbone"], reference["head"]
    trunk = {"dim": backbone["dim"], "intermediate_dim": backbone["intermediate_dim"],
             "num_layers": backbone["num_layers"], "pos_net": True}
    if backbone.get("layer_scale_init_value"):
        trunk["layer_scale_init_value"] = backbone["layer_scale_init_value"]
    if backbone.get("adanorm_num_embeddings"):
        trunk["adanorm_num_embeddings"] = int(backbone["adanorm_num_embeddings"])
    return {
        "sample_rate": reference["sample_rate"],
        # The reference's EncodecFeatures: non-causal SEANet, one residual block per stage, ELU, reflect padding.
        "encoder": {"channels": 1, "dimension": int(backbone["input_channels"]), "n_filters": sizes["n_filters"],
                    "n_residual_layers": 1, "ratios": [int(r) for r in features["dowmsamples"]],
                    "lstm_layers": sizes["lstm_layers"], "causal": False},
        "quantizer": {"kind": "vq", "codebook_size": int(features["vq_bins"]), **REFERENCE_QUANTIZER,
                      "kmeans_iters": int(features["vq_kmeans"])},
        "backbone": trunk,
        "head": {"n_fft": head["n_fft"], "padding": head["padding"]},
        "framing": "reference",
        "bandwidth_id": int(bandwidth_id),
    }


def split_discriminators(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """The checkpoint's tensors -> (generator and loss tensors, discriminator tensors)."""
    generator = {k: v for k, v in state.items() if not k.startswith(DISCRIMINATORS)}
    return generator, {k: v for k, v in state.items() if k.startswith(DISCRIMINATORS)}


def convert_wavtokenizer(config: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                         bandwidth_id: int = 0, log: Callable[[str], Any] = print) -> Path:
    """The reference's YAML + Lightning .ckpt (or a bare generator state_dict) -> a VoxTok codec
    folder at `out`; returns `out`. Notes on dropped parts go to `log`.

    Any mismatch is a one-line BadConfigError naming the file, and nothing is written.
    """
    from voxtok.atomic import atomic_dir
    from voxtok.codecs.gan_checkpoint import save_discriminators
    from voxtok.convert.keymap import load_mapped, read_state_dict, rename
    from voxtok.convert.wavtokenizer_discriminators import map_discriminators
    from voxtok.registry import build

    out = Path(out)
    if out.exists() and not (out / "metadata.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise BadConfigError("output exists and is not a VoxTok checkpoint folder; refusing to replace it", out)
    reference = read_reference_config(config)
    ids = int(reference["backbone"].get("adanorm_num_embeddings") or 1)
    if not 0 <= bandwidth_id < ids:
        raise BadConfigError(f"--bandwidth-id {bandwidth_id} is outside 0..{ids - 1} (the config's backbone "
                             f"adanorm_num_embeddings is {reference['backbone'].get('adanorm_num_embeddings')})", config)
    original = read_state_dict(checkpoint, CHECKPOINT_FILE)
    generator, discriminators = split_discriminators(original)
    check_generator(generator, checkpoint)
    check_codebooks_trained(original, QUANTIZER, checkpoint)
    codec = build("codec", "wavtokenizer", codec_config(reference, encoder_sizes(generator), bandwidth_id))
    load_mapped(codec, as_voxtok_flags(rename(generator, generator_rules(), keep_unmatched=True)), checkpoint,
                f"the WavTokenizer of {Path(config).name}", original=original)
    notes = _dropped_notes(generator, reference)
    # The discriminators (MPD, MRD, DAC) travel with the codec so fine-tuning resumes the GAN.
    disc = map_discriminators(original, reference["document"]) if discriminators else None
    extra = source_note("wavtokenizer", config, checkpoint)
    extra["converted_from"]["notes"] = notes
    with atomic_dir(out) as tmp:
        codec.eval().save_pretrained(tmp, extra=extra)
        if disc is not None:
            save_discriminators(tmp, *disc)
    for note in notes:
        log(f"note: {note}")
    return out


def _dropped_notes(generator: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    notes = []
    if any(k.startswith("feature_extractor.encodec.decoder.") for k in generator):
        notes.append("dropped the SEANet decoder (feature_extractor.encodec.decoder.*): WavTokenizer never uses it")
    if int(reference["features"]["num_quantizers"]) > 1:
        notes.append(f"kept quantizer layer 0 of {reference['features']['num_quantizers']}: the reference's "
                     "inference reads that one only")
    return notes


def summary(codec: WavTokenizer, out: Path) -> str:
    """One line describing a converted folder."""
    return (f"wrote {out}: wavtokenizer, {codec.sample_rate} Hz, {codec.frame_rate:g} tokens/s, "
            f"{codec.codebook_size} codes, bandwidth id {codec.bandwidth_id}, {codec.framing} framing")


def _run(args: argparse.Namespace) -> int:
    from voxtok.registry import load

    out = convert_wavtokenizer(args.config, args.checkpoint, args.output, args.bandwidth_id)
    print(summary(load(out, kind="codec"), out))
    return 0


def add_command(subparsers) -> None:
    """`voxtok convert wavtokenizer --config REF.yaml --checkpoint REF.ckpt -o DIR [--bandwidth-id N]`."""
    p = command(subparsers, "wavtokenizer",
                "a published WavTokenizer (its training YAML + Lightning .ckpt; 40 or 75 tokens/s, small to "
                "large) -> a VoxTok wavtokenizer codec folder whose codes and audio equal the reference's",
                "voxtok convert wavtokenizer --config wavtokenizer_mediumdata_frame75_3s_nq1_code4096_dim512_"
                "kmeans200_attn.yaml --checkpoint wavtokenizer_medium_speech_320_24k.ckpt -o exp/wavtokenizer_75",
                _run)
    p.add_argument("--config", required=True, help="the reference's YAML (configs/*.yaml of jishengpeng/WavTokenizer)")
    p.add_argument("--checkpoint", required=True, help="the Lightning .ckpt (or a generator state_dict)")
    p.add_argument("-o", "--output", required=True, help="VoxTok checkpoint folder to write (replaced atomically)")
    p.add_argument("--bandwidth-id", type=int, default=0,
                   help="AdaLN bandwidth id the decoder is conditioned on (the reference's inference uses 0)")
