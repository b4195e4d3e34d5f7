"""The Codec API every VoxTok tokenizer implements.

A codec maps audio [B, 1, T] at `sample_rate` to integer codes [B, Q, T'] at `frame_rate` and back.
Codecs register as `@register("codec", name)` and save/load through the one checkpoint format of
`voxtok.registry` (`save_pretrained(dir)`, `voxtok.load(dir)`); metadata.json `info` holds the rates
so readers (the demo, token files) need not load the weights.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch

from voxtok.codecs.tokenfile import TokenHeader, check_code_range, read_tokens, write_tokens
from voxtok.errors import BadConfigError, BadTokenFileError
from voxtok.registry import SavesPretrained


class Codec(SavesPretrained, torch.nn.Module):
    """Base class: subclasses set the rates and implement `_encode` / `_decode`.

    Subclasses define `from_config(dict)` and keep the config dict in `self.config`.
    """

    sample_rate: int
    hop_length: int
    n_q: int
    codebook_size: int

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.checkpoint_hash = "untrained"

    @property
    def codec_name(self) -> str:
        """The registered name, written into token files so tokens are decoded by the same codec."""
        return self.registry_name

    # -- properties derived from the rates
    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second with all `n_q` codebooks."""
        return self.bitrate_at(self.n_q)

    def bitrate_at(self, n_q: int) -> float:
        """Bits per second when only the first `n_q` codebooks are kept."""
        return n_q * math.log2(self.codebook_size) * self.frame_rate

    def code_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid code frames for signals of `lengths` samples: ceil(lengths / hop)."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Codec":
        raise NotImplementedError

    # -- the API
    def encode(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, n_q: int | None = None) -> torch.Tensor:
        """Audio [B, 1, T] (float in [-1, 1]) -> codes int64 [B, n_q, ceil(T / hop)].

        With `lengths` [B], frames past each signal's end are computed from zero padding and
        should be discarded by the caller using `code_lengths(lengths)`.
        """
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise BadConfigError(f"encode expects audio [B, 1, T], got {tuple(wav.shape)}")
        n_q = self.n_q if n_q is None else n_q
        if not 1 <= n_q <= self.n_q:
            raise BadConfigError(f"n_q={n_q} outside 1..{self.n_q}")
        return self._encode(wav, lengths, n_q)

    def decode(self, codes: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Codes [B, Q, T'] (Q <= n_q) -> audio [B, 1, T' * hop], or [B, 1, num_samples] when given

        (the original length, so decode(encode(x), x.shape[-1]) has x's shape). Always float32, also
        under bfloat16 / float16 autocast: callers save, score or resample the audio with numpy.
        """
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_q:
            raise BadTokenFileError(f"decode expects codes [B, Q<= {self.n_q}, T], got {tuple(codes.shape)}")
        check_code_range(codes, self.codebook_size)
        wav = self._decode(codes).float()
        if num_samples is not None:
            wav = torch.nn.functional.pad(wav, (0, max(0, num_samples - wav.shape[-1])))[..., :num_samples]
        return wav

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor | None, n_q: int) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- token files
    def token_header(self, num_frames: int, num_samples: int, n_q: int | None = None) -> TokenHeader:
        """The header for a token file holding this codec's codes."""
        return TokenHeader(self.codec_name, self.checkpoint_hash, self.sample_rate, self.frame_rate,
                           self.n_q if n_q is None else n_q, self.codebook_size, num_frames, num_samples)

    def save_tokens(self, path, codes: torch.Tensor, num_samples: int) -> Path:
        """Write codes [Q, T'] of one utterance to a `.vtk` file."""
        return write_tokens(path, codes, self.token_header(codes.shape[-1], num_samples, codes.shape[-2]))

    def load_tokens(self, path) -> tuple[torch.Tensor, TokenHeader]:
        """Read a `.vtk` file and check it was made by this very codec checkpoint: codes [Q, T']."""
        codes, header = read_tokens(path)
        if header.codec != self.codec_name:
            raise BadTokenFileError(f"tokens were made by codec '{header.codec}', not '{self.codec_name}'", path)
        if header.checkpoint_hash != self.checkpoint_hash:
            raise BadTokenFileError(f"tokens were made by checkpoint {header.checkpoint_hash}, "
                                    f"this model is {self.checkpoint_hash}", path)
        if header.codebook_size != self.codebook_size or header.n_q > self.n_q:
            raise BadTokenFileError(f"token file has n_q={header.n_q} x {header.codebook_size} codes, "
                                    f"codec has {self.n_q} x {self.codebook_size}", path)
        return codes, header

    # -- checkpoints
    def to_config(self) -> dict[str, Any]:
        """The config this codec was built from (stored in config.yaml)."""
        return copy.deepcopy(self.config)

    def checkpoint_info(self) -> dict[str, Any]:
        """Rates and code layout, stored in metadata.json `info`."""
        return {"sample_rate": self.sample_rate, "frame_rate": self.frame_rate, "n_q": self.n_q,
                "codebook_size": self.codebook_size}
