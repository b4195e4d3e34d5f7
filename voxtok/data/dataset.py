"""Torch datasets over Kaldi data dirs: audio clips for codec/vocoder training, transcribed
utterances for CTC training, batching helpers.

Batches follow the DESIGN contract: audio [B, 1, T] float32 with `lengths` [B] (valid samples).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from voxtok.audio import audio_duration, load_audio, resample
from voxtok.data.kaldi import DataDir
from voxtok.errors import BadConfigError, BadDataDirError


def load_utterance(data: DataDir, utt: str, sample_rate: int) -> torch.Tensor:
    """Audio of one utterance of a data dir as [1, T] at `sample_rate` (segments honoured)."""
    if data.segments and utt in data.segments:
        rec, start, end = data.segments[utt]
        wav, _ = load_audio(data.wav_scp[rec], sample_rate, check=False)
        return wav[:, int(start * sample_rate):int(end * sample_rate)]
    return load_audio(data.wav_scp[utt], sample_rate)[0]


class AudioClipDataset(Dataset):
    """Utterances of a data dir as {"utt", "wav" [1, T], "length"} at `sample_rate`.

    With `crop_seconds`, each item is a crop of that length (random in training, from the start
    otherwise); shorter utterances are zero-padded and `length` says how much is real.
    `cache=True` keeps decoded audio in memory: the mini corpus fits and CPU training is
    otherwise dominated by decoding and resampling.

    `speed_perturb=s` (0 <= s < 0.5) plays each item at a random speed in [1 - s, 1 + s] (steps
    of 1%), Kaldi/ESPnet speed perturbation: pitch, formants and tempo move together, so a
    corpus with few speakers covers more voices. A crop is cut from the `crop x speed` source
    samples that become it, so it still holds `crop` samples.
    """

    def __init__(self, data_dir: str | Path, sample_rate: int, crop_seconds: float | None = None,
                 random_crop: bool = True, cache: bool = True, max_utts: int | None = None,
                 speed_perturb: float = 0.0):
        if not 0.0 <= float(speed_perturb) < 0.5:
            raise BadConfigError(f"speed_perturb must be in [0, 0.5), got {speed_perturb}")
        self.speed_percent = round(100 * float(speed_perturb))
        self.data = DataDir.load(data_dir)
        self.utts = self.data.utts[:max_utts] if max_utts else self.data.utts
        if not self.utts:
            raise BadDataDirError("data dir has no utterances", data_dir)
        self.sample_rate = sample_rate
        self.crop = int(crop_seconds * sample_rate) if crop_seconds else None
        self.random_crop = random_crop
        self._cache: dict[str, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.utts)

    def audio(self, utt: str) -> torch.Tensor:
        """Full utterance [1, T]."""
        if self._cache is not None and utt in self._cache:
            return self._cache[utt]
        wav = load_utterance(self.data, utt, self.sample_rate)
        if self._cache is not None:
            self._cache[utt] = wav
        return wav

    def _speed(self) -> int:
        """This item's speed in percent (100 = unchanged)."""
        return 100 + random.randint(-self.speed_percent, self.speed_percent) if self.speed_percent else 100

    def __getitem__(self, index: int) -> dict:
        utt = self.utts[index]
        wav = self.audio(utt)
        speed = self._speed()
        if self.crop is None:
            wav = change_speed(wav, speed)
            return {"utt": utt, "wav": wav, "length": wav.shape[-1]}
        span = math.ceil(self.crop * speed / 100)  # source samples that become one crop
        total = wav.shape[-1]
        if total >= span:
            start = random.randint(0, total - span) if self.random_crop else 0
            wav = wav[:, start:start + span]
        wav = change_speed(wav, speed)
        if wav.shape[-1] >= self.crop:
            return {"utt": utt, "wav": wav[:, :self.crop], "length": self.crop}
        padded = torch.zeros(1, self.crop)
        padded[:, :wav.shape[-1]] = wav
        return {"utt": utt, "wav": padded, "length": wav.shape[-1]}


def change_speed(wav: torch.Tensor, percent: int) -> torch.Tensor:
    """[C, T] audio played at `percent`/100 speed -> [C, ~T * 100 / percent] (pitch moves with it)."""
    # Resampling from a rate of `percent` to 100 and reading the result at the original rate
    # is the sox `speed` effect that Kaldi's perturb_data_dir_speed.sh uses.
    return wav if percent == 100 else resample(wav, percent, 100, quality="HQ")


