"""WavTokenizer: SEANet encoder -> one VQ codebook -> Vocos backbone + ISTFT head (24 kHz).

Config (the `model:` block of configs/codec/wavtokenizer_*.yaml):
    sample_rate: 24000
    encoder: SEANetEncoder kwargs (n_filters, dimension, ratios, lstm_layers, causal, ...), or
             {kind: mel, ...} for a MelEncoder (log-mel front end + ConvNeXt stack; the tiny config)
    quantizer: {kind: vq | rvq | fsq, codebook_size: 4096, decay, kmeans_init, dead_code_threshold, ...,
                warmup_steps}  (kind defaults to rvq, which then needs n_q)
    backbone: VocosBackbone kwargs (dim, intermediate_dim, num_layers, pos_net, ...)
    head: {n_fft, padding}  (hop = the encoder's hop)
    framing: right_context | reference  (default right_context; see voxtok.codecs.autoencoder)
        right_context: the signal is zero-padded to a whole hop plus the encoder's right context
            (6 frames), so batched and unbatched codes are equal by construction; VoxTok's own
            models are trained and evaluated this way.
        reference: the SEANet encoder reads each signal at its own length and reflect-pads its end
            in every convolution, as the published WavTokenizer encodes (`encode_infer`), so a
            converted checkpoint gives the reference's codes up to the last frame; a padded batch
            is encoded in groups of equal length. `voxtok convert wavtokenizer` sets it.
    bandwidth_id: the AdaLN id the decoder is conditioned on (default 0; < adanorm_num_embeddings)
    train_bandwidth_ids: N draws the AdaLN id uniformly from 0..N-1 at every training step, for the
        decoder and for the discriminators built with `num_embeddings`, as the reference trains
        (decoder/experiment.py: one id per step for the batch); default null: training uses
        `bandwidth_id`. Inference and validation always use `bandwidth_id`.
An unknown key at any level is a BadConfigError naming its path and the allowed keys.
"""

from __future__ import annotations

from typing import Any

import torch

from voxtok.codecs.autoencoder import AutoencoderCodec
from voxtok.codecs.model_config import MODEL
from voxtok.codecs.modules.mel_encoder import MelEncoder
from voxtok.codecs.modules.seanet import SEANetEncoder
from voxtok.codecs.modules.vocos import ISTFTHead, VocosBackbone
from voxtok.config import check_keys, kwargs_for, require_keys, require_mapping
from voxtok.errors import BadConfigError
from voxtok.registry import register

# encoder kind -> class; "seanet" is the default and the paper's encoder.
ENCODERS = {"seanet": SEANetEncoder, "mel": MelEncoder}
MODEL_KEYS = ("sample_rate", "encoder", "quantizer", "backbone", "head", "framing", "bandwidth_id",
              "train_bandwidth_ids")
REQUIRED_KEYS = ("encoder", "quantizer", "backbone", "head")


def build_encoder(config: dict[str, Any], sample_rate: int, where: str = f"{MODEL}.encoder") -> SEANetEncoder | MelEncoder:
    """The encoder named by `config["kind"]` (see ENCODERS), built from the other keys, which must
    be that class's options; wav [B, 1, T] -> latent [B, dimension, T / hop]."""
    enc = require_mapping(config, where)
    kind = enc.get("kind", "seanet")
    if kind not in ENCODERS:
        raise BadConfigError(f"unknown WavTokenizer encoder kind '{kind}' (choose from {list(ENCODERS)})")
    # The mel front end needs the rate, which is the model's; SEANet is rate-agnostic.
    rate = {"sample_rate": sample_rate} if kind == "mel" else {}
    return ENCODERS[kind](**kwargs_for(ENCODERS[kind], enc, where, exclude=rate, also_allowed=("kind",)), **rate)


