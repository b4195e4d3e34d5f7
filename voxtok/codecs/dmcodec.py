"""DM-Codec: a SpeechTokenizer-style RVQ codec (16 kHz, 50 Hz) distilled from LM and speech teachers.

SEANet encoder (bidirectional LSTM) -> residual VQ -> SEANet decoder (one-directional LSTM). A
linear head per teacher maps the output of one RVQ layer (default RVQ-1) to the teacher's width;
its distance to the teacher features is a training loss. With no `distill` block the same model
is a plain RVQ codec (the ablation baseline).

Config (the `model:` block of configs/codec/dmcodec_*.yaml, rvq_tiny.yaml):
    sample_rate: 16000
    encoder: SEANetEncoder kwargs (n_filters, dimension, ratios, lstm_layers, bidirectional, ...)
    decoder: SEANetDecoder kwargs (n_filters, dimension, ratios must match the encoder's)
    quantizer: {kind: rvq, n_q, codebook_size, quantizer_dropout, decay, kmeans_init,
                dead_code_threshold, ..., warmup_steps}
    distill:   {lm: {dim, layer: 1, frame_loss: d_axis}, sm: {dim, layer: 1, frame_loss: d_axis}}
               (dim: the teacher's width; null = taken from the teacher stores by the recipe;
               layer: 1-based RVQ layer; frame_loss: d_axis | t_axis | null = no frame-level loss)
    shared_head: false   true = ONE projection scored against every teacher, as the DM-Codec
               repository trains it (its `transform`); the teachers must then share dim and layer
    framing: right_context | reference   how encode() reads the end of a signal (default
               right_context; `voxtok convert speechtokenizer/dmcodec` write reference, the
               published code's framing; see voxtok.codecs.autoencoder)

Training losses (unweighted; the trainer's `loss.aux` weights them): commit (mean over the RVQ
layers used, as SpeechTokenizer), codebook, distill_lm, distill_sm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from voxtok.codecs.autoencoder import AutoencoderCodec
from voxtok.codecs.distill import frame_loss
from voxtok.codecs.distill_data import TEACHER_BATCH_KEYS
from voxtok.codecs.model_config import MODEL
from voxtok.codecs.modules.outputs import GeneratorOutput, quantizer_stats
from voxtok.codecs.modules.quantize import QuantizerOutput, ResidualVQ
from voxtok.codecs.modules.seanet import SEANetDecoder, SEANetEncoder, SkipLSTM
from voxtok.config import check_keys, kwargs_for, require_keys, require_mapping
from voxtok.errors import BadConfigError
from voxtok.registry import register

TEACHERS = ("lm", "sm")
SHARED_HEAD = "shared"  # key of the one head in `heads` when shared_head is on


@dataclass(frozen=True)
class DistillTarget:
    """One teacher the codec is distilled from: its width, the 1-based RVQ layer whose output its
    head reads, and the frame-level loss ("d_axis", "t_axis" or None for none)."""

    name: str
    dim: int
    layer: int = 1
    frame_loss: str | None = "d_axis"


def parse_distill(block: dict[str, Any] | None, n_q: int, where: str = f"{MODEL}.distill") -> dict[str, DistillTarget]:
    """The `distill:` config block -> {teacher name: DistillTarget}, validated."""
    targets = {}
    for name, spec in require_mapping(block, where).items():
        if spec is None:
            continue
        if name not in TEACHERS:
            raise BadConfigError(f"{where}: unknown teacher '{name}' (choose from {list(TEACHERS)})")
        spec = require_mapping(spec, f"{where}.{name}")
        check_keys(spec, ("dim", "layer", "frame_loss"), f"{where}.{name}")
        if spec.get("dim") is None:
            raise BadConfigError(f"distill.{name}.dim is not set (give the teacher width, or teachers_dir "
                                 "to the training recipe so it is read from the teacher stores)")
        target = DistillTarget(name, int(spec["dim"]), int(spec.get("layer", 1)), spec.get("frame_loss", "d_axis"))
        if not 1 <= target.layer <= n_q:
            raise BadConfigError(f"distill.{name}.layer must be in 1..{n_q}, got {target.layer}")
        if target.frame_loss not in (None, "d_axis", "t_axis"):
            raise BadConfigError(f"distill.{name}.frame_loss must be d_axis, t_axis or null, got {target.frame_loss!r}")
        targets[name] = target
    return targets


def head_targets(targets: dict[str, DistillTarget], shared: bool,
                 where: str = f"{MODEL}.shared_head") -> dict[str, DistillTarget]:
    """{head name: target it is sized for}: one head per teacher, or with `shared` one head named
    SHARED_HEAD for all of them (they must then read the same RVQ layer at the same width)."""
    if not shared:
        return targets
    if not targets:
        raise BadConfigError(f"{where} is on but distill names no teacher")
    kinds = {(t.dim, t.layer) for t in targets.values()}
    if len(kinds) > 1:
        found = ", ".join(f"{t.name}: dim {t.dim}, layer {t.layer}" for t in targets.values())
        raise BadConfigError(f"{where} needs every teacher at the same dim and layer ({found})")
    return {SHARED_HEAD: next(iter(targets.values()))}


def run_lstm_packed(lstm: SkipLSTM, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """SkipLSTM over only the first frames[b] of each item of x [B, C, T] -> [B, C_out, T].

    A bidirectional LSTM reads each sequence backwards from its last frame, so padding would
    change every frame of a padded item; packing starts each item's backward pass at its own end.
    Outputs past an item's end hold just the skip connection.
    """
    seq = x.transpose(1, 2)
    steps = frames.detach().to("cpu").clamp(1, seq.shape[1])
    packed = pack_padded_sequence(seq, steps, batch_first=True, enforce_sorted=False)
    out, _ = lstm.lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
    skip = torch.cat([seq, seq], dim=-1) if lstm.bidirectional else seq  # as SkipLSTM.forward
    return (out + skip).transpose(1, 2)


def check_teacher_batch(teachers: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Refuse batch entries that are not teacher streams (a misspelt key would silently train
    without its loss)."""
    unknown = sorted(set(teachers) - TEACHER_BATCH_KEYS)
    if unknown:
        raise BadConfigError(f"training_forward got unknown batch entries {unknown}")
    return teachers