def pad_batch(wavs: Sequence[torch.Tensor], multiple_of: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad [1, T_i] signals to one batch [B, 1, T_max] (rounded up to `multiple_of`)."""
    lengths = torch.tensor([w.shape[-1] for w in wavs], dtype=torch.long)
    total = int(lengths.max())
    total = -(-total // multiple_of) * multiple_of
    batch = torch.zeros(len(wavs), 1, total)
    for i, w in enumerate(wavs):
        batch[i, :, :w.shape[-1]] = w
    return batch, lengths


def collate_audio(items: Sequence[dict]) -> dict:
    """Collate dataset items into {"utts", "wav" [B, 1, T], "lengths" [B]}."""
    wav, _ = pad_batch([it["wav"] for it in items])
    return {"utts": [it["utt"] for it in items], "wav": wav,
            "lengths": torch.tensor([it["length"] for it in items], dtype=torch.long)}


def utterance_duration(data: DataDir, utt: str) -> float:
    """Seconds of one utterance: from utt2dur, else its segment, else the audio file's header."""
    if data.utt2dur and utt in data.utt2dur:
        return data.utt2dur[utt]
    if data.segments and utt in data.segments:
        _, start, end = data.segments[utt]
        return end - start
    return audio_duration(data.wav_scp[utt])


class TranscribedAudioDataset(AudioClipDataset):
    """Whole utterances with character targets: {"utt", "wav" [1, T], "length", "text", "targets" [N]}.

    `vocab` is any object with `encode(text, name) -> list[int]` (e.g. `voxtok.codecs.s3.CharVocab`);
    every transcript is encoded up front, so a bad one fails before training starts, naming the
    utterance. Utterances longer than `max_seconds` are left out (`self.skipped` lists them):
    cropping would cut audio away from the words its transcript still holds.
    """

    def __init__(self, data_dir: str | Path, sample_rate: int, vocab, max_seconds: float | None = None,
                 cache: bool = True, max_utts: int | None = None):
        super().__init__(data_dir, sample_rate, crop_seconds=None, random_crop=False, cache=cache, max_utts=max_utts)
        missing = [utt for utt in self.utts if utt not in self.data.text]
        if missing:
            raise BadDataDirError(f"no transcript for utterance '{missing[0]}' ({len(missing)} without text)",
                                  Path(data_dir) / "text")
        self.durations = {utt: utterance_duration(self.data, utt) for utt in self.utts}
        too_long = {u for u in self.utts if max_seconds is not None and self.durations[u] > max_seconds}
        self.skipped = sorted(too_long)
        self.utts = [u for u in self.utts if u not in too_long]
        if not self.utts:
            raise BadDataDirError(f"every utterance is longer than max_seconds={max_seconds}", data_dir)
        self.targets = {utt: torch.tensor(vocab.encode(self.data.text[utt], f"{Path(data_dir) / 'text'}: {utt}"),
                                          dtype=torch.long) for utt in self.utts}

    def lengths(self) -> list[float]:
        """Duration in seconds of each item, in dataset order (for `LengthBucketSampler`)."""
        return [self.durations[utt] for utt in self.utts]

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        utt = item["utt"]
        return {**item, "text": self.data.text[utt], "targets": self.targets[utt]}


def collate_transcribed(items: Sequence[dict]) -> dict:
    """`collate_audio` plus {"texts", "targets" [B, N_max] (0-padded), "target_lengths" [B]}."""
    batch = collate_audio(items)
    target_lengths = torch.tensor([len(it["targets"]) for it in items], dtype=torch.long)
    targets = torch.zeros(len(items), int(target_lengths.max()), dtype=torch.long)
    for i, it in enumerate(items):
        targets[i, : len(it["targets"])] = it["targets"]
    return {**batch, "texts": [it["text"] for it in items], "targets": targets, "target_lengths": target_lengths}


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar-length items (less padding), at most `max_frames` total samples.

    `lengths[i]` is the length of item i in any unit; batches are shuffled when `shuffle`.
    """

    def __init__(self, lengths: Sequence[int], max_frames: int, shuffle: bool = False, seed: int = 0):
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def _batches(self) -> list[list[int]]:
        order = sorted(range(len(self.lengths)), key=lambda i: self.lengths[i])
        batches, current, longest = [], [], 0
        for i in order:
            longest_if_added = max(longest, self.lengths[i])
            if current and longest_if_added * (len(current) + 1) > self.max_frames:
                batches.append(current)
                current, longest_if_added = [], self.lengths[i]
            current.append(i)
            longest = longest_if_added
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(batches)
            self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())
