"""Audio crops with the time-aligned crops of teacher features, for distillation training.

Teacher features live in ShardStore stores under one folder (written by
`voxtok.recipes.extract_teachers`), keyed by utterance, always 2-D:

    lm         [T, D_lm]  frame-level LM features at the codec frame rate (word-piece states
                          repeated over the frames of their word)
    lm_tokens  [N, D_lm]  word-piece states
    lm_spans   [N, 2]     int, (start, end) frame of each piece, end exclusive
    lm_cls     [1, D_lm]  the LM's [CLS] state
    sm         [T, D_sm]  semantic (speech SSL) features at the codec frame rate

A codec asks for *streams* (its `teacher_streams`); a batch then carries, besides
{"utts", "wav" [B, 1, T], "lengths" [B]} from `collate_audio`:

    lm, sm              [B, F, D] crops (F = crop samples / hop), with lm_lengths / sm_lengths [B]
    sm_global           [B, D_sm] mean of sm over the WHOLE utterance
    lm_cls              [B, D_lm] the [CLS] state of the whole transcript
    lm_mean             [B, D_lm] mean of the word-piece states of the whole transcript
    lm_tokens           [B, N, D_lm] pieces overlapping the crop, lm_spans [B, N, 2] their frames
                        relative to the crop (clipped to it), lm_tokens_lengths [B]

Crops start at a multiple of the hop, so audio sample s of the crop and teacher frame s // hop
describe the same moment.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from voxtok.data.dataset import AudioClipDataset, collate_audio
from voxtok.data.shards import ShardStore
from voxtok.errors import BadConfigError, BadDataDirError

STORES = ("lm", "lm_tokens", "lm_spans", "lm_cls", "sm")
FRAME_STREAMS = ("lm", "sm")
VECTOR_STREAMS = ("sm_global", "lm_cls", "lm_mean")
TOKEN_STREAM = "lm_tokens"
STREAMS = (*FRAME_STREAMS, *VECTOR_STREAMS, TOKEN_STREAM)
# Which stores each stream reads.
STREAM_STORES = {"lm": ("lm",), "sm": ("sm",), "sm_global": ("sm",), "lm_cls": ("lm_cls",),
                 "lm_mean": ("lm_tokens",), "lm_tokens": ("lm_tokens", "lm_spans")}
# Every key a teacher batch can add to an audio batch.
TEACHER_BATCH_KEYS = frozenset({*STREAMS, "lm_lengths", "sm_lengths", "lm_spans", "lm_tokens_lengths"})
# Which store gives the feature width of each teacher ("lm" / "sm" distillation targets).
TEACHER_DIM_STORES = {"lm": ("lm", "lm_tokens", "lm_cls"), "sm": ("sm",)}


def check_streams(streams: Iterable[str]) -> list[str]:
    """The streams, sorted, after refusing unknown names."""
    streams = sorted(set(streams))
    unknown = [s for s in streams if s not in STREAMS]
    if unknown:
        raise BadConfigError(f"unknown teacher stream(s) {unknown} (choose from {list(STREAMS)})")
    return streams


def open_teacher_stores(teachers_dir: str | Path, streams: Iterable[str]) -> dict[str, ShardStore]:
    """The stores under `teachers_dir` that `streams` need, by store name."""
    root = Path(teachers_dir)
    if not root.is_dir():
        raise BadDataDirError("teacher feature folder does not exist", root)
    names = sorted({store for s in check_streams(streams) for store in STREAM_STORES[s]})
    missing = [n for n in names if not (root / n / "meta.json").is_file()]
    if missing:
        how = " with sm.model_dir or sm.s3_model" if "sm" in missing else ""
        raise BadDataDirError(f"teacher store(s) {missing} missing (run voxtok.recipes.extract_teachers{how})", root)
    return {name: ShardStore(root / name) for name in names}


def _store_dim(store: ShardStore) -> int:
    keys = store.keys()
    if not keys:
        raise BadDataDirError("teacher store is empty", store.root)
    shape = store.shape(keys[0])
    if len(shape) != 2:
        raise BadDataDirError(f"teacher arrays must be 2-D [T, D], found {shape}", store.root)
    return int(shape[1])


def resolve_teacher_dims(model_cfg: dict[str, Any], teachers_dir: str | Path | None) -> dict[str, Any]:
    """Fill `dim: null` of the model's distillation targets from the teacher stores, and refuse
    a configured width that differs from the stored features. Returns the (updated) config."""
    targets = model_cfg.get("distill") or {}
    for name, target in targets.items():
        if target is None:
            continue
        stores = [Path(teachers_dir) / s for s in TEACHER_DIM_STORES.get(name, ())] if teachers_dir else []
        found = next((s for s in stores if (s / "meta.json").is_file()), None)
        if found is None:
            if target.get("dim") is None:
                raise BadConfigError(f"distill.{name}.dim is null and no teacher store gives it "
                                     f"(teachers_dir={teachers_dir})")
            continue
        dim = _store_dim(ShardStore(found))
        if target.get("dim") is None:
            target["dim"] = dim
        elif int(target["dim"]) != dim:
            raise BadConfigError(f"distill.{name}.dim is {target['dim']} but the teacher features in "
                                 f"{found} are {dim}-dimensional")
    return model_cfg


class TeacherClipDataset(AudioClipDataset):
    """AudioClipDataset whose items also carry the teacher streams for the crop.

    Args: as AudioClipDataset, plus
        hop_length: codec samples per frame; the crop is rounded down to whole frames and starts
            at a multiple of it.
        teachers_dir: folder of teacher stores; streams: what to load (see module doc).
    Utterances missing from a needed store are left out (with one warning line).
    """

    def __init__(self, data_dir: str | Path, sample_rate: int, hop_length: int, teachers_dir: str | Path,
                 streams: Sequence[str], crop_seconds: float | None = None, random_crop: bool = True,
                 cache: bool = True, max_utts: int | None = None):
        super().__init__(data_dir, sample_rate, crop_seconds, random_crop, cache, max_utts)
        self.hop = int(hop_length)
        if self.crop is not None:
            self.crop = (self.crop // self.hop) * self.hop
            if self.crop == 0:
                raise BadConfigError(f"crop of {crop_seconds} s is shorter than one codec frame")
        self.streams = check_streams(streams)
        self.stores = open_teacher_stores(teachers_dir, self.streams)
        for name, store in self.stores.items():
            rate = store.meta.get("frame_rate")
            if rate is not None and not math.isclose(float(rate), sample_rate / self.hop):
                raise BadConfigError(f"teacher store '{name}' has {rate} frames/s, the codec "
                                     f"{sample_rate / self.hop:g}: extract the teachers with the codec's hop",
                                     store.root)
        have = [u for u in self.utts if all(u in store for store in self.stores.values())]
        if not have:
            raise BadDataDirError(f"no utterance of {data_dir} has teacher features", teachers_dir)
        if len(have) < len(self.utts):
            print(f"warning: {len(self.utts) - len(have)} of {len(self.utts)} utterances have no teacher "
                  f"features in {teachers_dir}; training without them", file=sys.stderr)
        self.utts = have

    def _frame_crop(self, utt: str, name: str, first: int, frames: int) -> tuple[torch.Tensor, int]:
        """Rows first..first+frames of a frame-level store, zero-padded to `frames`; valid rows."""
        array = self.stores[name][utt]
        part = torch.from_numpy(np.asarray(array[first:first + frames], dtype=np.float32))
        out = torch.zeros(frames, array.shape[1])
        out[: part.shape[0]] = part
        return out, int(part.shape[0])

    def _tokens(self, utt: str, first: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Word pieces overlapping frames [first, first + frames): states [N, D], spans [N, 2]."""
        states = self.stores["lm_tokens"][utt]
        spans = np.asarray(self.stores["lm_spans"][utt], dtype=np.int64).reshape(-1, 2)
        if spans.shape[0] != states.shape[0]:
            raise BadDataDirError(f"{utt}: {states.shape[0]} word pieces but {spans.shape[0]} spans",
                                  self.stores["lm_spans"].root)
        # A piece with an empty span still has a position; keep it if that position is inside.
        keep = (np.maximum(spans[:, 1], spans[:, 0] + 1) > first) & (spans[:, 0] < first + frames)
        shifted = np.clip(spans[keep] - first, 0, frames)
        return (torch.from_numpy(np.asarray(states[keep], dtype=np.float32)),
                torch.from_numpy(shifted))

    def __getitem__(self, index: int) -> dict:
        utt = self.utts[index]
        wav = self.audio(utt)
        total = wav.shape[-1]
        crop = self.crop if self.crop is not None else -(-total // self.hop) * self.hop
        start = 0
        if total > crop and self.random_crop:
            start = random.randint(0, (total - crop) // self.hop) * self.hop
        piece = wav[:, start:start + crop]
        item = {"utt": utt, "wav": torch.nn.functional.pad(piece, (0, crop - piece.shape[-1])),
                "length": piece.shape[-1]}
        first, frames = start // self.hop, crop // self.hop
        for name in FRAME_STREAMS:
            if name in self.streams:
                item[name], item[f"{name}_lengths"] = self._frame_crop(utt, name, first, frames)
        if "sm_global" in self.streams:
            item["sm_global"] = torch.from_numpy(np.asarray(self.stores["sm"][utt], dtype=np.float32).mean(0))
        if "lm_cls" in self.streams:
            item["lm_cls"] = torch.from_numpy(np.asarray(self.stores["lm_cls"][utt], dtype=np.float32).reshape(-1))
        if "lm_mean" in self.streams:
            item["lm_mean"] = torch.from_numpy(np.asarray(self.stores["lm_tokens"][utt], dtype=np.float32).mean(0))
        if TOKEN_STREAM in self.streams:
            item["lm_tokens"], item["lm_spans"] = self._tokens(utt, first, frames)
        return item


def _pad_rows(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[N_i, ...] tensors -> [B, N_max, ...] zero-padded, and N_i [B]."""
    lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
    out = rows[0].new_zeros(len(rows), max(int(lengths.max()), 1), *rows[0].shape[1:])
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out, lengths


def collate_teacher_batch(items: Sequence[dict]) -> dict:
    """`collate_audio` plus the teacher streams the items carry (keys in the module doc)."""
    batch = collate_audio(items)
    first = items[0]
    for name in FRAME_STREAMS:
        if name in first:
            batch[name] = torch.stack([it[name] for it in items])
            batch[f"{name}_lengths"] = torch.tensor([it[f"{name}_lengths"] for it in items], dtype=torch.long)
    for name in VECTOR_STREAMS:
        if name in first:
            batch[name] = torch.stack([it[name] for it in items])
    if TOKEN_STREAM in first:
        batch["lm_tokens"], batch["lm_tokens_lengths"] = _pad_rows([it["lm_tokens"] for it in items])
        batch["lm_spans"], _ = _pad_rows([it["lm_spans"] for it in items])
    return batch
