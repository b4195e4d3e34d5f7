"""Speaker embeddings for TTS conditioning: resemblyzer d-vectors (256-d, L2-normalised, 16 kHz),
or CosyVoice's CAM++ x-vectors (192-d, from campplus.onnx: voxtok/tts/campplus.py).

`SpeakerEncoder` wraps resemblyzer's pretrained LSTM (its weights ship inside the package, so
nothing is downloaded); `open_speaker_encoder(spec)` gives it ("resemblyzer") or CAM++
("campplus:FILE"), both with the same API. `compute_embeddings(data_dir, out_dir, encoder=spec)`
writes two shard stores (see voxtok/data/shards.py) that the TTS datasets read:

    out_dir/utt2embedding   utterance id -> float32 [dim] (256 resemblyzer, 192 CAM++)
    out_dir/spk2embedding   speaker id   -> float32 [dim], the L2-normalised mean of the
                            speaker's utterance embeddings (CosyVoice's spk2embedding)

Arrays are 1-D ([dim], `ndim` 1); the stores' meta.json names the model. A killed run resumes:
utterances already stored are skipped (with the same encoder only).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm import tqdm

from voxtok.atomic import atomic_dir
from voxtok.audio import mono_speech
from voxtok.data.dataset import load_utterance
from voxtok.data.kaldi import DataDir
from voxtok.data.shards import ShardStore, ShardWriter
from voxtok.errors import BadAudioError, BadConfigError, BadDataDirError

EMBEDDING_DIM = 256
SAMPLE_RATE = 16000
MIN_SECONDS = 0.25  # input shorter than this cannot say much about a voice
MIN_VOICED_SECONDS = 0.1  # what must be left after resemblyzer's voice activity trimming
UTT_STORE, SPK_STORE = "utt2embedding", "spk2embedding"
STORE_META = {"model": "resemblyzer-d-vector", "dim": EMBEDDING_DIM, "sample_rate": SAMPLE_RATE, "layout": "[dim]"}
STORE_MODELS = (STORE_META["model"], "campplus")  # what `store_meta["model"]` of an encoder may say
# Small shards: a killed run loses at most this many utterances of work.
SHARD_ITEMS = 200

_MODELS: dict[str, torch.nn.Module] = {}


def _resemblyzer_model(device: str) -> torch.nn.Module:
    """resemblyzer's VoiceEncoder on `device`, built once per process."""
    if device not in _MODELS:
        with warnings.catch_warnings():
            # resemblyzer and webrtcvad import deprecated scipy / pkg_resources names; not ours to fix.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder

            _MODELS[device] = VoiceEncoder(device=device, verbose=False).eval()
    return _MODELS[device]