@register("codec", "wavtokenizer")
class WavTokenizer(AutoencoderCodec):
    """Single-codebook acoustic codec with a Vocos/ISTFT decoder (40 or 75 tokens/s at 24 kHz)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        cfg = require_mapping(config, MODEL)
        check_keys(cfg, MODEL_KEYS, MODEL)
        require_keys(cfg, REQUIRED_KEYS, MODEL)
        self.sample_rate = int(cfg.get("sample_rate", 24000))
        self.encoder = build_encoder(cfg["encoder"], self.sample_rate)
        self.hop_length = self.encoder.hop_length
        dim = self.encoder.dimension
        self.init_quantizer(cfg["quantizer"])
        backbone = kwargs_for(VocosBackbone, cfg["backbone"], f"{MODEL}.backbone", exclude=("input_channels",))
        self.backbone = VocosBackbone(input_channels=dim, **backbone)
        self.adanorm = bool(backbone.get("adanorm_num_embeddings"))
        head = kwargs_for(ISTFTHead, cfg["head"], f"{MODEL}.head", exclude=("dim",))
        if head.setdefault("hop_length", self.hop_length) != self.hop_length:
            raise BadConfigError(f"ISTFT hop {head['hop_length']} must equal the encoder hop {self.hop_length}")
        self.head = ISTFTHead(dim=self.backbone.dim, **head)
        self.set_framing(cfg.get("framing", "right_context"))
        if self.framing == "reference" and not isinstance(self.encoder, SEANetEncoder):
            raise BadConfigError("config 'model.framing: reference' is the published SEANet encoder's framing; "
                                 "this model's encoder is not SEANet")
        self.bandwidth_id = int(cfg.get("bandwidth_id", 0))
        ids = int(backbone.get("adanorm_num_embeddings") or 1)
        if not 0 <= self.bandwidth_id < ids:
            raise BadConfigError(f"config 'model.bandwidth_id' must be in 0..{ids - 1} "
                                 f"(backbone.adanorm_num_embeddings {ids if self.adanorm else 'unset'}), "
                                 f"got {self.bandwidth_id}")
        drawn = cfg.get("train_bandwidth_ids")
        if drawn is not None and (not isinstance(drawn, int) or isinstance(drawn, bool) or not 1 <= drawn <= ids
                                  or not self.adanorm):
            raise BadConfigError(f"config 'model.train_bandwidth_ids' must be a whole number in 1..{ids} "
                                 f"(backbone.adanorm_num_embeddings {ids if self.adanorm else 'unset'}), got {drawn!r}")
        # Ids a training step draws from (0 = none drawn: train with `bandwidth_id`).
        self.train_bandwidth_ids = int(drawn or 0)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "WavTokenizer":
        return cls(config)

    def synthesize(self, latent: torch.Tensor, bandwidth_id: torch.Tensor | int | None = None) -> torch.Tensor:
        """Quantized latent [B, D, T'] -> audio [B, 1, T' * hop]; `bandwidth_id` (an int, or [1] / [B]
        ids) overrides the config's `bandwidth_id`."""
        # The published models condition the backbone's AdaLN on a bandwidth id; their inference
        # uses id 0 (config `bandwidth_id`).
        if not self.adanorm:
            return self.head(self.backbone(latent))
        cond = torch.as_tensor(self.bandwidth_id if bandwidth_id is None else bandwidth_id, device=latent.device)
        return self.head(self.backbone(latent, cond))

    def check_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Accept `bandwidth_id` (the id a GAN step drew, see `train_bandwidth_ids`) besides the
        entries the base class accepts; returns the entries read."""
        drawn = {"bandwidth_id": batch["bandwidth_id"]} if "bandwidth_id" in batch else {}
        rest = {k: v for k, v in batch.items() if k != "bandwidth_id"}
        return {**super().check_batch(rest), **drawn}

    def training_synthesize(self, latent: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Latent [B, D, T'] -> audio [B, 1, T' * hop] conditioned on the batch's drawn `bandwidth_id`
        when there is one."""
        return self.synthesize(latent, batch.get("bandwidth_id"))
