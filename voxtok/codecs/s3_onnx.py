"""CosyVoice's released speech tokenizer (`speech_tokenizer_v1.onnx`) as an encode-only VoxTok codec.

    codec = S3OnnxCodec.from_onnx("pretrained/CosyVoice-300M/speech_tokenizer_v1.onnx")
    codes = codec.encode(wav)                  # wav [B, 1, T] at 16 kHz -> int64 [B, 1, T'] (50 Hz, 4,096 codes)
    codec.save_pretrained("exp/s3_v1")         # then voxtok.load("exp/s3_v1"), `voxtok codec encode --model`, ...

Front end (cosyvoice/cli/frontend.py `_extract_speech_token`): Whisper's log-mel of each utterance
(`whisper.log_mel_spectrogram(speech, n_mels=128)`: 25 ms Hann windows every 10 ms, 128 Slaney mels,
log10 clamped to 8 below the utterance's maximum, (x + 4) / 4; computed here with VoxTok's mel
module, equal to openai-whisper's to float precision), then the ONNX model on feats [1, 128, N] and
feats_length [1] (int32), which returns ceil(N / 2) tokens. One utterance runs at a time, so a padded
batch gives the codes of its items alone; audio longer than the model's 30 s is cut into 30 s
pieces whose tokens are concatenated (CosyVoice refuses such audio).

Checkpoint folder (the decision): the ONNX file's bytes are the codec's only "weights": a uint8
buffer `onnx_model` saved in model.safetensors, with config.yaml holding the file's name, size and
hash and metadata.json the rates. So the folder is the standard one (`voxtok.load(dir)` rebuilds the
codec with no path outside the folder), its weights hash identifies the ONNX model that made a token
file, and copying the folder copies everything. The cost is memory: the bytes are held once by the
codec and once by onnxruntime.

It has no decoder (`decode` is a clear error, `can_decode` is False): CosyVoice's flow and vocoder
turn these tokens into audio.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxtok.audio import MelConfig, MelSpectrogram
from voxtok.codecs.base import Codec
from voxtok.config import check_keys, require_keys
from voxtok.errors import BadConfigError
from voxtok.onnx_session import check_signature, open_session, run_session
from voxtok.registry import file_hash, register

ONNX_NAME = "speech_tokenizer_v1.onnx"  # its name in a CosyVoice-300M release folder
WHAT = "S3 speech tokenizer"
CONFIG_KEYS = ("onnx_name", "onnx_bytes", "onnx_hash", "sample_rate", "n_mels", "hop_length", "codebook_size",
               "max_seconds")
V1 = {"sample_rate": 16000, "n_mels": 128, "hop_length": 320, "codebook_size": 4096, "max_seconds": 30.0}
WHISPER_DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest bin


def whisper_log_mel(wav: torch.Tensor, mel: MelSpectrogram) -> torch.Tensor:
    """One utterance [T] at 16 kHz -> Whisper's log-mel [n_mels, T // 160], as whisper.log_mel_spectrogram.

    `mel` is a MelSpectrogram with the "whisper" preset (its natural log of the power mel, floor 1e-10).
    """
    wav = wav.reshape(-1).float()
    frames = wav.numel() // mel.config.hop_length  # Whisper drops the last STFT frame
    if frames == 0:
        return wav.new_zeros(mel.config.n_mels, 0)
    # The centred STFT's reflect padding needs more than n_fft / 2 samples: pad a 10-12 ms scrap with
    # silence (Whisper itself fails on it); longer signals are untouched.
    wav = torch.nn.functional.pad(wav, (0, max(0, mel.config.n_fft // 2 + 1 - wav.numel())))
    log10 = mel(wav[None])[0, :, :frames] / math.log(10.0)
    log10 = torch.maximum(log10, log10.max() - WHISPER_DYNAMIC_RANGE)
    return (log10 + 4.0) / 4.0


@register("codec", "s3_onnx")
class S3OnnxCodec(Codec):
    """Encode-only codec running a released S3 tokenizer ONNX file (v1: 16 kHz in, 50 Hz, 4,096 codes).

    Config: onnx_name, onnx_bytes, onnx_hash (the file's), sample_rate, n_mels (the log-mel bins the
    model takes), hop_length (samples per token: 320 = 2 mel frames), codebook_size, max_seconds
    (longest piece the model takes in one run). Build one with `from_onnx`.
    """

    can_decode = False
    n_q = 1

    def __init__(self, config: dict[str, Any]):
        check_keys(config, CONFIG_KEYS, "s3_onnx")
        require_keys(config, CONFIG_KEYS, "s3_onnx")
        super().__init__(config)
        self.sample_rate = int(config["sample_rate"])
        self.hop_length = int(config["hop_length"])
        self.codebook_size = int(config["codebook_size"])
        mel_config = MelConfig.preset("whisper").with_(sample_rate=self.sample_rate, n_mels=int(config["n_mels"]))
        if self.hop_length % mel_config.hop_length:
            raise BadConfigError(f"s3_onnx hop_length {self.hop_length} must be a multiple of the mel hop "
                                 f"{mel_config.hop_length}")
        self.mel_frames_per_token = self.hop_length // mel_config.hop_length
        self.max_samples = int(float(config["max_seconds"]) * self.sample_rate) // self.hop_length * self.hop_length
        if self.max_samples < self.hop_length:
            raise BadConfigError(f"s3_onnx max_seconds {config['max_seconds']} is shorter than one token")
        self.mel = MelSpectrogram(mel_config)
        self.register_buffer("onnx_model", torch.zeros(int(config["onnx_bytes"]), dtype=torch.uint8))
        self._session = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "S3OnnxCodec":
        return cls(config)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, **settings: Any) -> "S3OnnxCodec":
        """Codec of an ONNX file (or a release folder holding speech_tokenizer_v1.onnx); `settings`
        override the v1 values of the config (sample_rate, n_mels, hop_length, codebook_size, max_seconds)."""
        path = Path(path)
        path = path / ONNX_NAME if path.is_dir() else path
        unknown = sorted(set(settings) - set(V1))
        if unknown:
            raise BadConfigError(f"unknown s3_onnx setting(s) {unknown} (settings: {sorted(V1)})")
        session = open_session(path, WHAT)  # refuses a missing or unreadable file before anything is built
        check_signature(session, WHAT, input_ranks=[3, 1], output_ranks=[2], where=path)
        data = np.fromfile(path, dtype=np.uint8)  # one writable copy of the file (hundreds of MB for the release)
        codec = cls({"onnx_name": path.name, "onnx_bytes": int(data.size), "onnx_hash": file_hash(path), **V1, **settings})
        codec.onnx_model.copy_(torch.from_numpy(data))
        codec._session = session
        return codec

    # -- running the ONNX model
    def _load_from_state_dict(self, *args, **kwargs):
        self._session = None  # new bytes: the session is rebuilt on the next encode
        super()._load_from_state_dict(*args, **kwargs)

    def session(self):
        """The onnxruntime session of the stored ONNX bytes (built on first use, on the buffer's device)."""
        if self._session is None:
            session = open_session(self.onnx_model.cpu().numpy().tobytes(), WHAT, str(self.onnx_model.device))
            check_signature(session, WHAT, input_ranks=[3, 1], output_ranks=[2])
            self._session = session
        return self._session

    def mel_frames(self, num_samples: int) -> int:
        """Whisper log-mel frames of a signal: one per 10 ms hop, the last STFT frame dropped."""
        return num_samples // self.mel.config.hop_length

    def code_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens the model gives for signals of `lengths` samples: ceil(mel frames / 2) for v1, per 30 s piece."""
        full, rest = torch.div(lengths, self.max_samples, rounding_mode="floor"), lengths % self.max_samples
        per_piece = -(-self.mel_frames(self.max_samples) // self.mel_frames_per_token)
        rest_frames = torch.div(rest, self.mel.config.hop_length, rounding_mode="floor")
        return full * per_piece + torch.div(rest_frames + self.mel_frames_per_token - 1, self.mel_frames_per_token,
                                            rounding_mode="floor")

    def _tokens(self, wav: torch.Tensor) -> torch.Tensor:
        """One piece [T] (T <= max_samples) -> its tokens int64 [ceil(frames / mel_frames_per_token)]."""
        feats = whisper_log_mel(wav, self.mel)
        frames = feats.shape[-1]
        if frames == 0:  # under 10 ms: no mel frame, no token
            return torch.zeros(0, dtype=torch.long)
        inputs = [feats[None].cpu().numpy().astype(np.float32), np.array([frames], dtype=np.int32)]
        tokens = torch.from_numpy(np.asarray(run_session(self.session(), WHAT, inputs)[0]).astype(np.int64)).reshape(-1)
        expected = -(-frames // self.mel_frames_per_token)
        if tokens.numel() != expected:
            raise BadConfigError(f"the {WHAT} gave {tokens.numel()} tokens for {frames} mel frames, expected {expected} "
                                 f"(hop_length {self.hop_length} does not fit this model)")
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < self.codebook_size:
            raise BadConfigError(f"the {WHAT} gave tokens outside 0..{self.codebook_size - 1} "
                                 f"(codebook_size does not fit this model)")
        return tokens

    def _encode(self, wav: torch.Tensor, lengths: torch.Tensor | None, n_q: int) -> torch.Tensor:
        lengths = torch.full((wav.shape[0],), wav.shape[-1]) if lengths is None else lengths.cpu()
        out = torch.zeros(wav.shape[0], 1, math.ceil(wav.shape[-1] / self.hop_length), dtype=torch.long)
        for i, length in enumerate(lengths.tolist()):
            signal = wav[i, 0, : int(length)]
            tokens = torch.cat([self._tokens(signal[start:start + self.max_samples])
                                for start in range(0, max(int(length), 1), self.max_samples)])
            out[i, 0, : tokens.numel()] = tokens
        return out.to(wav.device)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise BadConfigError("s3_onnx has no decoder (the released S3 tokenizer only encodes: CosyVoice's flow "
                             "and vocoder turn its tokens into audio)")

    def checkpoint_info(self) -> dict[str, Any]:
        return {**super().checkpoint_info(), "can_decode": False, "onnx_name": self.config["onnx_name"]}