class SpeakerEncoder:
    """Utterance -> 256-d unit-norm d-vector. Any sample rate in; resampled to 16 kHz here.

    Each utterance is level-normalised and trimmed of long silences (resemblyzer's
    preprocessing), cut into 1.6 s windows at 1.3 windows/s, and the window embeddings are
    averaged and L2-normalised. `embed_batch` runs the windows of all utterances in one LSTM pass.
    """

    dim = EMBEDDING_DIM
    sample_rate = SAMPLE_RATE
    store_meta = STORE_META  # what a store made with this encoder records about it

    def __init__(self, device: str = "cpu"):
        self.device = str(device)
        self.model = _resemblyzer_model(self.device)

    def to(self, device: str | torch.device) -> "SpeakerEncoder":
        """Run on `device` from now on (the process's model for that device); returns the encoder."""
        if str(device) != self.device:
            self.device = str(device)
            self.model = _resemblyzer_model(self.device)
        return self

    def prepare(self, wav, sr: int, name: object = "<waveform>") -> np.ndarray:
        """[T] / [1, T] audio at `sr` -> preprocessed float32 [T'] at 16 kHz, or BadAudioError."""
        from resemblyzer import preprocess_wav

        speech = preprocess_wav(mono_speech(wav, sr, SAMPLE_RATE, name, MIN_SECONDS).numpy())
        if len(speech) < MIN_VOICED_SECONDS * SAMPLE_RATE:
            raise BadAudioError(f"less than {MIN_VOICED_SECONDS} s of speech left after voice activity "
                                f"trimming: cannot embed the speaker", name)
        return speech.astype(np.float32)

    def _windows(self, speech: np.ndarray) -> np.ndarray:
        """Preprocessed speech -> mel windows [N, 160, 40] exactly as resemblyzer slices them."""
        from resemblyzer import audio

        wav_slices, mel_slices = self.model.compute_partial_slices(len(speech), rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop >= len(speech):
            speech = np.pad(speech, (0, wav_slices[-1].stop - len(speech)))
        mel = audio.wav_to_mel_spectrogram(speech)
        return np.stack([mel[s] for s in mel_slices])

    @torch.no_grad()
    def embed_batch(self, wavs: Sequence, sr: int, names: Sequence[object] | None = None) -> torch.Tensor:
        """Utterances (each [1, T_i] or [T_i], any lengths) at `sr` -> float32 [B, 256], unit norm.

        `names` (e.g. utterance ids) label error messages. Silent, non-finite or too short
        audio raises BadAudioError naming the utterance.
        """
        names = list(names) if names is not None else [f"<utterance {i}>" for i in range(len(wavs))]
        return self.embed_prepared([self.prepare(w, sr, n) for w, n in zip(wavs, names)])

    @torch.no_grad()
    def embed_prepared(self, speeches: Sequence[np.ndarray]) -> torch.Tensor:
        """Outputs of `prepare` -> float32 [B, 256], unit norm (one LSTM pass for all windows)."""
        windows = [self._windows(s) for s in speeches]
        if not windows:
            return torch.zeros(0, EMBEDDING_DIM)
        stacked = torch.from_numpy(np.concatenate(windows)).to(self.device)
        partial = self.model(stacked).float().cpu()  # [sum N_i, 256], each row unit norm (float32 under autocast too)
        out, start = [], 0
        for w in windows:
            mean = partial[start:start + len(w)].mean(0)
            out.append(mean / mean.norm().clamp_min(1e-12))
            start += len(w)
        return torch.stack(out)

    def embed_utterance(self, wav, sr: int, name: object = "<waveform>") -> torch.Tensor:
        """One utterance [1, T] (or [T]) at `sr` -> float32 [256], unit norm."""
        return self.embed_batch([wav], sr, [name])[0]


def _parse_encoder_spec(spec: str) -> tuple[str, str | None]:
    """"resemblyzer" | "campplus:FILE" -> (kind, path); anything else is a one-line BadConfigError."""
    kind, _, path = str(spec).partition(":")
    if (kind, bool(path)) not in (("resemblyzer", False), ("campplus", True)):
        raise BadConfigError(f"unknown speaker encoder '{spec}' (choose resemblyzer or campplus:FILE, FILE being "
                             f"campplus.onnx or a CosyVoice release folder)")
    return kind, path or None


def open_speaker_encoder(spec: str = "resemblyzer", device: str = "cpu"):
    """The embedding model `spec` names: "resemblyzer" (SpeakerEncoder, 256-d d-vectors) or
    "campplus:FILE" (CamPlusEncoder, CosyVoice's 192-d CAM++ from campplus.onnx or a release folder).
    Both have `dim`, `store_meta`, `prepare`, `embed_prepared`, `embed_batch` and `embed_utterance`."""
    kind, path = _parse_encoder_spec(spec)
    if kind == "resemblyzer":
        return SpeakerEncoder(device)
    from voxtok.tts.campplus import CamPlusEncoder

    return CamPlusEncoder(path, device)


def _mean_direction(vectors: Sequence[np.ndarray]) -> np.ndarray:
    mean = np.mean(np.stack(vectors), axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def _embed_share(data_dir: str, out_dir: str, rank: int, nj: int, batch_size: int, device: str,
                 progress: bool, encoder_spec: str = "resemblyzer", dtype: str = "float32") -> tuple[int, dict[str, str]]:
    """Embed the utterances `rank`, `rank + nj`, ... that the store lacks, on `device` in `dtype` (autocast).

    Returns (number stored, {utt: reason} for utterances skipped as unusable audio).
    """
    from voxtok.device import precision, resolve_dtype

    torch.set_num_threads(1)
    autocast_dtype = resolve_dtype(dtype, device)
    data = DataDir.load(data_dir)
    encoder = open_speaker_encoder(encoder_spec, device)
    writer = ShardWriter(Path(out_dir) / UTT_STORE, encoder.store_meta, dtype="float32", shard_items=SHARD_ITEMS,
                         rank=rank, resume=True, expect_ndim=1)
    todo = [u for u in data.utts[rank::nj] if u not in writer]
    stored, failed = 0, {}
    with writer:
        for start in tqdm(range(0, len(todo), batch_size), desc=f"speaker embeddings (job {rank + 1}/{nj})",
                          disable=not progress or not todo, unit="batch"):
            batch = []
            for utt in todo[start:start + batch_size]:
                try:
                    wav = load_utterance(data, utt, SAMPLE_RATE)
                    name = data.wav_scp.get(data.recording_of(utt), utt)
                    batch.append((utt, encoder.prepare(wav, SAMPLE_RATE, name)))
                except BadAudioError as err:
                    failed[utt] = str(err)
            if batch:
                with precision(device, autocast_dtype):
                    embeddings = encoder.embed_prepared([speech for _, speech in batch])
                for (utt, _), emb in zip(batch, embeddings.numpy()):
                    writer.add(utt, emb)
                stored += len(batch)
    return stored, failed


def _write_speaker_store(data: DataDir, out_dir: Path) -> list[str]:
    """Rebuild spk2embedding from the utterance store (cheap), replacing any old one atomically.

    Returns the speakers left out because none of their utterances has an embedding.
    """
    utt_store = ShardStore(out_dir / UTT_STORE)
    meta = {k: v for k, v in utt_store.meta.items() if k != "dtype"}  # the encoder's; the writer adds dtype
    empty = []
    with atomic_dir(out_dir / SPK_STORE) as tmp:
        with ShardWriter(tmp, {**meta, "level": "speaker"}, dtype="float32", shard_items=100_000,
                         resume=False, expect_ndim=1) as writer:
            for spk, utts in sorted(data.spk2utt.items()):
                vectors = [utt_store[u] for u in utts if u in utt_store]
                if vectors:
                    writer.add(spk, _mean_direction(vectors))
                else:
                    empty.append(spk)
    return empty


def compute_embeddings(data_dir: str | os.PathLike, out_dir: str | os.PathLike, nj: int = 1,
                       batch_size: int = 16, device: str = "cpu", progress: bool = True,
                       encoder: str = "resemblyzer", dtype: str = "float32") -> dict[str, str]:
    """Write utt2embedding and spk2embedding stores for every utterance of a Kaldi data dir.

    `encoder` picks the model (`open_speaker_encoder`): "resemblyzer" or "campplus:FILE"; it runs on
    `device` (cpu, cuda, cuda:N, auto; an absent one is a one-line BadConfigError before anything
    loads) in `dtype` (float32, or bfloat16 / float16 autocast; the stores stay float32).

    `nj` parallel processes (each with its own model and shard files) share the utterances.
    Resumable: utterances already in out_dir/utt2embedding are skipped. Unusable audio (silent,
    too short, unreadable) is skipped and reported, like the tokenize stage does; the return
    value maps each skipped utterance to its one-line reason.
    """
    from voxtok.device import resolve_device, resolve_dtype

    device = str(resolve_device(device))
    dtype = str(resolve_dtype(dtype, device)).removeprefix("torch.")
    kind, path = _parse_encoder_spec(encoder)
    if kind == "campplus":  # a missing file is reported here, not from inside the worker processes
        from voxtok.tts.campplus import campplus_path

        if not campplus_path(path).is_file():
            raise BadConfigError("CAM++ speaker model not found (expected campplus.onnx or a folder holding it)", path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = DataDir.load(data_dir)
    if not data.utts:
        raise BadDataDirError("data dir has no utterances", data_dir)
    nj = max(1, min(int(nj), len(data.utts)))
    args = [(str(data_dir), str(out), r, nj, int(batch_size), device, progress, encoder, dtype) for r in range(nj)]
    if nj == 1:
        results = [_embed_share(*args[0])]
    else:
        import multiprocessing as mp

        # spawn: forked children would inherit the parent's torch thread pool and locks.
        with mp.get_context("spawn").Pool(nj) as pool:
            results = pool.starmap(_embed_share, args)
    failed = {u: reason for _, f in results for u, reason in f.items()}
    if not (out / UTT_STORE / "meta.json").is_file() or len(ShardStore(out / UTT_STORE)) == 0:
        raise BadDataDirError(f"no utterance could be embedded ({len(failed)} unusable)", data_dir)
    empty = _write_speaker_store(data, out)
    for reason in failed.values():
        print(f"skipped: {reason}")
    if empty:
        print(f"warning: speakers without any embedded utterance (left out of {SPK_STORE}): {', '.join(empty[:5])}"
              + (" ..." if len(empty) > 5 else ""))
    print(f"speaker embeddings: {data_dir}: {len(data.utts)} utterances, {sum(r[0] for r in results)} newly "
          f"stored, {len(failed)} skipped, {len(data.speakers) - len(empty)} speakers -> {out}")
    return failed


class SpeakerEmbeddings(NamedTuple):
    """The two stores `compute_embeddings` writes; each maps a key to float32 [dim] (dict-like:
    `store[key]`, `key in store`, `keys()`, `items()`)."""

    utt2embedding: ShardStore
    spk2embedding: ShardStore


def load_embeddings(out_dir: str | os.PathLike) -> SpeakerEmbeddings:
    """Open the stores written by `compute_embeddings` (memory-mapped, read on access)."""
    out = Path(out_dir)
    stores = []
    for name in (UTT_STORE, SPK_STORE):
        if not (out / name / "meta.json").is_file():
            raise BadDataDirError(f"no {name} store here: run the speaker-embedding stage first", out)
        store = ShardStore(out / name)
        if store.meta.get("model") not in STORE_MODELS or not isinstance(store.meta.get("dim"), int):
            raise BadDataDirError(f"{name} holds {store.meta.get('model')} vectors of dim {store.meta.get('dim')}, "
                                  f"expected one of {', '.join(STORE_MODELS)}", out / name)
        if stores and (store.meta["model"], store.meta["dim"]) != (stores[0].meta["model"], stores[0].meta["dim"]):
            raise BadDataDirError(f"{name} and {UTT_STORE} were made by different speaker encoders", out / name)
        stores.append(store)
    return SpeakerEmbeddings(*stores)
