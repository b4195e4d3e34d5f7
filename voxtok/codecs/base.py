"""The Codec API every VoxTok tokenizer implements, the registry, and checkpoint save/load.

A codec maps audio [B, 1, T] at `sample_rate` to integer codes [B, Q, T'] at `frame_rate` and back.
Checkpoints are folders: config.yaml (the model config), model.safetensors (weights) and
metadata.json (codec name, VoxTok version, checkpoint hash). `load_codec(dir)` rebuilds any
registered codec from such a folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml
from safetensors.torch import load_file

from voxtok.codecs.tokenfile import TokenHeader, check_code_range, read_tokens, write_tokens
from voxtok.checkpoint import atomic_dir, write_weights
from voxtok.errors import BadConfigError, BadTokenFileError

CODEC_REGISTRY: dict[str, type["Codec"]] = {}


def register_codec(name: str):
    """Class decorator: make a Codec subclass buildable by `build_codec(name, config)`."""

    def add(cls: type["Codec"]) -> type["Codec"]:
        if name in CODEC_REGISTRY and CODEC_REGISTRY[name] is not cls:
            raise BadConfigError(f"codec name '{name}' is registered twice")
        cls.codec_name = name
        CODEC_REGISTRY[name] = cls
        return cls

    return add


def _import_builtin_codecs() -> None:
    # Importing the modules runs their @register_codec decorators.
    import importlib

    for module in ("wavtokenizer", "dmcodec", "fusecodec", "s3"):
        importlib.import_module(f"voxtok.codecs.{module}")


def build_codec(name: str, config: dict[str, Any]) -> "Codec":
    """Build a registered codec from its config dict (random weights)."""
    _import_builtin_codecs()
    if name not in CODEC_REGISTRY:
        raise BadConfigError(f"unknown codec '{name}' (registered: {sorted(CODEC_REGISTRY)})")
    return CODEC_REGISTRY[name].from_config(config)


def load_codec(path: str | os.PathLike, map_location: str = "cpu") -> "Codec":
    """Load any registered codec from a `save_pretrained` folder."""
    path = Path(path)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise BadConfigError("not a VoxTok codec checkpoint (no metadata.json)", path)
    meta = json.loads(meta_file.read_text())
    _import_builtin_codecs()
    cls = CODEC_REGISTRY.get(meta.get("codec", ""))
    if cls is None:
        raise BadConfigError(f"checkpoint is for unknown codec '{meta.get('codec')}'", path)
    return cls.from_pretrained(path, map_location=map_location)


class Codec(torch.nn.Module):
    """Base class: subclasses set the rates and implement `_encode` / `_decode`.

    Subclasses define `from_config(dict)` and keep the config dict in `self.config`.
    """

    codec_name: ClassVar[str] = "codec"
    sample_rate: int
    hop_length: int
    n_q: int
    codebook_size: int

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.checkpoint_hash = "untrained"

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

        (the original length, so decode(encode(x), x.shape[-1]) has x's shape).
        """
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_q:
            raise BadTokenFileError(f"decode expects codes [B, Q<= {self.n_q}, T], got {tuple(codes.shape)}")
        check_code_range(codes, self.codebook_size)
        wav = self._decode(codes)
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
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write config.yaml, model.safetensors and metadata.json into `path` atomically."""
        with atomic_dir(path) as tmp:
            digest = file_hash(write_weights(self, tmp))
            (tmp / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
            meta = {"codec": self.codec_name, "checkpoint_hash": digest, "sample_rate": self.sample_rate,
                    "frame_rate": self.frame_rate, "n_q": self.n_q, "codebook_size": self.codebook_size,
                    "format": 1}
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2))
        self.checkpoint_hash = digest
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str = "cpu") -> "Codec":
        """Rebuild the codec from a `save_pretrained` folder (local paths only)."""
        path = Path(path)
        for name in ("config.yaml", "model.safetensors", "metadata.json"):
            if not (path / name).is_file():
                raise BadConfigError(f"codec checkpoint lacks {name}", path)
        meta = json.loads((path / "metadata.json").read_text())
        if meta.get("codec") != cls.codec_name:
            raise BadConfigError(f"checkpoint holds codec '{meta.get('codec')}', not '{cls.codec_name}'", path)
        model = cls.from_config(yaml.safe_load((path / "config.yaml").read_text()))
        state = load_file(str(path / "model.safetensors"), device=map_location)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BadConfigError(f"checkpoint does not fit the config (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})", path)
        model.checkpoint_hash = meta["checkpoint_hash"]
        return model.eval()


def file_hash(path: str | os.PathLike, length: int = 16) -> str:
    """First `length` hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
