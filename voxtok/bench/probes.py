"""DASB-style downstream probes on frozen tokens: ASR (BiLSTM + CTC) and speaker identification.

Both probes read codes [B, Q, T'] through the same front end (as in DASB, Mousavi et al. 2024):
one embedding table holding every codebook (codebook q's code c is row q * K + c) and an
attention MLP that weighs the Q embeddings of a frame (softmax over codebooks) and sums them.
The tokens are never updated; every system gets the same model sizes, optimiser, batch size and
number of steps (`ProbeConfig`), so differences come from the tokens.

- ASR: front end -> BiLSTM -> characters + CTC blank; greedy decoding; WER/CER with the shared
  normaliser of `voxtok.bench.asr`. Frames are repeated so the CTC head sees at least
  `min_ctc_rate` frames per second: a 25 Hz tokenizer otherwise has fewer frames than the
  characters of fast speech, and CTC cannot emit more labels than frames.
- Speaker ID: front end -> 1-D convolutions -> mean+std pooling over valid frames -> linear
  classifier (or, in the `dasb` preset, an ECAPA-TDNN with an AAM-softmax head,
  `voxtok.bench.ecapa`). Trained on random crops, tested on whole held-out utterances of the same
  speakers (`split_by_speaker`).

Presets (`probe_preset`): `quick` (the default: small probes and fixed step budgets that run on
2 CPU cores in minutes) and `dasb` (DASB's sizes: 1024-d embeddings and attention MLP, a 2 x 1024
BiLSTM + CTC, an ECAPA-TDNN with 1024 channels and 192-d embeddings, batch 16, lr 1e-4, 20 ASR
epochs and 15 speaker epochs over the training split, as DASB's LibriSpeech and VoxCeleb1 recipes).
The report names the preset.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from voxtok.bench.asr import char_error_rate, normalize_text, word_error_rate
from voxtok.bench.fit import fit_steps
from voxtok.errors import BadConfigError
from voxtok.nn.masks import length_mask

# CTC labels: blank (0) then these characters; `normalize_text` leaves nothing else.
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"


@dataclass
class ProbeConfig:
    """Budget and sizes shared by every system (DASB: same probe for every tokenizer)."""

    name: str = "quick"  # the preset these values come from (shown in the report)
    dim: int = 128  # token embedding size
    attention_hidden: int = 128  # hidden size of the attention MLP over codebooks
    lstm_hidden: int = 128
    lstm_layers: int = 2
    conv_channels: int = 128  # speaker probe
    dropout: float = 0.1
    asr_steps: int = 600
    speaker_steps: int = 400
    batch_size: int = 8
    # On the mini corpus the CTC probe still emitted only blanks after 300 steps at 1e-3 or 3e-3;
    # at 1e-2 (with warm-up, cosine decay, clipping at 5) it leaves that plateau after ~200 steps.
    asr_lr: float = 1e-2
    speaker_lr: float = 1e-3
    min_ctc_rate: float = 50.0  # frames/s the CTC head sees at least
    speaker_crop_s: float = 3.0
    speaker_test_share: float = 0.2
    seed: int = 0
    speaker_model: str = "conv"  # conv | ecapa (ECAPA-TDNN + AAM softmax; conv_channels wide)
    ecapa_embedding: int = 192
    ecapa_attention: int = 128
    aam_margin: float = 0.2
    aam_scale: float = 30.0
    # With epochs set, the steps are epochs x ceil(training items / batch_size) instead of *_steps.
    asr_epochs: int | None = None
    speaker_epochs: int | None = None

    def to_dict(self) -> dict:
        """Plain dict (for cache keys and reports)."""
        return asdict(self)

    def describe(self) -> str:
        """The preset's name, plus the fields changed from it: "dasb" or "quick (modified: asr_steps)"."""
        base = PROBE_PRESETS.get(self.name)
        if base is None:
            return self.name
        changed = [k for k, v in self.to_dict().items() if v != getattr(base, k)]
        return self.name + (f" (modified: {', '.join(changed)})" if changed else "")

    def steps(self, task: str, items: int) -> int:
        """Training steps of the `task` ("asr" or "speaker") probe on `items` training items."""
        epochs = self.asr_epochs if task == "asr" else self.speaker_epochs
        if epochs is None:
            return self.asr_steps if task == "asr" else self.speaker_steps
        return epochs * max(1, math.ceil(items / self.batch_size))


