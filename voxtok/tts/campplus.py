"""CAM++ speaker embeddings (CosyVoice's x-vectors, 192-d) from the released `campplus.onnx`.

    encoder = CamPlusEncoder("pretrained/CosyVoice-300M/campplus.onnx")   # or the release folder
    emb = encoder.embed_utterance(wav, sr)                                # float32 [192]

The front end is CosyVoice's (cosyvoice/cli/frontend.py `_extract_spk_embedding`): audio at 16 kHz
in [-1, 1] (any rate in, resampled here), 80-bin Kaldi fbank (`torchaudio.compliance.kaldi.fbank`,
dither 0, 25 ms / 10 ms frames), minus its mean over time, then the ONNX model with input [1, F, 80]
and output [1, 192]. The embedding is returned as the model gives it (not L2-normalised: CosyVoice's
LLM and flow normalise it themselves, as VoxTok's do). The API is `voxtok.tts.speaker.SpeakerEncoder`'s
(`prepare`, `embed_prepared`, `embed_batch`, `embed_utterance`), so prompts, spk2embedding stores and
the benchmark's speaker similarity take either encoder.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from voxtok.audio import mono_speech
from voxtok.errors import BadAudioError, BadConfigError
from voxtok.onnx_session import INSTALL_HINT, check_signature, open_session, run_session

ONNX_NAME = "campplus.onnx"  # its name in a CosyVoice release folder
EMBEDDING_DIM = 192
SAMPLE_RATE = 16000
N_MELS = 80
MIN_SECONDS = 0.25  # as the d-vector encoder: shorter input says little about a voice
WHAT = "CAM++ speaker model"


def campplus_path(path: str | os.PathLike) -> Path:
    """The .onnx file itself, or `campplus.onnx` inside a release folder."""
    path = Path(path)
    return path / ONNX_NAME if path.is_dir() else path


def kaldi_fbank(wav16: torch.Tensor) -> torch.Tensor:
    """Audio [T] at 16 kHz in [-1, 1] -> mean-normalised 80-bin Kaldi fbank [F, 80] (F = (T - 400) // 160 + 1)."""
    try:
        import torchaudio.compliance.kaldi as kaldi
    except ImportError:
        raise BadConfigError(f"the CAM++ front end needs torchaudio (Kaldi fbank): {INSTALL_HINT}") from None
    feats = kaldi.fbank(wav16.reshape(1, -1).float(), num_mel_bins=N_MELS, dither=0.0, sample_frequency=SAMPLE_RATE)
    return feats - feats.mean(dim=0, keepdim=True)


class CamPlusEncoder:
    """Utterance -> CAM++ x-vector [192] through onnxruntime (CPU, or CUDA when the build has it).

    Args:
        onnx_path: campplus.onnx, or a CosyVoice release folder holding it.
        device: where onnxruntime runs ("cpu" or "cuda[:i]"); embeddings are returned on the CPU.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, onnx_path: str | os.PathLike, device: str = "cpu"):
        from voxtok.registry import file_hash

        self.path = campplus_path(onnx_path)
        self.session = open_session(self.path, WHAT, device)
        check_signature(self.session, WHAT, input_ranks=[3], output_ranks=[2], where=self.path)
        size = self.session.get_outputs()[0].shape[-1]
        self.dim = int(size) if isinstance(size, int) else EMBEDDING_DIM
        self.checkpoint_hash = file_hash(self.path)
        self.device = str(device)

    def to(self, device: str | torch.device) -> "CamPlusEncoder":
        """Run on `device` from now on (a new onnxruntime session when it changes); returns the encoder."""
        if str(device) != self.device:
            self.session = open_session(self.path, WHAT, str(device))
            self.device = str(device)
        return self

    @property
    def store_meta(self) -> dict:
        """What a spk2embedding store made with this encoder records about it."""
        return {"model": "campplus", "dim": self.dim, "sample_rate": SAMPLE_RATE, "layout": "[dim]",
                "checkpoint_hash": self.checkpoint_hash}

    def prepare(self, wav, sr: int, name: object = "<waveform>") -> np.ndarray:
        """[T] / [1, T] audio at `sr` -> float32 [T'] at 16 kHz, or BadAudioError (silent, too short, ...)."""
        return mono_speech(wav, sr, SAMPLE_RATE, name, MIN_SECONDS).numpy()

    @torch.no_grad()
    def embed_prepared(self, speeches: Sequence[np.ndarray]) -> torch.Tensor:
        """Outputs of `prepare` -> float32 [B, dim] (one ONNX run per utterance, as CosyVoice)."""
        out = []
        for speech in speeches:
            feats = kaldi_fbank(torch.from_numpy(np.asarray(speech, dtype=np.float32)))
            (embedding,) = run_session(self.session, WHAT, [feats[None].numpy()], self.path)[:1]
            out.append(torch.from_numpy(np.asarray(embedding, dtype=np.float32)).reshape(-1))
        if out and out[0].numel() != self.dim:
            raise BadConfigError(f"the {WHAT} gave a {out[0].numel()}-d vector, expected {self.dim}", self.path)
        return torch.stack(out) if out else torch.zeros(0, self.dim)

    def embed_batch(self, wavs: Sequence, sr: int, names: Sequence[object] | None = None) -> torch.Tensor:
        """Utterances (each [1, T_i] or [T_i]) at `sr` -> float32 [B, dim]; `names` label errors."""
        names = list(names) if names is not None else [f"<utterance {i}>" for i in range(len(wavs))]
        return self.embed_prepared([self.prepare(w, sr, n) for w, n in zip(wavs, names)])

    def embed_utterance(self, wav, sr: int, name: object = "<waveform>") -> torch.Tensor:
        """One utterance [1, T] (or [T]) at `sr` -> float32 [dim]."""
        return self.embed_batch([wav], sr, [name])[0]


@functools.lru_cache(maxsize=2)
def _cached_encoder(path: str) -> CamPlusEncoder:
    return CamPlusEncoder(path)


def campplus_embedding(wav, sr: int, path: str | os.PathLike) -> np.ndarray | None:
    """x-vector float64 [192] of a mono signal [T] at `sr` with the CAM++ model at `path` (loaded once per
    process), or None when the signal is too short or silent to embed (the speaker-similarity metric's use)."""
    encoder = _cached_encoder(str(campplus_path(path)))
    try:
        return encoder.embed_utterance(wav, sr).double().numpy()
    except BadAudioError:
        return None
