"""Extract teacher features for distillation into sharded stores that codec training reads.

Example:
    python -m voxtok.recipes.extract_teachers data_dir=data out_dir=dump/teachers \
        aligner.s3_model=exp/s3/model sm.model_dir=/models/hubert-base-ls960 nj=2

For each split, <out_dir>/<split>/ holds one ShardWriter store per kind (arrays per utterance):
    lm         [T, D]  LM word-piece states mapped to speech frames (LMTeacher.frame_features)
    lm_tokens  [N, D]  the N word-piece states
    lm_spans   [N, 2]  int32 frame span [start, end) of each piece (its word's frames)
    lm_cls     [1, D]  the [CLS] state (one row, so that every store is 2-D)
    sm         [T, D]  speech-teacher states at the same frames (only with sm.model_dir / sm.s3_model)
T = ceil(num_samples / hop) for the audio at `sample_rate`: the frame count of a codec with that hop.
Word spans come from CTC forced alignment with `aligner.s3_model`, else proportional to word
length. meta.json of every store records the teacher, its layer, frame rate and dimension.
A killed run resumes: utterances already in a store are skipped.
The teachers run on `device` (cpu, cuda, cuda:N, auto) under `compute_dtype` autocast (float32,
bfloat16, float16); `dtype` is the stores' number format.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from voxtok.codecs.teachers import parse_layer
from voxtok.data.kaldi import DataDir
from voxtok.errors import BadConfigError, VoxTokError
from voxtok.recipes import recipe_main

LM_STORES = ("lm", "lm_tokens", "lm_spans", "lm_cls")
# Every store is 2-D (the distillation data loader relies on it).
STORE_NDIM = {"lm": 2, "lm_tokens": 2, "lm_spans": 2, "lm_cls": 2, "sm": 2}
STORE_LAYOUT = {"lm": "[T, D]", "lm_tokens": "[N, D]", "lm_spans": "[N, 2] start,end (end exclusive)",
                "lm_cls": "[1, D]", "sm": "[T, D]"}


def num_frames(num_samples: int, hop: int) -> int:
    """Frames a codec with hop `hop` gives for `num_samples` samples: ceil(num_samples / hop)."""
    return -(-num_samples // hop)


@dataclass(frozen=True)
class ExtractSettings:
    """Everything a worker needs (plain values, so it crosses process boundaries)."""

    sample_rate: int
    hop: int
    dtype: str
    shard_items: int
    resume: bool
    device: str
    lm_dir: str | None
    lm_layer: Any
    aligner: str | None
    sm_dir: str | None
    sm_s3: str | None
    sm_layer: Any
    compute_dtype: str = "float32"  # autocast of the teachers (the stores' format is `dtype`)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "ExtractSettings":
        """Read and check the recipe config."""
        sr, hop = int(cfg.sample_rate), int(cfg.hop)
        if sr <= 0 or hop <= 0:
            raise BadConfigError(f"sample_rate ({sr}) and hop ({hop}) must be positive")
        if cfg.get("frame_rate") is not None and not math.isclose(float(cfg.frame_rate), sr / hop):
            raise BadConfigError(f"frame_rate {cfg.frame_rate} does not match sample_rate / hop = {sr / hop:g}")
        if cfg.sm.get("model_dir") and cfg.sm.get("s3_model"):
            raise BadConfigError("give one speech teacher: sm.model_dir or sm.s3_model, not both")
        from voxtok.device import resolve_device, resolve_dtype

        # Checked here, before any worker loads a teacher: an absent GPU is one line.
        device = resolve_device(cfg.get("device", "cpu"))
        compute = str(resolve_dtype(cfg.get("compute_dtype", "float32"), device)).removeprefix("torch.")
        return cls(sr, hop, str(cfg.dtype), int(cfg.shard_items), bool(cfg.resume), str(device),
                   cfg.lm.get("model_dir"), parse_layer(cfg.lm.get("layer", "mean")), cfg.aligner.get("s3_model"),
                   cfg.sm.get("model_dir"), cfg.sm.get("s3_model"), parse_layer(cfg.sm.get("layer", "mean")), compute)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def has_sm(self) -> bool:
        return bool(self.sm_dir or self.sm_s3)


class Extractor:
    """The teachers (and aligner) of one worker, and the per-utterance extraction."""

    def __init__(self, settings: ExtractSettings):
        from voxtok.codecs.teachers import LMTeacher, SMTeacher

        self.s = settings
        self.lm = LMTeacher(settings.lm_dir, settings.lm_layer, settings.device)
        self.sm = None
        if settings.sm_dir:
            self.sm = SMTeacher.from_hf(settings.sm_dir, settings.sm_layer, settings.device)
        elif settings.sm_s3:
            self.sm = SMTeacher.from_s3(settings.sm_s3, settings.sm_layer, settings.device)
        self.aligner = None
        if settings.aligner:
            from voxtok.registry import load

            self.aligner = load(settings.aligner, map_location=settings.device, kind="codec")
            if not hasattr(self.aligner, "ctc_log_probs"):
                raise BadConfigError(f"codec '{self.aligner.codec_name}' has no CTC head to align with",
                                     settings.aligner)

    def metas(self) -> dict[str, dict]:
        """meta.json contents of every store this extractor writes."""
        common = {"frame_rate": self.s.frame_rate, "sample_rate": self.s.sample_rate, "hop": self.s.hop,
                  "frame_rule": "ceil(num_samples / hop)",
                  "alignment": f"ctc:{self.s.aligner}" if self.s.aligner else "proportional"}
        metas = {name: {**common, "kind": name, "layout": STORE_LAYOUT[name], **self.lm.describe()}
                 for name in LM_STORES}
        if self.sm is not None:
            metas["sm"] = {**common, "kind": "sm", "layout": STORE_LAYOUT["sm"], **self.sm.describe()}
        return metas

    def word_spans(self, wav: torch.Tensor, text: str, frames: int):
        """Word spans on the codec's frames (None -> proportional) and whether CTC alignment failed."""
        from voxtok.audio import resample
        from voxtok.codecs.align import AlignmentError, align_words, rescale_word_spans
        from voxtok.errors import BadTextError

        if self.aligner is None:
            return None, False
        audio = resample(wav, self.s.sample_rate, self.aligner.sample_rate).to(self.s.device)
        try:
            spans, model_frames = align_words(self.aligner, audio, text)
        except (AlignmentError, BadTextError):
            # Too long for the frames, or symbols the CTC vocabulary lacks (digits): the LM still
            # reads the transcript, placed proportionally.
            return None, True
        return rescale_word_spans(spans, model_frames, frames), False

    def extract(self, wav: torch.Tensor, text: str) -> tuple[dict[str, np.ndarray], bool]:
        """Arrays of every store for one utterance wav [1, T] at sample_rate; plus 'fell back to proportional'.
        The teachers and the aligner run under `compute_dtype` autocast; the arrays are float32."""
        from voxtok.device import precision, resolve_dtype

        with precision(self.s.device, resolve_dtype(self.s.compute_dtype, self.s.device)):
            return self._extract(wav, text)

    def _extract(self, wav: torch.Tensor, text: str) -> tuple[dict[str, np.ndarray], bool]:
        frames = num_frames(wav.shape[-1], self.s.hop)
        spans, fell_back = self.word_spans(wav, text, frames)
        tokens = self.lm.token_features(text)
        out = {
            "lm": self.lm.frame_features(text, frames, spans, tokens=tokens).numpy(),
            "lm_tokens": tokens.states.numpy(),
            "lm_spans": self.lm.token_spans(text, frames, spans, tokens=tokens).numpy().astype(np.int32),
            "lm_cls": tokens.cls[None].numpy(),
        }
        if self.sm is not None:
            out["sm"] = self.sm.features(wav, self.s.frame_rate, num_frames=frames,
                                         sample_rate=self.s.sample_rate).numpy()
        n = len(tokens.pieces)
        expected = {"lm": (frames, self.lm.dim), "lm_tokens": (n, self.lm.dim), "lm_spans": (n, 2),
                    "lm_cls": (1, self.lm.dim), "sm": (frames, self.sm.dim if self.sm else 0)}
        for name, arr in out.items():
            assert arr.shape == expected[name], f"{name}: shape {arr.shape} != {expected[name]}"
        return out, fell_back


