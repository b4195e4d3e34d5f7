"""The autoencoder-codec base: encoder -> quantizer -> decoder, shared by WavTokenizer and DM-Codec.

What every such codec does the same way lives here once:
- padding the input to a whole number of hops;
- the `quantizer:` config block (kind, warm-up steps, the quantizer's own options);
- the training forward, with its quantizer warm-up bypass;
- inference framing (`framing`, see FRAMINGS): "right_context" (the default) zero-pads the
  signal to a whole hop plus the encoder's right context, so a valid frame's code never depends
  on how much padding follows it in a batch; "reference" lets the encoder read each signal at its
  own length, its convolutions reflect-padding the end as the published EnCodec-family encoders
  do, so converted checkpoints give the reference code's codes up to the last frame (a batch is
  encoded in groups of equal length, the only way a padded batch can equal unbatched encodes);
- `quantize`, `_encode` and `_decode` of the Codec API.

A subclass builds `encoder` (with `hop_length`, `dimension`, `right_context_frames`), calls
`init_quantizer`, and implements `synthesize(latent)`; it may override the hooks
`encode_latent`, `training_latent`, `check_batch`, `training_synthesize` and `training_output`.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

import torch

from voxtok.codecs.base import Codec
from voxtok.codecs.model_config import quantizer_from_config
from voxtok.codecs.modules.outputs import GeneratorOutput, quantizer_stats
from voxtok.codecs.modules.quantize import QUANTIZERS, QuantizerOutput
from voxtok.errors import BadConfigError
from voxtok.nn.masks import length_mask

# How inference reads the end of a signal (see the module docstring): the codec config's `framing`.
FRAMINGS = ("right_context", "reference")


class AutoencoderCodec(Codec):
    """Codec whose codes quantize the latent [B, D, T'] of an encoder and whose decoder
    (`synthesize`) turns a latent back into audio [B, 1, T' * hop]."""

    encoder: torch.nn.Module
    quantizer: torch.nn.Module
    quantizer_warmup_steps: int = 0
    framing: str = "right_context"

    def set_framing(self, framing: str) -> None:
        """Choose the inference framing, one of FRAMINGS (a config's `framing` value)."""
        if framing not in FRAMINGS:
            raise BadConfigError(f"config 'model.framing' must be one of {list(FRAMINGS)}, got {framing!r}")
        self.framing = framing

    def init_quantizer(self, block: Mapping[str, Any] | None, kinds: Collection[str] = tuple(QUANTIZERS),
                       default_kind: str = "rvq", why: str = "") -> None:
        """Build the quantizer from the config's `quantizer:` block (see `quantizer_from_config`)
        on the encoder's latent width, and set `n_q`, `codebook_size`, `quantizer_warmup_steps`."""
        self.quantizer, self.quantizer_warmup_steps, _ = quantizer_from_config(
            block, self.encoder.dimension, kinds=kinds, default_kind=default_kind, why=why)
        self.n_q = int(self.quantizer.n_q)
        self.codebook_size = int(self.quantizer.codebook_size)

    # -- the decoder side (subclasses)
    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        """Quantized latent [B, D, T'] -> audio [B, 1, T' * hop]."""
        raise NotImplementedError

    # -- the encoder side
    def _pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio [B, 1, T] -> [B, 1, ceil(T / hop) * hop], zeros appended."""
        extra = (-wav.shape[-1]) % self.hop_length
        return torch.nn.functional.pad(wav, (0, extra)) if extra else wav

    def encode_latent(self, wav: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Audio [B, 1, T] (T a multiple of hop) -> latent [B, D, T / hop]. `frames` [B] (valid
        frames per item) lets an encoder skip padding; this one reads every frame alike."""
        return self.encoder(wav)

    @property
    def right_context_frames(self) -> int:
        """Zero frames appended before encoding: the encoder's own right context, so batched and
        unbatched encodes give identical codes."""
        return self.encoder.right_context_frames

    def inference_latent(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Audio [B, 1, T] (lengths [B] samples, None = all T) -> latent [B, D, ceil(T / hop)] as
        encode() quantizes it: valid frames do not depend on the padding that follows them."""
        if self.framing == "reference":
            return self._reference_framed_latent(wav, lengths)
        frames = -(-wav.shape[-1] // self.hop_length)
        tail = frames * self.hop_length - wav.shape[-1] + self.right_context_frames * self.hop_length
        valid = (torch.full((wav.shape[0],), frames, dtype=torch.long) if lengths is None
                 else self.code_lengths(torch.as_tensor(lengths).reshape(-1).cpu()))
        return self.encode_latent(torch.nn.functional.pad(wav, (0, tail)), valid)[..., :frames]

    def _reference_framed_latent(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Audio [B, 1, T] (lengths [B] samples) -> latent [B, D, ceil(T / hop)], each signal encoded
        at its own length; frames past a signal's end are zeros.

        The encoder's convolutions reflect-pad the end of what they are given, so a padded item
        would see its padding instead of its own reflection: items of equal length share one pass.
        """
        batch, frames = wav.shape[0], -(-wav.shape[-1] // self.hop_length)
        lengths = (torch.full((batch,), wav.shape[-1]) if lengths is None
                   else torch.as_tensor(lengths).reshape(-1).cpu().clamp(0, wav.shape[-1]))
        if bool((lengths == wav.shape[-1]).all()):
            return self.encode_latent(wav, torch.full((batch,), frames))
        latent = None
        for length in lengths.unique().tolist():
            if length == 0:  # nothing to encode: its frames stay zeros
                continue
            rows = (lengths == length).nonzero().squeeze(1)
            group = self.encode_latent(wav[rows.to(wav.device), :, :length], self.code_lengths(lengths[rows]))
            if latent is None:
                latent = group.new_zeros(batch, group.shape[1], frames)
            latent[rows.to(wav.device), :, : group.shape[-1]] = group
        return latent if latent is not None else self.encode_latent(wav, torch.zeros(batch, dtype=torch.long))

    # -- training
    @property
    def loss_names(self) -> tuple[str, ...]:
        """Names of the unweighted losses `training_forward` returns: the GAN trainer's `loss.aux`
        may weight these and no others."""
        return ("commit", "codebook")

    def check_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Refuse batch entries besides wav / lengths that this codec does not read (a misspelt
        key would silently train without its loss); returns the entries it reads."""
        if batch:
            raise BadConfigError(f"training_forward got unknown batch entries {sorted(batch)}")
        return batch

    def training_latent(self, wav: torch.Tensor, lengths: torch.Tensor | None,
                        batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Audio [B, 1, T] -> (latent [B, D, ceil(T / hop)] to quantize, valid frames [B] or None
        when every frame is valid)."""
        frames = None if lengths is None else self.code_lengths(lengths)
        return self.encode_latent(self._pad_to_hop(wav)), frames

    def training_synthesize(self, latent: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Latent [B, D, T'] -> audio [B, 1, T' * hop] in training; `batch` holds the entries
        `check_batch` returned (a conditioning id, say)."""
        return self.synthesize(latent)

    def training_output(self, recon: torch.Tensor, q: QuantizerOutput, frames: torch.Tensor | None,
                        batch: dict[str, Any]) -> GeneratorOutput:
        """Reconstruction [B, 1, T] and quantizer output -> unweighted losses {commit, codebook}
        and codebook statistics."""
        return GeneratorOutput(recon, {"commit": q.commit_loss, "codebook": q.codebook_loss}, quantizer_stats(q), q)

    def quantize(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, n_q: int | None = None) -> QuantizerOutput:
        """Audio [B, 1, T] -> quantizer output (quantized latent [B, D, T'], codes [B, Q, T']),
        as in training: in training mode the codebooks update."""
        latent, frames = self.training_latent(wav, lengths, self.check_batch({}))
        mask = None if frames is None else length_mask(frames, latent.shape[-1])
        return self.quantizer(latent, n_q=n_q, mask=mask)

    def training_forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, step: int = 0,
                         **batch: Any) -> GeneratorOutput:
        """Audio [B, 1, T] (+ the batch entries the codec reads) -> reconstruction [B, 1, T],
        unweighted losses and codebook stats.

        For the first `quantizer_warmup_steps` updates the quantizer is bypassed (a plain
        autoencoder): at initialisation the encoder's frames differ by far less than one optimiser
        step moves them all, so a codebook fitted then is left behind at once and collapses to a
        few codes. The k-means initialisation runs on the first quantized batch instead.
        """
        batch = self.check_batch(batch)
        latent, frames = self.training_latent(wav, lengths, batch)
        if step < self.quantizer_warmup_steps:
            recon = self.training_synthesize(latent, batch)[..., : wav.shape[-1]]
            zero = latent.new_zeros(())
            return GeneratorOutput(recon, {"commit": zero, "codebook": zero}, {})
        mask = None if frames is None else length_mask(frames, latent.shape[-1])
        q = self.quantizer(latent, mask=mask)
        recon = self.training_synthesize(q.quantized, batch)[..., : wav.shape[-1]]
        return self.training_output(recon, q, frames, batch)

    # -- the Codec API
    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor | None, n_q: int) -> torch.Tensor:
        return self.quantizer.encode(self.inference_latent(wav, lengths), n_q=n_q)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.quantizer.decode(codes))