PROBE_PRESETS = {
    "quick": ProbeConfig(),
    # DASB (Mousavi et al. 2024): LibriSpeech LSTM ASR and VoxCeleb1 ECAPA-TDNN probe recipes.
    "dasb": ProbeConfig(name="dasb", dim=1024, attention_hidden=1024, lstm_hidden=1024, lstm_layers=2,
                        conv_channels=1024, dropout=0.2, batch_size=16, asr_lr=1e-4, speaker_lr=1e-4,
                        speaker_model="ecapa", asr_epochs=20, speaker_epochs=15),
}


def probe_preset(name: str, **overrides) -> ProbeConfig:
    """The preset `name` ("quick" or "dasb") with `overrides` applied (unknown fields are errors)."""
    from dataclasses import fields, replace

    if name not in PROBE_PRESETS:
        raise BadConfigError(f"unknown probe preset '{name}' (choose from {sorted(PROBE_PRESETS)})")
    unknown = sorted(set(overrides) - {f.name for f in fields(ProbeConfig)})
    if unknown:
        raise BadConfigError(f"unknown probe setting '{unknown[0]}'")
    return replace(PROBE_PRESETS[name], **overrides)


# ----------------------------------------------------------------------------- modules


class CodebookEmbedding(nn.Module):
    """One table for all codebooks: codes [B, Q, T] -> embeddings [B, Q, T, dim]."""

    def __init__(self, n_q: int, codebook_size: int, dim: int):
        super().__init__()
        self.n_q, self.codebook_size = n_q, codebook_size
        self.table = nn.Embedding(n_q * codebook_size, dim)
        self.register_buffer("offsets", torch.arange(n_q) * codebook_size, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or codes.shape[1] != self.n_q:
            raise BadConfigError(f"expected codes [B, {self.n_q}, T], got {tuple(codes.shape)}")
        return self.table(codes + self.offsets[None, :, None])


class AttentionMLP(nn.Module):
    """Weights over codebooks: [B, Q, T, D] -> [B, T, D] = sum_q softmax_q(MLP(e_q)) * e_q."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(emb), dim=1)  # [B, Q, T, 1]
        return (weights * emb).sum(dim=1)


class TokenFrontEnd(nn.Module):
    """Codes [B, Q, T] -> frame features [B, T, dim] (embedding table + attention MLP)."""

    def __init__(self, n_q: int, codebook_size: int, cfg: ProbeConfig):
        super().__init__()
        self.embed = CodebookEmbedding(n_q, codebook_size, cfg.dim)
        self.attend = AttentionMLP(cfg.dim, cfg.attention_hidden)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.attend(self.embed(codes))


class CTCProbe(nn.Module):
    """ASR probe: codes [B, Q, T] -> log-probs [B, T * repeat, len(ALPHABET) + 1] (blank = 0)."""

    def __init__(self, n_q: int, codebook_size: int, cfg: ProbeConfig, repeat: int = 1):
        super().__init__()
        self.repeat = repeat
        self.front = TokenFrontEnd(n_q, codebook_size, cfg)
        self.lstm = nn.LSTM(cfg.dim, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.lstm_hidden, len(ALPHABET) + 1)

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (log-probs [B, T', C], output lengths [B]) with T' = T * repeat."""
        x = self.front(codes).repeat_interleave(self.repeat, dim=1)
        lengths = lengths * self.repeat
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(self.drop(out)).log_softmax(-1), lengths


class SpeakerProbe(nn.Module):
    """Speaker-ID probe: codes [B, Q, T] + lengths [B] -> logits [B, num_speakers].

    `cfg.speaker_model` "conv": two convolutions, mean+std pooling, an MLP classifier; "ecapa": an
    ECAPA-TDNN embedding and an AAM-softmax head (give `labels` in training for the margin)."""

    def __init__(self, n_q: int, codebook_size: int, num_speakers: int, cfg: ProbeConfig):
        super().__init__()
        from voxtok.bench.ecapa import AAMSoftmax, ECAPATDNN

        if cfg.speaker_model not in ("conv", "ecapa"):
            raise BadConfigError(f"speaker_model must be conv or ecapa, got '{cfg.speaker_model}'")
        self.kind = cfg.speaker_model
        self.front = TokenFrontEnd(n_q, codebook_size, cfg)
        c = cfg.conv_channels
        if self.kind == "ecapa":
            self.encoder = ECAPATDNN(cfg.dim, c, cfg.ecapa_embedding, cfg.ecapa_attention)
            self.classify = AAMSoftmax(cfg.ecapa_embedding, num_speakers, cfg.aam_margin, cfg.aam_scale)
            return
        self.convs = nn.Sequential(nn.Conv1d(cfg.dim, c, 5, padding=2), nn.ReLU(), nn.Dropout(cfg.dropout),
                                   nn.Conv1d(c, c, 5, padding=2), nn.ReLU())
        self.classify = nn.Sequential(nn.Linear(2 * c, c), nn.ReLU(), nn.Linear(c, num_speakers))

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "ecapa":
            return self.classify(self.encoder(self.front(codes), lengths), labels)
        h = self.convs(self.front(codes).transpose(1, 2))  # [B, C, T]
        mask = length_mask(lengths.to(h.device), h.shape[-1]).unsqueeze(1).float()
        count = mask.sum(-1).clamp(min=1.0)
        mean = (h * mask).sum(-1) / count
        var = (((h - mean[..., None]) ** 2) * mask).sum(-1) / count
        return self.classify(torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1))


