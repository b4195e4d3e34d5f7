"""Speaker encoders for the speaker-similarity metric, chosen by a spec string.

    resemblyzer        resemblyzer's 256-d d-vector (its weights ship in the package: the default)
    wavlm:DIR          a local transformers WavLMForXVector folder (e.g. microsoft/wavlm-base-plus-sv)
    campplus:FILE      CAM++ x-vectors (CosyVoice's speaker model, 192-d): campplus.onnx or a release folder

`check_speaker_encoder(spec)` validates a spec before a run starts; `speaker_embedding(wav, sr, spec)`
embeds one mono signal (None when nothing voiced is left to embed).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import torch

from voxtok.audio import resample
from voxtok.errors import BadConfigError

KINDS = ("resemblyzer", "wavlm", "campplus")


def _split(spec: str) -> tuple[str, str | None]:
    kind, _, path = spec.partition(":")
    if kind not in KINDS:
        raise BadConfigError(f"unknown speaker encoder '{spec}' (choose resemblyzer, wavlm:DIR or campplus:FILE)")
    if (kind == "resemblyzer") == bool(path):
        need = "takes no path" if kind == "resemblyzer" else "needs a path (e.g. wavlm:DIR)"
        raise BadConfigError(f"speaker encoder '{kind}' {need}: '{spec}'")
    return kind, path or None


def check_speaker_encoder(spec: str) -> None:
    """BadConfigError (one line) unless `spec` names an encoder that can run here."""
    kind, path = _split(spec)
    if kind == "campplus":
        from voxtok.tts.campplus import campplus_path

        if not campplus_path(path).is_file():
            raise BadConfigError("CAM++ speaker model not found (expected campplus.onnx or a folder holding it)", path)
    if kind == "wavlm" and not (Path(path) / "config.json").is_file():
        raise BadConfigError("speaker encoder folder has no config.json (expected a transformers "
                             "WavLMForXVector folder)", path)


@functools.lru_cache(maxsize=1)
def _resemblyzer():
    with warnings.catch_warnings():
        # resemblyzer and webrtcvad import deprecated scipy / pkg_resources names; not ours to fix.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from resemblyzer import VoiceEncoder

        return VoiceEncoder(device="cpu", verbose=False)


def _resemblyzer_embedding(wav16: np.ndarray) -> np.ndarray | None:
    encoder = _resemblyzer()  # first: it imports resemblyzer with its import warnings silenced
    from resemblyzer import preprocess_wav

    # preprocess_wav without source_sr only normalises and trims silence (webrtcvad).
    speech = preprocess_wav(wav16.astype(np.float32))
    if len(speech) < 1600:
        return None
    with torch.no_grad():
        return np.asarray(encoder.embed_utterance(speech), dtype=np.float64)


@functools.lru_cache(maxsize=2)
def _wavlm(folder: str):
    from voxtok.bench.hf_codecs import load_hf_model

    model, extractor = load_hf_model(folder, "cpu", "speaker similarity", model_class="WavLMForXVector")
    if extractor is None:
        raise BadConfigError("WavLM speaker folder lacks preprocessor_config.json", folder)
    return model, extractor


def _wavlm_embedding(wav16: np.ndarray, folder: str) -> np.ndarray | None:
    if len(wav16) < 1600:
        return None
    model, extractor = _wavlm(folder)
    inputs = extractor(wav16.astype(np.float32), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        embedding = model(**inputs).embeddings[0]
    return embedding.double().numpy()


def speaker_embedding(wav: np.ndarray, sr: int, spec: str = "resemblyzer") -> np.ndarray | None:
    """Embedding [D] of a mono float signal [T] at `sr` (resampled to 16 kHz), or None when too
    little speech is left (resemblyzer trims silence first)."""
    kind, path = _split(spec)
    check_speaker_encoder(spec)
    wav16 = resample(torch.as_tensor(wav, dtype=torch.float32), sr, 16000).reshape(-1).numpy()
    if kind == "resemblyzer":
        return _resemblyzer_embedding(wav16)
    if kind == "campplus":
        from voxtok.tts.campplus import campplus_embedding

        return campplus_embedding(wav16, 16000, str(path))
    return _wavlm_embedding(wav16, str(path))
