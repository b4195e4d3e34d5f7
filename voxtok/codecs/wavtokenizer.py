"""WavTokenizer: SEANet encoder -> one VQ codebook -> Vocos backbone + ISTFT head (24 kHz).

Config (the `model:` block of configs/codec/wavtokenizer_*.yaml):
    sample_rate: 24000
    encoder: SEANetEncoder kwargs (n_filters, dimension, ratios, lstm_layers, causal, ...), or
             {kind: mel, ...} for a MelEncoder (log-mel front end + ConvNeXt stack; the tiny config)
    quantizer: {kind: rvq, n_q: 1, codebook_size: 4096, decay, kmeans_init, dead_code_threshold, ...}
    backbone: VocosBackbone kwargs (dim, intermediate_dim, num_layers, pos_net, ...)
    head: {n_fft, padding}  (hop = the encoder's hop)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from voxtok.codecs.base import Codec, register_codec
from voxtok.codecs.modules.mel_encoder import MelEncoder
from voxtok.codecs.modules.quantize import QuantizerOutput, ResidualVQ, build_quantizer
from voxtok.codecs.modules.seanet import SEANetEncoder
from voxtok.codecs.modules.vocos import ISTFTHead, VocosBackbone
from voxtok.data.dataset import length_mask
from voxtok.errors import BadConfigError


@dataclass
class GeneratorOutput:
    """One training forward of a GAN generator.

    recon: [B, 1, T] reconstruction trimmed to the input length; losses: unweighted auxiliary
    losses by name (the trainer weights them); stats: floats for logging.
    """

    recon: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    quantizer: QuantizerOutput | None = None


def quantizer_stats(q: QuantizerOutput) -> dict[str, float]:
    """Perplexity and batch usage of each codebook, as loggable floats."""
    stats = {}
    for i in range(q.codes.shape[1]):
        if q.perplexity is not None:
            stats[f"perplexity_q{i}"] = float(q.perplexity[i])
        if q.batch_usage is not None:
            stats[f"usage_q{i}"] = float(q.batch_usage[i])
    return stats


# encoder kind -> class; "seanet" is the default and the paper's encoder.
ENCODERS = {"seanet": SEANetEncoder, "mel": MelEncoder}


def build_encoder(config: dict[str, Any], sample_rate: int) -> SEANetEncoder | MelEncoder:
    """The encoder named by `config["kind"]` (see ENCODERS), built from the other keys."""
    enc = dict(config)
    kind = enc.pop("kind", "seanet")
    if kind not in ENCODERS:
        raise BadConfigError(f"unknown WavTokenizer encoder kind '{kind}' (choose from {list(ENCODERS)})")
    if kind == "mel":  # the mel front end needs the rate; SEANet is rate-agnostic
        enc["sample_rate"] = sample_rate
    return ENCODERS[kind](**enc)


@register_codec("wavtokenizer")
class WavTokenizer(Codec):
    """Single-codebook acoustic codec with a Vocos/ISTFT decoder (40 or 75 tokens/s at 24 kHz)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        cfg = copy.deepcopy(config)
        self.sample_rate = int(cfg.get("sample_rate", 24000))
        self.encoder = build_encoder(cfg["encoder"], self.sample_rate)
        self.hop_length = self.encoder.hop_length
        dim = self.encoder.dimension
        qcfg = dict(cfg["quantizer"])
        kind = qcfg.pop("kind", "rvq")
        self.quantizer_warmup_steps = int(qcfg.pop("warmup_steps", 0))
        self.quantizer = build_quantizer(kind, dim=dim, **qcfg)
        self.residual = isinstance(self.quantizer, ResidualVQ)
        self.n_q = int(qcfg.get("n_q", 1)) if self.residual else 1
        self.codebook_size = int(self.quantizer.codebook_size)
        self.backbone = VocosBackbone(input_channels=dim, **cfg["backbone"])
        self.adanorm = bool(cfg["backbone"].get("adanorm_num_embeddings"))
        head = dict(cfg["head"])
        if head.setdefault("hop_length", self.hop_length) != self.hop_length:
            raise BadConfigError(f"ISTFT hop {head['hop_length']} must equal the encoder hop {self.hop_length}")
        self.head = ISTFTHead(dim=cfg["backbone"]["dim"], **head)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "WavTokenizer":
        return cls(config)

    def _pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        extra = (-wav.shape[-1]) % self.hop_length
        return torch.nn.functional.pad(wav, (0, extra)) if extra else wav

    def quantize(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, n_q: int | None = None) -> QuantizerOutput:
        """Audio [B, 1, T] -> quantizer output (quantized latent [B, D, T'], codes [B, Q, T'])."""
        latent = self.encoder(self._pad_to_hop(wav))
        mask = None if lengths is None else length_mask(self.code_lengths(lengths), latent.shape[-1])
        if self.residual:
            return self.quantizer(latent, n_q=n_q, mask=mask)
        return self.quantizer(latent, mask=mask)

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        """Quantized latent [B, D, T'] -> audio [B, 1, T' * hop]."""
        # The published models condition the backbone's AdaLN on a bandwidth id; one codebook
        # means one bandwidth, id 0.
        cond = torch.zeros((), dtype=torch.long, device=latent.device) if self.adanorm else None
        return self.head(self.backbone(latent, cond))

    def training_forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, step: int = 0) -> GeneratorOutput:
        """Audio [B, 1, T] -> reconstruction [B, 1, T], commitment loss and codebook stats.

        For the first `quantizer_warmup_steps` updates the quantizer is bypassed (a plain
        autoencoder): at initialisation the encoder's frames differ by far less than one optimiser
        step moves them all, so a codebook fitted then is left behind at once and collapses to a
        few codes. The k-means initialisation runs on the first quantized batch instead.
        """
        if step < self.quantizer_warmup_steps:
            latent = self.encoder(self._pad_to_hop(wav))
            recon = self.synthesize(latent)[..., : wav.shape[-1]]
            zero = latent.new_zeros(())
            return GeneratorOutput(recon, {"commit": zero, "codebook": zero}, {})
        q = self.quantize(wav, lengths)
        recon = self.synthesize(q.quantized)[..., : wav.shape[-1]]
        losses = {"commit": q.commit_loss, "codebook": q.codebook_loss}
        return GeneratorOutput(recon, losses, quantizer_stats(q), q)

    @property
    def right_context_frames(self) -> int:
        """Zero frames appended before encoding: the encoder's own right context, so batched and
        unbatched encodes give identical codes."""
        return self.encoder.right_context_frames

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor | None, n_q: int) -> torch.Tensor:
        frames = -(-wav.shape[-1] // self.hop_length)
        tail = frames * self.hop_length - wav.shape[-1] + self.right_context_frames * self.hop_length
        latent = self.encoder(torch.nn.functional.pad(wav, (0, tail)))[..., :frames]
        if self.residual:
            return self.quantizer.encode(latent, n_q=n_q)
        return self.quantizer.encode(latent).unsqueeze(1)  # one codebook: [B, 1, T']

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        latent = self.quantizer.decode(codes)
        return self.synthesize(latent)
