"""The `data:` blocks of model configs (how a recipe crops, batches and loads its training data),
read strictly with `voxtok.config.dataclass_from_dict`: an unknown key is a BadConfigError naming
it, a missing required one too.

- `ClipDataOptions`: codec and vocoder GAN training on fixed-length crops (configs/codec/*, vocoder_*);
- `TranscribedDataOptions`: CTC training of the S3 tokenizer on whole transcribed utterances;
- `TTSDataOptions`: TTS training on utterances with tokens / speaker embeddings / mels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ClipDataOptions:
    """crop_seconds: training crop; valid_crop_seconds: validation crop (from the start);
    speed_perturb: Kaldi-style speed range 1 +- s (0: off)."""

    crop_seconds: float
    batch_size: int
    valid_crop_seconds: float = 3.0
    num_workers: int = 0
    speed_perturb: float = 0.0


@dataclass
class TranscribedDataOptions:
    """max_seconds: longer utterances are left out (None: keep all)."""

    batch_size: int
    max_seconds: float | None = None
    num_workers: int = 0


@dataclass
class TTSDataOptions:
    """tokens / embeddings: the model trains on speech tokens / speaker embeddings (the recipe then
    needs token_dir / embedding_dir); mel: the mel the dataset computes (None: the model's own
    `mel` / `mel_preset`, or no mels); max_tokens_per_batch: length-bucketed batches instead of
    batch_size; skip_bad: leave out utterances that cannot be loaded instead of failing."""

    tokens: bool = True
    embeddings: bool = True
    mel: Any = None
    max_seconds: float = 30.0
    batch_size: int = 16
    max_tokens_per_batch: int | None = None
    num_workers: int = 0
    skip_bad: bool = False