@register("codec", "dmcodec")
class DMCodec(AutoencoderCodec):
    """SpeechTokenizer-style RVQ codec with optional LM / speech-model distillation heads."""

    # Keys of the `model:` block; subclasses that read more extend it.
    model_keys: tuple[str, ...] = ("sample_rate", "encoder", "decoder", "quantizer", "distill", "shared_head",
                                   "framing")
    quantizer: ResidualVQ

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        cfg = require_mapping(config, MODEL)
        check_keys(cfg, self.model_keys, MODEL)
        require_keys(cfg, ("encoder", "decoder", "quantizer"), MODEL)
        self.sample_rate = int(cfg.get("sample_rate", 16000))
        self.encoder = SEANetEncoder(**kwargs_for(SEANetEncoder, cfg["encoder"], f"{MODEL}.encoder"))
        self.decoder = SEANetDecoder(**kwargs_for(SEANetDecoder, cfg["decoder"], f"{MODEL}.decoder"))
        self.hop_length = self.encoder.hop_length
        dim = self.encoder.dimension
        if (self.decoder.dimension, self.decoder.hop_length) != (dim, self.hop_length):
            raise BadConfigError(f"decoder (dimension {self.decoder.dimension}, hop {self.decoder.hop_length}) "
                                 f"does not mirror the encoder (dimension {dim}, hop {self.hop_length})")
        self.init_quantizer(cfg["quantizer"], kinds=("rvq",), why=" (dmcodec distillation reads the RVQ layers)")
        self.set_framing(cfg.get("framing", "right_context"))
        self.targets = parse_distill(cfg.get("distill"), self.n_q)
        self.shared_head = cfg.get("shared_head", False)
        if not isinstance(self.shared_head, bool):
            raise BadConfigError(f"config '{MODEL}.shared_head' must be true or false, got {self.shared_head!r}")
        self.heads = nn.ModuleDict({name: nn.Linear(dim, t.dim) for name, t in head_targets(
            self.targets, self.shared_head).items()})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DMCodec":
        return cls(config)

    @property
    def teacher_streams(self) -> set[str]:
        """Teacher streams (see codecs/distill_data.py) the training losses need."""
        return {name for name, t in self.targets.items() if t.frame_loss}

    @property
    def loss_names(self) -> tuple[str, ...]:
        """commit, codebook and distill_<teacher> for each teacher with a frame loss."""
        return (*super().loss_names, *(f"distill_{name}" for name, t in self.targets.items() if t.frame_loss))

    # -- encoder side
    def encode_latent(self, wav: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Audio [B, 1, T] -> latent [B, D, ceil(T / hop)]; with frames [B], the LSTM reads only
        each item's first frames[b] frames."""
        x = wav
        for layer in self.encoder.model:
            if isinstance(layer, SkipLSTM) and frames is not None and bool((frames < x.shape[-1]).any()):
                x = run_lstm_packed(layer, x, frames)
            else:
                x = layer(x)
        return x

    def fuse(self, latent: torch.Tensor, teachers: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hook for codecs that mix teacher information into the latent [B, D, T'] before the
        RVQ (FuseCodec); DM-Codec leaves it unchanged."""
        return latent

    # -- distillation
    def project(self, q: QuantizerOutput, name: str) -> torch.Tensor | None:
        """Head `name` on its RVQ layer's output -> [B, T', D_teacher], or None when quantizer
        dropout used fewer layers than the head reads."""
        target = self.targets[name]
        if target.layer > len(q.layer_outputs):
            return None
        head = self.heads[SHARED_HEAD if self.shared_head else name]
        return head(q.layer_outputs[target.layer - 1].transpose(1, 2))

    @staticmethod
    def teacher_frames(frames: torch.Tensor, teachers: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        """Frames valid for both the audio (frames [B]) and teacher `name` (its `<name>_lengths`)."""
        given = teachers.get(f"{name}_lengths")
        return frames if given is None else torch.minimum(frames, given.to(frames.device))

    def teacher_losses(self, q: QuantizerOutput, teachers: dict[str, torch.Tensor],
                       frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frame-level distillation losses {"distill_<teacher>": scalar} for the teachers in the
        batch (a batch without teachers, e.g. validation, gives none)."""
        losses = {}
        for name, target in self.targets.items():
            if not target.frame_loss or name not in teachers:
                continue
            student = self.project(q, name)
            if student is not None:
                losses[f"distill_{name}"] = frame_loss(target.frame_loss, student, teachers[name],
                                                       self.teacher_frames(frames, teachers, name))
        return losses

    # -- training
    def check_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Teacher streams (see codecs/distill_data.py) only; anything else is refused."""
        return check_teacher_batch(batch)

    def training_latent(self, wav: torch.Tensor, lengths: torch.Tensor | None,
                        batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, 1, T] + teacher streams -> (fused latent [B, D, ceil(T / hop)], valid frames [B]);
        the BiLSTM reads each item only up to its own end."""
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
        frames = self.code_lengths(lengths.to(wav.device))
        return self.fuse(self.encode_latent(self._pad_to_hop(wav), frames), batch), frames

    def training_output(self, recon: torch.Tensor, q: QuantizerOutput, frames: torch.Tensor,
                        batch: dict[str, torch.Tensor]) -> GeneratorOutput:
        """Unweighted losses {commit (mean over the RVQ layers used, as SpeechTokenizer), codebook,
        distill_*} and codebook statistics, with n_q_used (quantizer dropout's draw)."""
        used = q.codes.shape[1]
        losses = {"commit": q.commit_loss / used, "codebook": q.codebook_loss}
        losses.update(self.teacher_losses(q, batch, frames))
        stats = {**quantizer_stats(q), "n_q_used": float(used)}
        return GeneratorOutput(recon, losses, stats, q)

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        """Quantized latent [B, D, T'] -> audio [B, 1, T' * hop] (the SEANet decoder)."""
        return self.decoder(latent)