@functools.lru_cache(maxsize=1)
def get_extractor(settings: ExtractSettings) -> Extractor:
    """One Extractor per process and settings: loading the teachers costs seconds, splits reuse them."""
    return Extractor(settings)


def extract_part(settings: ExtractSettings, data_dir: str, utts: list[str], out_dir: str, rank: int,
                 threads: int) -> tuple[int, int, dict[str, str]]:
    """Extract `utts` into the stores under `out_dir` as writer `rank`; returns (stored, fallbacks, failures)."""
    from contextlib import ExitStack

    from voxtok.data.dataset import load_utterance
    from voxtok.data.shards import ShardWriter

    torch.set_num_threads(threads)
    extractor = get_extractor(settings)
    data = DataDir.load(data_dir)
    failed: dict[str, str] = {}
    stored = fallbacks = 0
    with ExitStack() as stack:
        writers = {name: stack.enter_context(ShardWriter(
            Path(out_dir) / name, meta, dtype="int32" if name == "lm_spans" else settings.dtype,
            shard_items=settings.shard_items, rank=rank, resume=settings.resume, expect_ndim=STORE_NDIM[name]))
            for name, meta in extractor.metas().items()}
        for utt in utts:
            if all(utt in w for w in writers.values()):
                continue
            try:
                if not data.text.get(utt, "").strip():
                    raise VoxTokError(f"{utt}: no transcript in the data dir's text file")
                wav = load_utterance(data, utt, settings.sample_rate)
                arrays, fell_back = extractor.extract(wav, data.text[utt])
            except VoxTokError as err:
                failed[utt] = str(err)
                continue
            for name, arr in arrays.items():
                if utt not in writers[name]:  # a kill may have left an utterance in some stores only
                    writers[name].add(utt, arr)
            stored += 1
            fallbacks += int(fell_back)
    return stored, fallbacks, failed


