"""TTS training data: text ids, speech tokens, mels and speaker x-vectors per utterance.

    ds = TTSDataset("data/train", TextFrontend("char"), token_store="dump/tokens/s3/train",
                    embeddings_dir="dump/spk/train", mel_config="cosyvoice")
    loader = DataLoader(ds, batch_size=16, collate_fn=collate_tts)

Speech tokens come from a shard store written by `voxtok.recipes.tokenize` (codes [Q, T'] per
utterance; the TTS models use codebook 0). Texts are encoded once when the dataset is built,
so a text the frontend cannot speak is reported with its utterance id before training starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from voxtok.audio import MelConfig, MelSpectrogram, audio_duration
from voxtok.data.dataset import load_utterance
from voxtok.data.kaldi import DataDir
from voxtok.data.shards import ShardStore
from voxtok.errors import BadConfigError, BadDataDirError, BadTextError, VoxTokError

_ENCODE_CHUNK = 1000  # texts per frontend call (one espeak-ng process per chunk in phoneme mode)


def _problem_list(problems: dict[str, str]) -> str:
    first = next(iter(problems.items()))
    return f"{len(problems)} utterance(s) unusable, e.g. {first[0]}: {first[1]}"


class TTSDataset(Dataset):
    """Utterances of a Kaldi data dir as TTS training items.

    Each item: {"utt", "spk", "text_ids" [L] long, and when configured "speech_tokens" [N] long
    (codebook 0), "mel" [n_mels, T] float (log mel, cached in memory), "spk_emb" [D] float
    (the utterance's speaker embedding)}.

    Args:
        data_dir: Kaldi data dir (text, utt2spk, wav.scp).
        frontend: a TextFrontend (anything with `encode_batch(texts) -> list[list[int]]`).
        token_store: path of (or an open) ShardStore of codes [Q, T'] keyed by utterance.
        embeddings_dir: speaker-embedding folder (`voxtok.tts.speaker.load_embeddings`), or a
            mapping utt -> [D] array.
        mel_config: MelConfig, preset name or dict: compute mels at its sample rate.
        max_seconds: drop utterances longer than this (duration from the tokens, utt2dur or audio).
        skip_bad: drop utterances with unusable text or missing tokens/embeddings (reported)
            instead of raising.
    """

    def __init__(self, data_dir: str | os.PathLike, frontend, token_store: str | os.PathLike | ShardStore | None = None,
                 embeddings_dir: str | os.PathLike | Mapping | None = None,
                 mel_config: MelConfig | Mapping[str, Any] | str | None = None, max_seconds: float | None = 30.0,
                 skip_bad: bool = False, max_utts: int | None = None, cache_mels: bool = True):
        self.data_dir = Path(data_dir)
        self.data = DataDir.load(data_dir)
        self.frontend = frontend
        self.tokens = ShardStore(token_store) if isinstance(token_store, (str, os.PathLike)) else token_store
        self.embeddings = self._open_embeddings(embeddings_dir)
        self.mel_config = MelConfig.from_spec(mel_config)
        self.mel = MelSpectrogram(self.mel_config) if self.mel_config is not None else None
        self._mel_cache: dict[str, torch.Tensor] | None = {} if cache_mels else None

        utts = self.data.utts[:max_utts] if max_utts else self.data.utts
        if not utts:
            raise BadDataDirError("data dir has no utterances", data_dir)
        problems: dict[str, str] = {}
        for utt in utts:
            reason = self._missing(utt)
            if reason:
                problems[utt] = reason
        utts = [u for u in utts if u not in problems]
        text_ids = self._encode_texts(utts, problems)
        if problems and not skip_bad:
            raise BadDataDirError(_problem_list(problems) + " (fix the data or set skip_bad)", data_dir)
        self.skipped = problems
        utts = [u for u in utts if u not in problems]
        self.frame_rate = float(self.tokens.meta.get("frame_rate", 0)) if self.tokens is not None else 0.0
        if max_seconds is not None:
            utts = [u for u in utts if self.duration(u) <= max_seconds]
        if not utts:
            raise BadDataDirError(f"no usable utterances (max_seconds={max_seconds}, {len(problems)} unusable)", data_dir)
        self.utts = utts
        self.text_ids = {u: text_ids[u] for u in utts}

    # -- construction helpers
    @staticmethod
    def _open_embeddings(source):
        if source is None or not isinstance(source, (str, os.PathLike)):
            return source  # a mapping or an open store
        from voxtok.tts.speaker import load_embeddings

        utt2embedding, _ = load_embeddings(source)
        return utt2embedding

    def _missing(self, utt: str) -> str | None:
        if not self.data.text.get(utt, "").strip():
            return "empty text"
        if self.tokens is not None and utt not in self.tokens:
            return f"not in the token store {self.tokens.root}"
        if self.embeddings is not None and utt not in self.embeddings:
            return "no speaker embedding"
        return None

    def _encode_texts(self, utts: list[str], problems: dict[str, str]) -> dict[str, list[int]]:
        ids: dict[str, list[int]] = {}
        for start in range(0, len(utts), _ENCODE_CHUNK):
            chunk = utts[start:start + _ENCODE_CHUNK]
            try:
                encoded = self.frontend.encode_batch([self.data.text[u] for u in chunk])
            except BadTextError:
                # Find the culprits one by one so the message names them.
                encoded = []
                for u in chunk:
                    try:
                        encoded.append(self.frontend.encode(self.data.text[u]))
                    except BadTextError as err:
                        problems[u] = str(err)
                        encoded.append([])
            for u, e in zip(chunk, encoded):
                if not e and u not in problems:
                    problems[u] = "text has no symbols"
                ids[u] = e
        return ids

    # -- per utterance
    def duration(self, utt: str) -> float:
        """Seconds of speech: from the tokens when there are any, else utt2dur, else the audio."""
        if self.tokens is not None and self.frame_rate > 0:
            return self.tokens.shape(utt)[-1] / self.frame_rate
        if self.data.utt2dur and utt in self.data.utt2dur:
            return float(self.data.utt2dur[utt])
        if self.data.segments and utt in self.data.segments:
            _, start, end = self.data.segments[utt]
            return end - start
        return audio_duration(self.data.wav_scp[utt])

    def lengths(self) -> list[int]:
        """Per-item length for bucketing: speech tokens when available, else mel frames."""
        if self.tokens is not None:
            return [int(self.tokens.shape(u)[-1]) for u in self.utts]
        rate = self.mel_config.sample_rate / self.mel_config.hop_length if self.mel_config else 100.0
        return [int(self.duration(u) * rate) for u in self.utts]

    def speech_tokens(self, utt: str) -> torch.Tensor:
        """Codebook-0 tokens [N] of `utt`."""
        codes = torch.from_numpy(self.tokens[utt].astype("int64"))
        return codes[0] if codes.dim() == 2 else codes.reshape(-1)

    def mel_of(self, utt: str) -> torch.Tensor:
        """Log mel [n_mels, T] of `utt` at the mel config's sample rate."""
        if self._mel_cache is not None and utt in self._mel_cache:
            return self._mel_cache[utt]
        wav = load_utterance(self.data, utt, self.mel_config.sample_rate)
        with torch.no_grad():
            mel = self.mel(wav)[0]
        if self._mel_cache is not None:
            self._mel_cache[utt] = mel
        return mel

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, index: int) -> dict:
        utt = self.utts[index]
        item: dict[str, Any] = {"utt": utt, "spk": self.data.utt2spk[utt],
                                "text_ids": torch.tensor(self.text_ids[utt], dtype=torch.long)}
        if self.tokens is not None:
            item["speech_tokens"] = self.speech_tokens(utt)
        if self.mel is not None:
            item["mel"] = self.mel_of(utt)
        if self.embeddings is not None:
            emb = torch.as_tensor(self.embeddings[utt], dtype=torch.float32).reshape(-1)
            if not torch.isfinite(emb).all():
                raise VoxTokError(f"speaker embedding of {utt} is not finite", self.data_dir)
            item["spk_emb"] = emb
        return item


def _pad_1d(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.zeros(len(seqs), max(1, int(lengths.max())), dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def collate_tts(items: Sequence[dict]) -> dict:
    """Pad TTSDataset items into a batch.

    Keys: utt, spk (lists); text_ids [B, L] + text_lengths [B]; speech_tokens [B, N] +
    token_lengths [B]; mel [B, n_mels, T] + mel_lengths [B]; spk_emb [B, D] (each pair only
    when the items have it). Padding is 0 everywhere; models mask it with the lengths.
    """
    if not items:
        raise BadConfigError("cannot collate an empty batch")
    batch: dict[str, Any] = {"utt": [it["utt"] for it in items], "spk": [it["spk"] for it in items]}
    batch["text_ids"], batch["text_lengths"] = _pad_1d([it["text_ids"] for it in items])
    if "speech_tokens" in items[0]:
        batch["speech_tokens"], batch["token_lengths"] = _pad_1d([it["speech_tokens"] for it in items])
    if "mel" in items[0]:
        mels = [it["mel"] for it in items]
        lengths = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
        out = torch.zeros(len(mels), mels[0].shape[0], int(lengths.max()))
        for i, m in enumerate(mels):
            out[i, :, :m.shape[-1]] = m
        batch["mel"], batch["mel_lengths"] = out, lengths
    if "spk_emb" in items[0]:
        batch["spk_emb"] = torch.stack([it["spk_emb"] for it in items])
    return batch