# ----------------------------------------------------------------------------- data helpers


def pad_codes(items: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad codes [Q, T_i] (pad value 0) to [B, Q, T_max]; returns (codes, lengths [B])."""
    arrays = [torch.as_tensor(np.asarray(c), dtype=torch.long) for c in items]
    lengths = torch.tensor([a.shape[-1] for a in arrays], dtype=torch.long)
    out = torch.zeros(len(arrays), arrays[0].shape[0], max(1, int(lengths.max())), dtype=torch.long)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[-1]] = a
    return out, lengths


def encode_chars(text: str) -> list[int]:
    """Normalised text -> CTC label ids (1..len(ALPHABET))."""
    return [ALPHABET.index(ch) + 1 for ch in normalize_text(text)]


def greedy_ctc(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best-path CTC decoding of log-probs [B, T, C] -> one string per row."""
    best = log_probs.argmax(-1).cpu()
    texts = []
    for row, n in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(row[:n]).tolist()
        texts.append(" ".join("".join(ALPHABET[i - 1] for i in ids if i > 0).split()))
    return texts


def split_by_speaker(utt2spk: dict[str, str], test_share: float, seed: int) -> tuple[list[str], list[str]]:
    """Per-speaker split of utterances into (train, test): `test_share` of each speaker's
    utterances (at least one) are held out; speakers with fewer than 2 utterances are dropped."""
    rng = random.Random(seed)
    by_spk: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        by_spk.setdefault(utt2spk[utt], []).append(utt)
    train, test = [], []
    for spk in sorted(by_spk):
        utts = by_spk[spk]
        if len(utts) < 2:
            continue
        rng.shuffle(utts)
        n_test = min(len(utts) - 1, max(1, round(test_share * len(utts))))
        test += utts[:n_test]
        train += utts[n_test:]
    return sorted(train), sorted(test)


# ----------------------------------------------------------------------------- ASR probe


def train_asr_probe(train: Sequence[tuple[np.ndarray, str]], test: Sequence[tuple[np.ndarray, str]],
                    n_q: int, codebook_size: int, frame_rate: float, cfg: ProbeConfig,
                    progress: bool = False) -> dict[str, float]:
    """Train the CTC probe for `cfg.steps("asr", ...)` steps on (codes [Q, T'], transcript) pairs; test it.

    Returns probe_wer, probe_cer (greedy decoding on `test`) and probe_ctc_loss (mean of the
    last 10 % of training steps).
    """
    train = [(c, encode_chars(t)) for c, t in train if normalize_text(t)]
    if not train or not test:
        raise BadConfigError("the ASR probe needs transcribed training and test utterances")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    repeat = max(1, math.ceil(cfg.min_ctc_rate / frame_rate))
    model = CTCProbe(n_q, codebook_size, cfg, repeat)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)

    def batch_loss() -> torch.Tensor:
        batch = rng.sample(train, min(cfg.batch_size, len(train)))
        codes, lengths = pad_codes([c for c, _ in batch])
        targets = torch.tensor([i for _, ids in batch for i in ids], dtype=torch.long)
        target_lengths = torch.tensor([len(ids) for _, ids in batch], dtype=torch.long)
        log_probs, out_lengths = model(codes, lengths)
        return ctc(log_probs.transpose(0, 1), targets, out_lengths, target_lengths)

    losses = fit_steps(model, batch_loss, cfg.steps("asr", len(train)), cfg.asr_lr, clip=5.0, desc="probe asr",
                       progress=progress)
    hyps = []
    with torch.no_grad():
        for start in range(0, len(test), 16):
            chunk = test[start:start + 16]
            codes, lengths = pad_codes([c for c, _ in chunk])
            log_probs, out_lengths = model(codes, lengths)
            hyps += greedy_ctc(log_probs, out_lengths)
    refs = [t for _, t in test]
    tail = losses[-max(1, len(losses) // 10):]
    return {"probe_wer": word_error_rate(refs, hyps), "probe_cer": char_error_rate(refs, hyps),
            "probe_ctc_loss": float(np.mean(tail))}


# ----------------------------------------------------------------------------- speaker probe


def _crop(codes: np.ndarray, frames: int, rng: random.Random) -> np.ndarray:
    if codes.shape[-1] <= frames:
        return codes
    start = rng.randint(0, codes.shape[-1] - frames)
    return codes[:, start:start + frames]


def train_speaker_probe(train: Sequence[tuple[np.ndarray, str]], test: Sequence[tuple[np.ndarray, str]],
                        n_q: int, codebook_size: int, frame_rate: float, cfg: ProbeConfig,
                        progress: bool = False) -> dict[str, float]:
    """Train the speaker-ID probe for `cfg.steps("speaker", ...)` steps on (codes [Q, T'], speaker) pairs.

    Returns probe_spk_acc (accuracy on whole `test` utterances, speakers seen in training),
    probe_spk_chance (1 / number of speakers) and probe_spk_loss (mean of the last 10 % of steps).
    """
    speakers = sorted({s for _, s in train})
    if len(speakers) < 2 or not test:
        raise BadConfigError("the speaker probe needs at least 2 speakers and held-out utterances")
    unknown = sorted({s for _, s in test} - set(speakers))
    if unknown:
        raise BadConfigError(f"speaker '{unknown[0]}' is in the speaker-probe test set but not in training")
    index = {s: i for i, s in enumerate(speakers)}
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    crop = max(1, int(round(cfg.speaker_crop_s * frame_rate)))
    model = SpeakerProbe(n_q, codebook_size, len(speakers), cfg)

    def batch_loss() -> torch.Tensor:
        batch = rng.sample(list(train), min(cfg.batch_size, len(train)))
        codes, lengths = pad_codes([_crop(np.asarray(c), crop, rng) for c, _ in batch])
        labels = torch.tensor([index[s] for _, s in batch])
        return nn.functional.cross_entropy(model(codes, lengths, labels), labels)

    losses = fit_steps(model, batch_loss, cfg.steps("speaker", len(train)), cfg.speaker_lr, clip=5.0,
                       desc="probe speaker", progress=progress)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 16):
            chunk = test[start:start + 16]
            codes, lengths = pad_codes([c for c, _ in chunk])
            pred = model(codes, lengths).argmax(-1)
            correct += int((pred == torch.tensor([index[s] for _, s in chunk])).sum())
    tail = losses[-max(1, len(losses) // 10):]
    return {"probe_spk_acc": correct / len(test), "probe_spk_chance": 1.0 / len(speakers),
            "probe_spk_loss": float(np.mean(tail))}