def extract_split(settings: ExtractSettings, data_dir: Path, out_dir: Path, nj: int) -> str:
    """Extract one data dir with `nj` processes; returns a one-line summary."""
    utts = DataDir.load(data_dir).utts
    if nj <= 1:
        results = [extract_part(settings, str(data_dir), utts, str(out_dir), 0, torch.get_num_threads())]
    else:
        parts = [utts[i::nj] for i in range(nj)]
        with ProcessPoolExecutor(nj) as pool:
            results = list(pool.map(extract_part, [settings] * nj, [str(data_dir)] * nj, parts,
                                    [str(out_dir)] * nj, range(nj), [1] * nj))
    stored = sum(r[0] for r in results)
    fallbacks = sum(r[1] for r in results)
    failed = {k: v for r in results for k, v in r[2].items()}
    for reason in failed.values():
        print(f"skipped: {reason}")
    note = f", {fallbacks} not CTC-alignable (proportional spans used)" if settings.aligner else ""
    return (f"{data_dir}: {len(utts)} utterances, {stored} newly stored, {len(failed)} failed{note} -> {out_dir}")


def run(cfg: DictConfig) -> list[str]:
    """Extract every split of the config; returns the summary lines."""
    settings = ExtractSettings.from_config(cfg)
    if not settings.has_sm:
        print("note: no speech teacher configured (sm.model_dir or sm.s3_model): the 'sm' store is skipped")
    splits = cfg.get("splits")
    pairs = [(Path(cfg.data_dir), Path(cfg.out_dir))] if not splits else \
        [(Path(cfg.data_dir) / s, Path(cfg.out_dir) / s) for s in splits]
    summaries = []
    for data_dir, out_dir in pairs:
        summaries.append(extract_split(settings, data_dir, out_dir, int(cfg.nj)))
        print(summaries[-1])
    return summaries


@recipe_main("extract_teachers")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
