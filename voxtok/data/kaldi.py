"""Kaldi / ESPnet data dirs: the hand-off format between recipe stages.

A data dir is a folder of sorted "key value" text files:

    wav.scp    <recording> <path, or a command ending in '|'>
    text       <utt> <transcript>
    utt2spk    <utt> <speaker>
    spk2utt    <speaker> <utt> <utt> ...   (always derived from utt2spk)
    segments   <utt> <recording> <start> <end>   (optional; without it recording == utt)
    utt2dur    <utt> <seconds>                   (optional)

Files are sorted by key in C-locale (byte) order, which for UTF-8 text is the same as Python's
code-point `str` ordering, so `sorted()` produces exactly what Kaldi's tools expect.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from voxtok.atomic import atomic_write
from voxtok.errors import BadConfigError, BadDataDirError

WAV_SCP = "wav.scp"
TEXT = "text"
UTT2SPK = "utt2spk"
SPK2UTT = "spk2utt"
SEGMENTS = "segments"
UTT2DUR = "utt2dur"
REQUIRED_FILES = (WAV_SCP, TEXT, UTT2SPK, SPK2UTT)
DATA_FILES = (WAV_SCP, TEXT, UTT2SPK, SPK2UTT, SEGMENTS, UTT2DUR)
BACKUP_DIR = ".backup"
WARNING = "warning: "

# Kaldi splits fields on ASCII blanks only; splitting on any Unicode space would cut transcripts
# in scripts that use e.g. the ideographic space inside words.
_BLANKS = " \t"
_FIELD_SPLIT = re.compile(r"[ \t]+")
_ARK_OFFSET = re.compile(r"^(.+\.ark):\d+$")
# Show at most this many examples when one problem covers several utterances.
_MAX_EXAMPLES = 3
_PROGRESS_MIN = 500


# ----------------------------------------------------------------------------- key/value files


def _read_entries(path: Path) -> tuple[list[tuple[int, str, str]], list[int]]:
    """(line number, key, value) for every non-blank line, plus the numbers of blank lines."""
    entries, blank = [], []
    try:
        # newline="\n": a stray '\r' inside a transcript must not start a new record.
        with open(path, encoding="utf-8", newline="\n") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip("\n").rstrip("\r").strip(_BLANKS)
                if not line:
                    blank.append(number)
                    continue
                parts = _FIELD_SPLIT.split(line, maxsplit=1)
                entries.append((number, parts[0], parts[1] if len(parts) > 1 else ""))
    except UnicodeDecodeError as exc:
        raise BadDataDirError(f"not valid UTF-8 (byte {exc.start})", path) from None
    except OSError as exc:
        raise BadDataDirError(f"cannot read file ({exc.strerror or exc})", path) from None
    return entries, blank


def read_kv(path: str | os.PathLike) -> dict[str, str]:
    """Read a Kaldi "key value" file into a dict (a line with only a key maps to "").

    Raises BadDataDirError naming the file for a duplicated key, invalid UTF-8 or a missing file.
    """
    path = Path(path)
    entries, _ = _read_entries(path)
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, key, value in entries:
        if key in table:
            raise BadDataDirError(f"duplicate key '{key}' on lines {first_line[key]} and {number}", path)
        table[key] = value
        first_line[key] = number
    return table


def _format_number(value: float) -> str:
    # Microsecond precision is below one sample at 48 kHz, and avoids float noise like 0.30000000000000004.
    text = f"{round(float(value), 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _format_number(value)
    if isinstance(value, (list, tuple)):
        return " ".join(_format_value(item) for item in value)
    return str(value)


def _render_kv(mapping: Mapping[str, object], path: Path) -> str:
    lines = []
    for key in sorted(mapping):
        if not key or any(ch in key for ch in " \t\r\n"):
            raise BadDataDirError(f"invalid key {key!r} (keys must be non-empty and contain no whitespace)", path)
        value = _format_value(mapping[key]).strip(_BLANKS)
        if "\n" in value or "\r" in value:
            raise BadDataDirError(f"value for key '{key}' contains a line break", path)
        lines.append(f"{key} {value}" if value else key)
    return "".join(line + "\n" for line in lines)


def _atomic_write_many(contents: Mapping[Path, str]) -> None:
    """Write every file to a temp file first, then rename them all: a failure writes nothing."""
    # The stack renames only once every file is written; an error on any unwinds all of them.
    with ExitStack() as stack:
        for path, text in contents.items():
            stack.enter_context(atomic_write(path, newline="\n")).write(text)


def write_kv(path: str | os.PathLike, mapping: Mapping[str, object]) -> Path:
    """Write a Kaldi "key value" file sorted by key, atomically (temp file + rename).

    Values may be strings, numbers or sequences (joined by spaces); an empty value writes the key
    alone. Keys must be non-empty and free of whitespace.
    """
    path = Path(path)
    _atomic_write_many({path: _render_kv(mapping, path)})
    return path


# ----------------------------------------------------------------------------- the data dir


def _require_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise BadDataDirError("data dir does not exist", path)
    if not (path / WAV_SCP).is_file():
        raise BadDataDirError(f"not a data dir (no {WAV_SCP})", path)
    return path


def _parse_segment(value: str) -> tuple[str, float, float] | None:
    """(recording, start, end) from the value part of a segments line, or None if malformed."""
    parts = value.split()
    if len(parts) != 3:
        return None
    try:
        return parts[0], float(parts[1]), float(parts[2])
    except ValueError:
        return None


def _parse_duration(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 and seconds != float("inf") else None


def _read_segments(path: Path) -> dict[str, tuple[str, float, float]]:
    segments = {}
    for utt, value in read_kv(path).items():
        parsed = _parse_segment(value)
        if parsed is None:
            raise BadDataDirError(f"utterance '{utt}': expected '<utt> <recording> <start> <end>'", path)
        segments[utt] = parsed
    return segments


def _read_utt2dur(path: Path) -> dict[str, float]:
    durations = {}
    for utt, value in read_kv(path).items():
        seconds = _parse_duration(value)
        if seconds is None:
            raise BadDataDirError(f"utterance '{utt}': invalid duration '{value}'", path)
        durations[utt] = seconds
    return durations


def _derive_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for utt in sorted(utt2spk):
        spk2utt[utt2spk[utt]].append(utt)
    return dict(spk2utt)


@dataclass
class DataDir:
    """An in-memory Kaldi data dir. `load` does not check consistency: see `validate_data_dir`."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    segments: dict[str, tuple[str, float, float]] | None = None
    utt2dur: dict[str, float] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataDir":
        """Read wav.scp, text, utt2spk and the optional segments and utt2dur of a data dir."""
        path = _require_dir(path)
        for name in (TEXT, UTT2SPK):
            if not (path / name).is_file():
                raise BadDataDirError(f"missing required file '{name}'", path)
        return cls(
            wav_scp=read_kv(path / WAV_SCP),
            text=read_kv(path / TEXT),
            utt2spk=read_kv(path / UTT2SPK),
            segments=_read_segments(path / SEGMENTS) if (path / SEGMENTS).is_file() else None,
            utt2dur=_read_utt2dur(path / UTT2DUR) if (path / UTT2DUR).is_file() else None,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write all files (spk2utt derived from utt2spk) sorted and atomically.

        Every file is rendered into a temp file before any is renamed into place, and optional
        files this data dir lacks are removed, so the folder never mixes old and new contents.
        Other files in the folder (features, tokens, .backup) are left alone.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tables: dict[str, Mapping[str, object]] = {
            WAV_SCP: self.wav_scp,
            TEXT: self.text,
            UTT2SPK: self.utt2spk,
            SPK2UTT: self.spk2utt,
        }
        if self.segments is not None:
            tables[SEGMENTS] = self.segments
        if self.utt2dur is not None:
            tables[UTT2DUR] = self.utt2dur
        _atomic_write_many({path / name: _render_kv(table, path / name) for name, table in tables.items()})
        for name in (SEGMENTS, UTT2DUR):
            if name not in tables and (path / name).exists():
                (path / name).unlink()
        return path

    @property
    def utts(self) -> list[str]:
        """Utterance ids (the keys of utt2spk), sorted."""
        return sorted(self.utt2spk)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """Speaker -> sorted utterance ids, derived from utt2spk."""
        return _derive_spk2utt(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        """Speaker ids, sorted."""
        return sorted(set(self.utt2spk.values()))

    def recording_of(self, utt: str) -> str:
        """The wav.scp key holding `utt`'s audio."""
        return self.segments[utt][0] if self.segments is not None else utt

    def subset(self, utt_ids: Iterable[str]) -> "DataDir":
        """A new DataDir with only `utt_ids` (and only the recordings they use)."""
        keep = set(utt_ids)
        unknown = sorted(keep - set(self.utt2spk))
        if unknown:
            raise BadDataDirError(f"utterance '{unknown[0]}' is not in the data dir ({len(unknown)} unknown)")
        recordings = {self.recording_of(utt) for utt in keep}
        return DataDir(
            wav_scp={rec: path for rec, path in self.wav_scp.items() if rec in recordings},
            text={utt: t for utt, t in self.text.items() if utt in keep},
            utt2spk={utt: s for utt, s in self.utt2spk.items() if utt in keep},
            segments=None if self.segments is None else {u: s for u, s in self.segments.items() if u in keep},
            utt2dur=None if self.utt2dur is None else {u: d for u, d in self.utt2dur.items() if u in keep},
        )


# ----------------------------------------------------------------------------- validation


def _is_pipe(value: str) -> bool:
    return value.rstrip().endswith("|")


def _audio_exists(value: str) -> bool:
    """True for commands (not checked) and for paths or ark offsets whose file exists."""
    if _is_pipe(value):
        return True
    ark = _ARK_OFFSET.match(value)
    return Path(ark.group(1) if ark else value).exists()


def _examples(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(f"'{item}'" for item in items[:_MAX_EXAMPLES])
    return shown + (f" and {len(items) - _MAX_EXAMPLES} more" if len(items) > _MAX_EXAMPLES else "")


def _check_file_format(name: str, entries: list[tuple[int, str, str]], blank: list[int]) -> list[str]:
    """Duplicate keys, sort order and blank lines of one file."""
    problems = []
    seen: dict[str, int] = {}
    for number, key, _ in entries:
        if key in seen:
            problems.append(f"{name}: duplicate key '{key}' (lines {seen[key]} and {number})")
        else:
            seen[key] = number
    for (_, previous, _), (number, key, _) in zip(entries, entries[1:]):
        if key < previous:
            problems.append(f"{name}: not sorted (line {number} '{key}' comes after '{previous}')")
            break
    if blank:
        problems.append(f"{WARNING}{name}: {len(blank)} blank line(s), first at line {blank[0]}")
    return problems


def _first_values(entries: list[tuple[int, str, str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for _, key, value in entries:
        table.setdefault(key, value)
    return table


def _check_coverage(tables: dict[str, dict[str, str]]) -> list[str]:
    """Every utterance must appear in text, utt2spk and (via segments or directly) wav.scp."""
    audio_file = SEGMENTS if SEGMENTS in tables else WAV_SCP
    utt_sets = {
        TEXT: set(tables.get(TEXT, {})),
        UTT2SPK: set(tables.get(UTT2SPK, {})),
        audio_file: set(tables[audio_file]),
    }
    all_utts = set().union(*utt_sets.values())
    problems = []
    for name, utts in utt_sets.items():
        if name in (TEXT, UTT2SPK) and name not in tables:
            continue  # already reported as a missing file
        for utt in sorted(all_utts - utts):
            problems.append(f"{name}: utterance '{utt}' is missing")
    return problems


def _check_segments(raw: dict[str, str], wav_scp: dict[str, str]) -> list[str]:
    problems, parsed = [], {}
    for utt, value in raw.items():
        segment = _parse_segment(value)
        if segment is None:
            problems.append(f"{SEGMENTS}: utterance '{utt}' is malformed (expected '<recording> <start> <end>')")
            continue
        parsed[utt] = segment
        recording, start, end = segment
        if recording not in wav_scp:
            problems.append(f"{SEGMENTS}: utterance '{utt}' references unknown recording '{recording}'")
        if end <= start:
            problems.append(f"{SEGMENTS}: utterance '{utt}' has end {end:g} <= start {start:g}")
    unused = set(wav_scp) - {rec for rec, _, _ in parsed.values()}
    if unused:
        problems.append(f"{WARNING}{WAV_SCP}: {len(unused)} recording(s) used by no segment: {_examples(unused)}")
    return problems


def _check_speakers(utt2spk: dict[str, str], spk2utt_raw: dict[str, str] | None) -> list[str]:
    problems = []
    for utt, spk in utt2spk.items():
        if not spk:
            problems.append(f"{UTT2SPK}: utterance '{utt}' has no speaker")
        elif not utt.startswith(spk):
            problems.append(f"{WARNING}{UTT2SPK}: utterance '{utt}' is not prefixed by its speaker id '{spk}'")
    if spk2utt_raw is None:
        return problems
    derived = _derive_spk2utt({u: s for u, s in utt2spk.items() if s})
    for spk in sorted(set(derived) | set(spk2utt_raw)):
        listed = spk2utt_raw.get(spk, "").split()
        expected = derived.get(spk, [])
        if listed == expected:
            continue
        missing, extra = set(expected) - set(listed), set(listed) - set(expected)
        detail = []
        if missing:
            detail.append(f"lacks {_examples(missing)}")
        if extra:
            detail.append(f"has extra {_examples(extra)}")
        problems.append(
            f"{SPK2UTT}: speaker '{spk}' is inconsistent with {UTT2SPK} ({'; '.join(detail) or 'wrong order'})"
        )
    return problems


def _check_content(tables: dict[str, dict[str, str]], check_audio: bool) -> list[str]:
    problems = []
    for utt, transcript in tables.get(TEXT, {}).items():
        if not transcript.strip():
            problems.append(f"{TEXT}: utterance '{utt}' has an empty transcript")
    if check_audio:
        for key, value in tables[WAV_SCP].items():
            if not value:
                problems.append(f"{WAV_SCP}: '{key}' has no audio path")
            elif not _audio_exists(value):
                problems.append(f"{WAV_SCP}: '{key}' audio file does not exist: {value}")
    return problems


def _check_utt2dur(raw: dict[str, str], utts: set[str]) -> list[str]:
    problems = []
    for utt, value in raw.items():
        if _parse_duration(value) is None:
            problems.append(f"{UTT2DUR}: utterance '{utt}' has invalid duration '{value}'")
    extra, missing = set(raw) - utts, utts - set(raw)
    if extra:
        problems.append(f"{WARNING}{UTT2DUR}: {len(extra)} unknown utterance(s): {_examples(extra)}")
    if missing:
        problems.append(f"{WARNING}{UTT2DUR}: {len(missing)} utterance(s) without duration: {_examples(missing)}")
    return problems


def validate_data_dir(path: str | os.PathLike, strict: bool = False, *, check_audio: bool = True) -> list[str]:
    """List the problems of a data dir, one line each; warnings start with "warning:".

    Checks: required files present, each file sorted and free of duplicate keys, every utterance
    in text, utt2spk and wav.scp (through segments when present), spk2utt equal to what utt2spk
    implies, non-empty transcripts, existing audio files (commands ending in '|' are not run),
    segments pointing at known recordings with end > start, and valid utt2dur values. Relative
    audio paths are resolved against the current directory, as Kaldi does. Utterance
    ids not prefixed by their speaker id are warnings (Kaldi needs it for consistent sorting).

    A folder that does not exist or lacks wav.scp raises BadDataDirError. With `strict`, any
    non-warning problem raises BadDataDirError with a one-line summary.
    """
    path = _require_dir(path)
    problems: list[str] = []
    tables: dict[str, dict[str, str]] = {}
    for name in DATA_FILES:
        if not (path / name).is_file():
            if name in REQUIRED_FILES:
                problems.append(f"missing required file '{name}'")
            continue
        entries, blank = _read_entries(path / name)
        problems += _check_file_format(name, entries, blank)
        tables[name] = _first_values(entries)

    if SEGMENTS in tables:
        problems += _check_segments(tables[SEGMENTS], tables[WAV_SCP])
    problems += _check_coverage(tables)
    if UTT2SPK in tables:
        problems += _check_speakers(tables[UTT2SPK], tables.get(SPK2UTT))
    problems += _check_content(tables, check_audio)
    if UTT2DUR in tables:
        problems += _check_utt2dur(tables[UTT2DUR], set(tables.get(UTT2SPK, {})))

    errors = [p for p in problems if not p.startswith(WARNING)]
    if strict and errors:
        raise BadDataDirError(
            f"{len(errors)} problem(s), first: {errors[0]} (run fix_data_dir to repair)", path
        )
    return problems


# ----------------------------------------------------------------------------- repair


@dataclass
class FixReport:
    """What `fix_data_dir` did: utterances kept, dropped ones with the reason, and notes."""

    kept: int
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. "kept 28, dropped 2 (1 empty transcript, 1 missing audio)"."""
        text = f"kept {self.kept}, dropped {len(self.dropped)}"
        if self.dropped:
            counts = sorted(Counter(self.dropped.values()).items(), key=lambda item: (-item[1], item[0]))
            text += " (" + ", ".join(f"{n} {reason}" for reason, n in counts) + ")"
        return "; ".join([text, *self.notes])


def _read_tables_leniently(path: Path) -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    """First value per key of every present file, and the keys duplicated with differing values."""
    tables, conflicts = {}, {}
    for name in (WAV_SCP, TEXT, UTT2SPK, SEGMENTS, UTT2DUR):
        if not (path / name).is_file():
            continue
        entries, _ = _read_entries(path / name)
        values: dict[str, set[str]] = defaultdict(set)
        for _, key, value in entries:
            values[key].add(value)
        tables[name] = _first_values(entries)
        # Identical repeated lines are harmless; differing ones leave no way to know which is right.
        conflicts[name] = {key for key, seen in values.items() if len(seen) > 1}
    return tables, conflicts


class _UttChecker:
    """Decides, for one utterance at a time, whether it survives and why not."""

    def __init__(self, tables: dict[str, dict[str, str]], conflicts: dict[str, set[str]], check_audio: bool):
        self.tables = tables
        self.conflicts = conflicts
        self.check_audio = check_audio
        self.segments = (
            {utt: _parse_segment(value) for utt, value in tables[SEGMENTS].items()} if SEGMENTS in tables else None
        )
        self._audio_ok: dict[str, bool] = {}

    def recording(self, utt: str) -> str:
        return self.segments[utt][0] if self.segments is not None else utt

    def _conflicting_file(self, utt: str) -> str | None:
        for name, keys in self.conflicts.items():
            if name == UTT2DUR:
                continue  # a bad duration only makes utt2dur incomplete; the utterance is fine
            key = utt
            if name == WAV_SCP and self.segments is not None:
                segment = self.segments.get(utt)
                if segment is None:
                    continue
                key = segment[0]
            if key in keys:
                return name
        return None

    def drop_reason(self, utt: str) -> str | None:
        """Why `utt` must be dropped, or None to keep it."""
        conflicting = self._conflicting_file(utt)
        if conflicting is not None:
            return f"duplicate entries in {conflicting}"
        if utt not in self.tables[UTT2SPK]:
            return f"missing from {UTT2SPK}"
        if not self.tables[UTT2SPK][utt]:
            return "no speaker"
        if utt not in self.tables[TEXT]:
            return f"missing from {TEXT}"
        if not self.tables[TEXT][utt].strip():
            return "empty transcript"
        return self._audio_reason(utt)

    def _audio_reason(self, utt: str) -> str | None:
        if self.segments is not None:
            if utt not in self.segments:
                return f"missing from {SEGMENTS}"
            segment = self.segments[utt]
            if segment is None or segment[2] <= segment[1]:
                return "bad segment"
        recording = self.recording(utt)
        value = self.tables[WAV_SCP].get(recording)
        if value is None:
            return f"missing from {WAV_SCP}"
        if self.check_audio:
            if recording not in self._audio_ok:
                self._audio_ok[recording] = bool(value) and _audio_exists(value)
            if not self._audio_ok[recording]:
                return "missing audio"
        return None


def _backup_originals(src: Path, dst: Path, dropped: Mapping[str, str]) -> None:
    """Copy src's files and the dropped list into dst/.backup, keeping any earlier backup."""
    backup = dst / BACKUP_DIR
    earlier = [p for p in backup.iterdir() if p.is_file()] if backup.is_dir() else []
    if earlier:
        # A second fix must not overwrite the first one's originals: they may hold data since dropped.
        number = 1
        while (backup / f"previous-{number}").exists():
            number += 1
        previous = backup / f"previous-{number}"
        previous.mkdir()
        for old in earlier:
            os.replace(old, previous / old.name)
    backup.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, backup / name)
    write_kv(backup / "dropped.txt", dropped)


def fix_data_dir(
    src: str | os.PathLike, dst: str | os.PathLike | None = None, *, check_audio: bool = True
) -> FixReport:
    """Keep only utterances valid in every file, sort, and regenerate spk2utt (Kaldi's fix_data_dir.sh).

    An utterance is kept when it has a speaker in utt2spk, a non-empty transcript in text, and
    audio in wav.scp (through a well-formed segment when segments exists) whose file exists
    (`check_audio`). Keys repeated with different values are dropped as ambiguous. segments and
    wav.scp are filtered to the kept utterances; utt2dur is kept only if it covers all of them.

    Writes to `dst` (default: in place). The original files and `dropped.txt` (utt and reason)
    go to `dst/.backup/`. Raises BadDataDirError, writing nothing, if no utterance survives.
    """
    src = _require_dir(src)
    dst = Path(dst) if dst is not None else src
    for name in (TEXT, UTT2SPK):
        if not (src / name).is_file():
            raise BadDataDirError(f"missing required file '{name}'", src)
    tables, conflicts = _read_tables_leniently(src)
    checker = _UttChecker(tables, conflicts, check_audio)

    candidates = set(tables[TEXT]) | set(tables[UTT2SPK])
    candidates |= set(checker.segments) if checker.segments is not None else set(tables[WAV_SCP])
    dropped, kept = {}, []
    for utt in sorted(candidates):
        reason = checker.drop_reason(utt)
        if reason is None:
            kept.append(utt)
        else:
            dropped[utt] = reason
    report = FixReport(kept=len(kept), dropped=dropped)
    if not kept:
        raise BadDataDirError(f"no valid utterances left ({report.summary()})", src)

    recordings = {checker.recording(utt) for utt in kept}
    fixed = DataDir(
        wav_scp={rec: tables[WAV_SCP][rec] for rec in recordings},
        text={utt: tables[TEXT][utt] for utt in kept},
        utt2spk={utt: tables[UTT2SPK][utt] for utt in kept},
        segments=None if checker.segments is None else {utt: checker.segments[utt] for utt in kept},
        utt2dur=_filter_durations(tables.get(UTT2DUR), conflicts.get(UTT2DUR, set()), kept, report),
    )
    _backup_originals(src, dst, dropped)
    fixed.save(dst)
    return report


def _filter_durations(
    raw: dict[str, str] | None, conflicting: set[str], kept: list[str], report: FixReport
) -> dict[str, float] | None:
    if raw is None:
        return None
    durations = {utt: _parse_duration(raw[utt]) if utt in raw and utt not in conflicting else None for utt in kept}
    if any(seconds is None for seconds in durations.values()):
        # A partial utt2dur would silently mislead length bucketing; it is cheap to recompute.
        report.notes.append(f"{UTT2DUR} removed (incomplete; run compute_utt2dur)")
        return None
    return durations


# ----------------------------------------------------------------------------- subset / split / combine


def _read_utt_list(utts: str | os.PathLike | Iterable[str]) -> list[str]:
    if isinstance(utts, (str, os.PathLike)):
        return list(read_kv(utts))
    return list(utts)


def subset_data_dir(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    num: int | None = None,
    utts: str | os.PathLike | Iterable[str] | None = None,
    speakers: Iterable[str] | None = None,
    first: bool = False,
    seed: int = 0,
) -> DataDir:
    """Write a subset of `src` to `dst` and return it.

    `utts` (ids, or a file whose first column lists them) and `speakers` restrict the candidates;
    `num` then takes that many of them: the first ones in sorted order with `first`, otherwise a
    random sample drawn with `seed`. At least one of the three must be given.
    """
    data = DataDir.load(src)
    if num is None and utts is None and speakers is None:
        raise BadConfigError("subset_data_dir needs num, utts or speakers")
    chosen = data.utts
    if utts is not None:
        wanted = _read_utt_list(utts)
        unknown = sorted(set(wanted) - set(data.utt2spk))
        if unknown:
            raise BadDataDirError(f"utterance '{unknown[0]}' is not in the data dir ({len(unknown)} unknown)", src)
        wanted_set = set(wanted)
        chosen = [utt for utt in chosen if utt in wanted_set]
    if speakers is not None:
        wanted_speakers = set(speakers)
        unknown = sorted(wanted_speakers - set(data.speakers))
        if unknown:
            raise BadDataDirError(f"speaker '{unknown[0]}' is not in the data dir", src)
        chosen = [utt for utt in chosen if data.utt2spk[utt] in wanted_speakers]
    if num is not None:
        if num <= 0 or num > len(chosen):
            raise BadConfigError(f"cannot take {num} utterances from {len(chosen)} in {src}")
        chosen = chosen[:num] if first else sorted(random.Random(seed).sample(chosen, num))
    if not chosen:
        raise BadDataDirError("subset is empty", src)
    subset = data.subset(chosen)
    subset.save(dst)
    return subset


def _balanced_speaker_parts(data: DataDir, n_parts: int, seed: int) -> list[list[str]]:
    """Greedy: largest speakers first, each into the part with the fewest utterances so far."""
    spk2utt = data.spk2utt
    speakers = sorted(spk2utt)
    random.Random(seed).shuffle(speakers)  # the seed only decides ties between equal-sized speakers
    speakers.sort(key=lambda spk: -len(spk2utt[spk]))
    parts: list[list[str]] = [[] for _ in range(n_parts)]
    for spk in speakers:
        smallest = min(range(n_parts), key=lambda i: (len(parts[i]), i))
        parts[smallest].extend(spk2utt[spk])
    return parts


def _equal_count_parts(data: DataDir, n_parts: int, seed: int) -> list[list[str]]:
    utts = data.utts
    random.Random(seed).shuffle(utts)
    base, extra = divmod(len(utts), n_parts)
    parts, start = [], 0
    for i in range(n_parts):
        size = base + (1 if i < extra else 0)
        parts.append(utts[start:start + size])
        start += size
    return parts


def split_data_dir(
    src: str | os.PathLike, dsts: list[str | os.PathLike], *, by: str = "speaker", seed: int = 0
) -> list[DataDir]:
    """Split `src` into len(dsts) data dirs and return them.

    by="speaker": no speaker appears in two parts, and parts are balanced by utterance count.
    by="count": a seeded shuffle cut into parts whose sizes differ by at most one.
    """
    if by not in ("speaker", "count"):
        raise BadConfigError(f"split_data_dir: by must be 'speaker' or 'count', not '{by}'")
    if not dsts:
        raise BadConfigError("split_data_dir needs at least one destination")
    data = DataDir.load(src)
    available = len(data.speakers) if by == "speaker" else len(data.utt2spk)
    if available < len(dsts):
        unit = "speakers" if by == "speaker" else "utterances"
        raise BadDataDirError(f"cannot split {available} {unit} into {len(dsts)} parts", src)
    split = _balanced_speaker_parts if by == "speaker" else _equal_count_parts
    parts = []
    for utts, dst in zip(split(data, len(dsts), seed), dsts):
        part = data.subset(utts)
        part.save(dst)
        parts.append(part)
    return parts


def _whole_recording_segments(data: DataDir, src: Path) -> dict[str, tuple[str, float, float]]:
    """Segments covering each utterance's full recording, for merging with segmented dirs."""
    segments = {}
    for utt in data.utts:
        if data.utt2dur is not None and utt in data.utt2dur:
            seconds = data.utt2dur[utt]
        else:
            seconds = _duration_from_scp(data.wav_scp.get(utt, ""), utt, src)
        segments[utt] = (utt, 0.0, seconds)
    return segments


def _merge_unique(merged: dict, table: Mapping, what: str, src: Path, origin: dict[str, Path]) -> None:
    for key, value in table.items():
        if key in merged and (what != "recording" or merged[key] != value):
            raise BadDataDirError(f"duplicate {what} id '{key}' (also in {origin[key]})", src)
        merged[key] = value
        origin.setdefault(key, src)


def combine_data_dirs(dst: str | os.PathLike, srcs: Iterable[str | os.PathLike]) -> DataDir:
    """Merge several data dirs into `dst` and return the result.

    An utterance id in two sources raises BadDataDirError naming it (as does one recording id with
    two different paths). If only some sources have segments, the others get whole-recording
    segments. utt2dur is kept only when every source has one.
    """
    sources = [Path(src) for src in srcs]
    if not sources:
        raise BadConfigError("combine_data_dirs needs at least one source")
    loaded = [(src, DataDir.load(src)) for src in sources]
    any_segments = any(data.segments is not None for _, data in loaded)
    all_durations = all(data.utt2dur is not None for _, data in loaded)
    wav_scp, text, utt2spk, segments, utt2dur = {}, {}, {}, {}, {}
    utt_origin: dict[str, Path] = {}
    rec_origin: dict[str, Path] = {}
    for src, data in loaded:
        _merge_unique(utt2spk, data.utt2spk, "utterance", src, utt_origin)
        text.update(data.text)
        _merge_unique(wav_scp, data.wav_scp, "recording", src, rec_origin)
        if any_segments:
            segments.update(data.segments if data.segments is not None else _whole_recording_segments(data, src))
        if all_durations:
            utt2dur.update(data.utt2dur)
    combined = DataDir(
        wav_scp=wav_scp,
        text=text,
        utt2spk=utt2spk,
        segments=segments if any_segments else None,
        utt2dur=utt2dur if all_durations else None,
    )
    combined.save(dst)
    return combined


# ----------------------------------------------------------------------------- durations


def _duration_from_scp(value: str, key: str, where: Path) -> float:
    # Imported here: voxtok.audio pulls in torch, which data-dir tools should not pay for at import.
    from voxtok.audio import audio_duration

    if not value or _is_pipe(value) or _ARK_OFFSET.match(value):
        raise BadDataDirError(f"cannot read the duration of '{key}' from a command or ark entry: {value}", where)
    return audio_duration(value)


def compute_utt2dur(path: str | os.PathLike) -> dict[str, float]:
    """Write utt2dur (seconds per utterance) from segments, or else from audio file headers.

    Returns the durations. wav.scp entries that are commands cannot be measured and raise
    BadDataDirError; unreadable audio raises BadAudioError naming the file.
    """
    path = _require_dir(path)
    data = DataDir.load(path)
    utts = data.utts
    durations = {}
    progress = tqdm(utts, desc=f"utt2dur {path.name}", unit="utt", leave=False,
                    disable=True if len(utts) < _PROGRESS_MIN else None)
    for utt in progress:
        if data.segments is not None:
            if utt not in data.segments:
                raise BadDataDirError(f"utterance '{utt}' has no segment", path / SEGMENTS)
            _, start, end = data.segments[utt]
            durations[utt] = end - start
        else:
            if utt not in data.wav_scp:
                raise BadDataDirError(f"utterance '{utt}' is not in {WAV_SCP}", path)
            durations[utt] = _duration_from_scp(data.wav_scp[utt], utt, path / WAV_SCP)
    write_kv(path / UTT2DUR, durations)
    return durations
