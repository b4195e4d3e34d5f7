"""LibriTTS corpus -> Kaldi data dirs.

LibriTTS (and LibriTTS-R) lays out audio as root/<subset>/<speaker>/<chapter>/<utt>.wav with the
transcript beside it in <utt>.normalized.txt. Each subset becomes one data dir named after it
with '-' replaced by '_' (train-clean-100 -> train_clean_100), and `prepare_splits` merges the
subsets into train / dev / test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from voxtok.data.kaldi import DataDir, combine_data_dirs
from voxtok.errors import BadConfigError, BadDataDirError

LIBRITTS_SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
SPLITS = ("train", "dev", "test")
TRANSCRIPT_SUFFIX = ".normalized.txt"
_PROGRESS_MIN = 500


@dataclass
class PrepReport:
    """What `prepare_libritts` found in one subset; `seconds` is None without durations."""

    subset: str
    data_dir: Path
    utts: int
    speakers: int
    missing_text: int
    empty_text: int
    seconds: float | None

    def summary(self) -> str:
        """One line, e.g. "dev-clean: 40 utts, 4 speakers, 0.1 h (1 missing text, 0 empty text)"."""
        hours = "" if self.seconds is None else f", {self.seconds / 3600:.1f} h"
        return (
            f"{self.subset}: {self.utts} utts, {self.speakers} speakers{hours} "
            f"({self.missing_text} missing text, {self.empty_text} empty text)"
        )


def data_dir_name(subset: str) -> str:
    """The data dir name for a subset: dashes become underscores (shell- and hydra-friendly)."""
    return subset.replace("-", "_")


def split_name(subset: str) -> str:
    """Map a subset name to "train", "dev" or "test" by its prefix (train-clean-100 -> train)."""
    for split in SPLITS:
        if subset.replace("_", "-").split("-")[0] == split:
            return split
    raise BadConfigError(f"cannot tell whether subset '{subset}' is train, dev or test (name must start with one)")


def _sorted_dirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _holds_speaker_tree(folder: Path) -> bool:
    return next(folder.glob("*/*/*.wav"), None) is not None


def find_subsets(root: str | os.PathLike) -> list[str]:
    """Subset folders under `root`: LibriTTS names, or any folder holding speaker/chapter/*.wav."""
    root = _require_root(root)
    return [p.name for p in _sorted_dirs(root) if p.name in LIBRITTS_SUBSETS or _holds_speaker_tree(p)]


def _require_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise BadDataDirError("LibriTTS root does not exist", root)
    return root


def _list_wavs(subset_dir: Path) -> list[tuple[str, Path]]:
    """(speaker, wav path) for every speaker/chapter/*.wav, in sorted order."""
    found = []
    for speaker_dir in _sorted_dirs(subset_dir):
        for chapter_dir in _sorted_dirs(speaker_dir):
            found += [(speaker_dir.name, wav) for wav in sorted(chapter_dir.glob("*.wav"))]
    return found


def _read_transcript(wav: Path) -> str | None:
    """The normalized transcript as one line, "" if empty, None if the file is missing."""
    path = wav.with_name(wav.stem + TRANSCRIPT_SUFFIX)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise BadDataDirError(f"transcript is not valid UTF-8 (byte {exc.start})", path) from None
    # A Kaldi text entry is one line: any internal line break would corrupt the file.
    return " ".join(raw.split())


def _utt_id(speaker: str, stem: str) -> str:
    # LibriTTS stems already start with "<speaker>_"; other trees get the prefix Kaldi needs.
    return stem if stem.startswith(speaker + "_") else f"{speaker}_{stem}"


def _prepare_subset(root: Path, subset: str, out_dir: Path, with_durations: bool) -> PrepReport:
    # Imported here: voxtok.audio pulls in torch, which data preparation should not pay for at import.
    from voxtok.audio import audio_duration

    subset_dir = root / subset
    if not subset_dir.is_dir():
        raise BadDataDirError(f"subset '{subset}' not found", root)
    wavs = _list_wavs(subset_dir)
    data = DataDir(wav_scp={}, text={}, utt2spk={}, utt2dur={} if with_durations else None)
    missing = empty = 0
    progress = tqdm(wavs, desc=subset, unit="utt", leave=False, disable=True if len(wavs) < _PROGRESS_MIN else None)
    for speaker, wav in progress:
        transcript = _read_transcript(wav)
        if transcript is None:
            missing += 1
            continue
        if not transcript:
            empty += 1
            continue
        path = str(wav.resolve())
        if any(ch.isspace() for ch in path):
            raise BadDataDirError("path contains whitespace, which wav.scp cannot hold", path)
        utt = _utt_id(speaker, wav.stem)
        data.wav_scp[utt] = path
        data.text[utt] = transcript
        data.utt2spk[utt] = speaker
        if data.utt2dur is not None:
            data.utt2dur[utt] = audio_duration(wav)
    if not data.utt2spk:
        raise BadDataDirError(
            f"subset '{subset}' has no usable utterances ({len(wavs)} wav files, "
            f"{missing} missing transcripts, {empty} empty transcripts)",
            subset_dir,
        )
    target = data.save(out_dir / data_dir_name(subset))
    return PrepReport(
        subset=subset,
        data_dir=target,
        utts=len(data.utt2spk),
        speakers=len(data.speakers),
        missing_text=missing,
        empty_text=empty,
        seconds=None if data.utt2dur is None else sum(data.utt2dur.values()),
    )


def prepare_libritts(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    subsets: list[str] | None = None,
    *,
    with_durations: bool = True,
) -> dict[str, PrepReport]:
    """Write one data dir per subset, out_dir/<subset with '-' -> '_'>; return a report per subset.

    Utterance id = file stem (already speaker-prefixed in LibriTTS), speaker = speaker folder,
    text = <utt>.normalized.txt. Wavs whose transcript is missing or empty are skipped and
    counted. `subsets=None` takes every subset folder found under `root`. With
    `with_durations`, utt2dur is filled from the audio headers. A subset with no usable
    utterance raises BadDataDirError.
    """
    root = _require_root(root)
    names = find_subsets(root) if subsets is None else list(subsets)
    if not names:
        raise BadDataDirError("no LibriTTS subsets found (expected e.g. train-clean-100/<speaker>/<chapter>/*.wav)", root)
    out_dir = Path(out_dir)
    return {name: _prepare_subset(root, name, out_dir, with_durations) for name in names}


def prepare_splits(
    root: str | os.PathLike,
    data_dir: str | os.PathLike,
    subsets: list[str] | None = None,
    *,
    with_durations: bool = True,
) -> dict[str, list[PrepReport]]:
    """Prepare each subset, then combine them into data_dir/train, data_dir/dev and data_dir/test.

    Returns the per-subset reports grouped by split; only splits with a subset are written.
    """
    data_dir = Path(data_dir)
    for name in subsets if subsets is not None else find_subsets(root):
        split_name(name)  # fail on an unclassifiable subset before preparing anything
    reports = prepare_libritts(root, data_dir, subsets, with_durations=with_durations)
    by_split: dict[str, list[PrepReport]] = {}
    for name, report in reports.items():
        by_split.setdefault(split_name(name), []).append(report)
    for split, parts in by_split.items():
        combine_data_dirs(data_dir / split, [report.data_dir for report in parts])
    return by_split
