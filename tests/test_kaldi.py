"""Kaldi data dirs: reading/writing, validation, repair, subset/split/combine, durations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxtok.data.kaldi import (
    DataDir,
    FixReport,
    combine_data_dirs,
    compute_utt2dur,
    fix_data_dir,
    read_kv,
    split_data_dir,
    subset_data_dir,
    validate_data_dir,
    write_kv,
)
from voxtok.errors import BadConfigError, BadDataDirError, VoxTokError

SR = 16000


def make_wav(path: Path, seconds: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * SR))) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return str(path)


def write_raw(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_data_dir(root: Path, utts: dict[str, tuple[str, str]], seconds: float = 0.25) -> Path:
    """utts: utt -> (speaker, transcript); one wav per utterance under root/wavs."""
    data = DataDir(
        wav_scp={utt: make_wav(root / "wavs" / f"{utt}.wav", seconds) for utt in utts},
        text={utt: text for utt, (_, text) in utts.items()},
        utt2spk={utt: spk for utt, (spk, _) in utts.items()},
    )
    return data.save(root / "data")


FOUR = {
    "spkA_001": ("spkA", "hello world"),
    "spkA_002": ("spkA", "good morning"),
    "spkB_001": ("spkB", "one two three"),
    "spkB_002": ("spkB", "four five"),
}


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# ----------------------------------------------------------------------------- read_kv / write_kv


def test_write_kv_sorts_in_c_locale_order_and_reads_back(tmp_path):
    path = tmp_path / "text"
    mapping = {"b_1": "x y", "B_1": "upper", "a_1": "", "_z": "under", "\u00e9_1": "accent"}
    write_kv(path, mapping)
    # Byte order: uppercase < underscore < lowercase < non-ASCII; an empty value writes the key alone.
    assert lines(path) == ["B_1 upper", "_z under", "a_1", "b_1 x y", "\u00e9_1 accent"]
    assert read_kv(path) == mapping
    assert [p.name for p in tmp_path.iterdir()] == ["text"]  # no temp file left behind


def test_write_kv_formats_numbers_and_sequences(tmp_path):
    path = write_kv(tmp_path / "f", {"u1": 1.5, "u2": 0.1 + 0.2, "u3": ("rec", 0.0, 2.25), "u4": 10.0})
    assert lines(path) == ["u1 1.5", "u2 0.3", "u3 rec 0 2.25", "u4 10"]


def test_read_kv_keeps_inner_spacing_and_tabs_separate_key(tmp_path):
    path = tmp_path / "text"
    path.write_bytes("u1\thello  there \r\nu2\n\nu3 \u3000wide\u3000space\n".encode())
    assert read_kv(path) == {"u1": "hello  there", "u2": "", "u3": "\u3000wide\u3000space"}


def test_read_kv_duplicate_key_names_file_and_lines(tmp_path):
    path = tmp_path / "text"
    write_raw(path, ["u1 a", "u2 b", "u1 c"])
    with pytest.raises(BadDataDirError, match=r"text: duplicate key 'u1' on lines 1 and 3"):
        read_kv(path)


def test_read_kv_bad_utf8(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"u1 caf\xe9\n")
    with pytest.raises(BadDataDirError, match="not valid UTF-8"):
        read_kv(path)


def test_write_kv_rejects_bad_keys_and_values(tmp_path):
    with pytest.raises(BadDataDirError, match="invalid key 'a b'"):
        write_kv(tmp_path / "f", {"a b": "x"})
    with pytest.raises(BadDataDirError, match="line break"):
        write_kv(tmp_path / "f", {"a": "x\ny"})
    assert not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------- DataDir


def test_data_dir_round_trip_with_segments_and_durations(tmp_path):
    data = DataDir(
        wav_scp={"rec1": "/audio/rec1.wav", "rec2": "sox /audio/rec2.flac -t wav - |"},
        text={"s1-b": "second", "s1-a": "first", "s2-a": "third"},
        utt2spk={"s1-b": "s1", "s1-a": "s1", "s2-a": "s2"},
        segments={"s1-a": ("rec1", 0.0, 1.5), "s1-b": ("rec1", 1.5, 3.25), "s2-a": ("rec2", 0.5, 2.0)},
        utt2dur={"s1-a": 1.5, "s1-b": 1.75, "s2-a": 1.5},
    )
    out = data.save(tmp_path / "d")
    assert lines(out / "spk2utt") == ["s1 s1-a s1-b", "s2 s2-a"]
    assert lines(out / "segments") == ["s1-a rec1 0 1.5", "s1-b rec1 1.5 3.25", "s2-a rec2 0.5 2"]
    assert lines(out / "text") == ["s1-a first", "s1-b second", "s2-a third"]
    assert lines(out / "wav.scp") == ["rec1 /audio/rec1.wav", "rec2 sox /audio/rec2.flac -t wav - |"]
    loaded = DataDir.load(out)
    assert loaded == data
    assert loaded.utts == ["s1-a", "s1-b", "s2-a"]
    assert loaded.speakers == ["s1", "s2"]
    assert loaded.spk2utt == {"s1": ["s1-a", "s1-b"], "s2": ["s2-a"]}
    assert validate_data_dir(out, check_audio=False) == []


def test_save_removes_stale_optional_files_and_keeps_others(tmp_path):
    out = tmp_path / "d"
    DataDir({"u": "/a.wav"}, {"u": "x"}, {"u": "u"}, segments={"u": ("u", 0.0, 1.0)}, utt2dur={"u": 1.0}).save(out)
    (out / "feats.scp").write_text("keep me\n")
    DataDir({"u": "/a.wav"}, {"u": "x"}, {"u": "u"}).save(out)
    assert sorted(p.name for p in out.iterdir()) == ["feats.scp", "spk2utt", "text", "utt2spk", "wav.scp"]


def test_subset_keeps_only_used_recordings():
    data = DataDir(
        wav_scp={"r1": "/r1.wav", "r2": "/r2.wav"},
        text={"a_1": "x", "a_2": "y", "b_1": "z"},
        utt2spk={"a_1": "a", "a_2": "a", "b_1": "b"},
        segments={"a_1": ("r1", 0.0, 1.0), "a_2": ("r1", 1.0, 2.0), "b_1": ("r2", 0.0, 1.0)},
    )
    part = data.subset(["a_2", "a_1"])
    assert part.wav_scp == {"r1": "/r1.wav"}
    assert part.utts == ["a_1", "a_2"]
    assert part.segments == {"a_1": ("r1", 0.0, 1.0), "a_2": ("r1", 1.0, 2.0)}
    assert part.utt2dur is None
    with pytest.raises(BadDataDirError, match="utterance 'zz' is not in the data dir"):
        data.subset(["zz"])


def test_load_errors_name_the_dir(tmp_path):
    with pytest.raises(BadDataDirError, match="nope: data dir does not exist"):
        DataDir.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadDataDirError, match=r"empty: not a data dir \(no wav.scp\)"):
        DataDir.load(tmp_path / "empty")
    write_raw(tmp_path / "empty" / "wav.scp", ["u /a.wav"])
    with pytest.raises(BadDataDirError, match="missing required file 'text'"):
        DataDir.load(tmp_path / "empty")


# ----------------------------------------------------------------------------- validate


def test_validate_clean_dir_has_no_problems(tmp_path):
    assert validate_data_dir(make_data_dir(tmp_path, FOUR)) == []
    validate_data_dir(tmp_path / "data", strict=True)


def test_validate_detects_unsorted_file(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    write_raw(d / "text", ["spkA_002 good morning", "spkA_001 hello world", "spkB_001 one two three", "spkB_002 four five"])
    assert validate_data_dir(d) == ["text: not sorted (line 2 'spkA_001' comes after 'spkA_002')"]


def test_validate_detects_missing_audio(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    (tmp_path / "wavs" / "spkB_001.wav").unlink()
    missing = tmp_path / "wavs" / "spkB_001.wav"
    assert validate_data_dir(d) == [f"wav.scp: 'spkB_001' audio file does not exist: {missing}"]
    assert validate_data_dir(d, check_audio=False) == []


def test_validate_does_not_run_pipes(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    scp = read_kv(d / "wav.scp")
    scp["spkA_001"] = "sox /does/not/exist.flac -t wav - |"
    write_kv(d / "wav.scp", scp)
    assert validate_data_dir(d) == []


def test_validate_detects_empty_transcript(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    write_raw(d / "text", ["spkA_001 hello world", "spkA_002", "spkB_001 one two three", "spkB_002 four five"])
    assert validate_data_dir(d) == ["text: utterance 'spkA_002' has an empty transcript"]


def test_validate_detects_utt_missing_from_utt2spk(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    write_raw(d / "utt2spk", ["spkA_001 spkA", "spkA_002 spkA", "spkB_002 spkB"])
    write_raw(d / "spk2utt", ["spkA spkA_001 spkA_002", "spkB spkB_002"])
    assert validate_data_dir(d) == ["utt2spk: utterance 'spkB_001' is missing"]


def test_validate_detects_duplicate_key(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    write_raw(d / "utt2spk", ["spkA_001 spkA", "spkA_002 spkA", "spkA_002 spkA", "spkB_001 spkB", "spkB_002 spkB"])
    assert validate_data_dir(d) == ["utt2spk: duplicate key 'spkA_002' (lines 2 and 3)"]


def test_validate_detects_inconsistent_spk2utt(tmp_path):
    d = make_data_dir(tmp_path, FOUR)
    write_raw(d / "spk2utt", ["spkA spkA_001", "spkB spkA_002 spkB_001 spkB_002"])
    assert validate_data_dir(d) == [
        "spk2utt: speaker 'spkA' is inconsistent with utt2spk (lacks 'spkA_002')",
        "spk2utt: speaker 'spkB' is inconsistent with utt2spk (has extra 'spkA_002')",
    ]


def test_validate_missing_spk2utt_and_speaker_prefix_warning(tmp_path):
    d = make_data_dir(tmp_path, {"u1": ("spkA", "hi"), "spkA_2": ("spkA", "there")})
    assert validate_data_dir(d) == ["warning: utt2spk: utterance 'u1' is not prefixed by its speaker id 'spkA'"]
    validate_data_dir(d, strict=True)  # warnings alone are not fatal
    (d / "spk2utt").unlink()
    problems = validate_data_dir(d)
    assert problems[0] == "missing required file 'spk2utt'"
    with pytest.raises(BadDataDirError) as info:
        validate_data_dir(d, strict=True)
    assert "\n" not in str(info.value)
    assert str(info.value) == f"{d}: 1 problem(s), first: missing required file 'spk2utt' (run fix_data_dir to repair)"


def test_validate_detects_bad_segments(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    rec = make_wav(tmp_path / "rec.wav", 1.0)
    write_raw(d / "wav.scp", [f"rec {rec}"])
    write_raw(d / "text", ["s_1 a", "s_2 b", "s_3 c"])
    write_raw(d / "utt2spk", ["s_1 s", "s_2 s", "s_3 s"])
    write_raw(d / "spk2utt", ["s s_1 s_2 s_3"])
    write_raw(d / "segments", ["s_1 rec 0 0.5", "s_2 other 0 0.5", "s_3 rec 0.7 0.7"])
    assert validate_data_dir(d) == [
        "segments: utterance 's_2' references unknown recording 'other'",
        "segments: utterance 's_3' has end 0.7 <= start 0.7",
    ]


def test_validate_requires_existing_dir_with_wav_scp(tmp_path):
    with pytest.raises(BadDataDirError, match="does not exist"):
        validate_data_dir(tmp_path / "missing")
    (tmp_path / "d").mkdir()
    with pytest.raises(BadDataDirError, match="no wav.scp"):
        validate_data_dir(tmp_path / "d")


# ----------------------------------------------------------------------------- fix


def broken_dir(tmp_path: Path) -> Path:
    utts = {f"spk{s}_{i}": (f"spk{s}", f"words {s} {i}") for s in "AB" for i in range(1, 4)}
    d = make_data_dir(tmp_path, utts)
    (tmp_path / "wavs" / "spkA_2.wav").unlink()
    write_raw(d / "text", ["spkB_3 words B 3", "spkA_1 words A 1", "spkA_2 words A 2", "spkA_3",
                           "spkB_1 words B 1", "spkB_2 words B 2"])  # unsorted, one empty
    write_raw(d / "utt2spk", ["spkA_1 spkA", "spkA_2 spkA", "spkA_3 spkA", "spkB_1 spkB", "spkB_3 spkB"])
    write_raw(d / "spk2utt", ["spkA spkA_1"])
    write_raw(d / "utt2dur", [f"{u} 0.25" for u in sorted(utts)])
    return d


def test_fix_data_dir_drops_with_reasons_and_keeps_backup(tmp_path):
    src = broken_dir(tmp_path)
    original_text = (src / "text").read_text()
    dst = tmp_path / "fixed"
    report = fix_data_dir(src, dst)
    assert report == FixReport(
        kept=3,
        dropped={"spkA_2": "missing audio", "spkA_3": "empty transcript", "spkB_2": "missing from utt2spk"},
    )
    assert report.summary() == "kept 3, dropped 3 (1 empty transcript, 1 missing audio, 1 missing from utt2spk)"
    assert lines(dst / "text") == ["spkA_1 words A 1", "spkB_1 words B 1", "spkB_3 words B 3"]
    assert lines(dst / "spk2utt") == ["spkA spkA_1", "spkB spkB_1 spkB_3"]
    assert read_kv(dst / "utt2dur") == {"spkA_1": "0.25", "spkB_1": "0.25", "spkB_3": "0.25"}
    assert sorted(read_kv(dst / "wav.scp")) == ["spkA_1", "spkB_1", "spkB_3"]
    assert validate_data_dir(dst) == []
    backup = dst / ".backup"
    assert (backup / "text").read_text() == original_text
    assert sorted(p.name for p in backup.iterdir()) == [
        "dropped.txt", "spk2utt", "text", "utt2dur", "utt2spk", "wav.scp"]
    assert lines(backup / "dropped.txt") == [
        "spkA_2 missing audio", "spkA_3 empty transcript", "spkB_2 missing from utt2spk"]
    assert (src / "text").read_text() == original_text  # a separate dst leaves src untouched


def test_fix_in_place_twice_keeps_first_backup(tmp_path):
    src = broken_dir(tmp_path)
    original_text = (src / "text").read_text()
    fix_data_dir(src)
    assert validate_data_dir(src) == []
    second = fix_data_dir(src)
    assert second.summary() == "kept 3, dropped 0"
    assert (src / ".backup" / "previous-1" / "text").read_text() == original_text
    assert len(lines(src / ".backup" / "previous-1" / "dropped.txt")) == 3
    assert (src / ".backup" / "dropped.txt").read_text() == ""


def test_fix_with_segments_filters_recordings_and_durations(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    r1, r2 = make_wav(tmp_path / "r1.wav", 1.0), make_wav(tmp_path / "r2.wav", 1.0)
    write_raw(d / "wav.scp", [f"r1 {r1}", f"r2 {r2}", "r3 /gone.wav"])
    write_raw(d / "text", ["s_1 a", "s_2 b", "s_3 c", "s_4 d", "s_5 e", "s_5 other"])
    write_raw(d / "utt2spk", ["s_1 s", "s_2 s", "s_3 s", "s_4 s", "s_5 s"])
    write_raw(d / "segments", ["s_1 r1 0 0.5", "s_2 r2 0.5 0.2", "s_3 r3 0 1", "s_4 r1 0.5 1", "s_5 r1 0 1"])
    write_raw(d / "utt2dur", ["s_1 0.5", "s_2 0.3"])  # incomplete: must not survive
    report = fix_data_dir(d, tmp_path / "out")
    assert report.dropped == {"s_2": "bad segment", "s_3": "missing audio", "s_5": "duplicate entries in text"}
    assert report.summary() == (
        "kept 2, dropped 3 (1 bad segment, 1 duplicate entries in text, 1 missing audio); "
        "utt2dur removed (incomplete; run compute_utt2dur)"
    )
    out = DataDir.load(tmp_path / "out")
    assert out.wav_scp == {"r1": r1}
    assert out.segments == {"s_1": ("r1", 0.0, 0.5), "s_4": ("r1", 0.5, 1.0)}
    assert out.utt2dur is None
    assert validate_data_dir(tmp_path / "out") == []


def test_fix_with_nothing_left_raises_and_writes_nothing(tmp_path):
    d = make_data_dir(tmp_path, {"a_1": ("a", "x")})
    write_raw(d / "text", ["a_1"])
    before = {p.name: p.read_text() for p in d.iterdir()}
    with pytest.raises(BadDataDirError, match=r"no valid utterances left \(kept 0, dropped 1 \(1 empty transcript\)\)"):
        fix_data_dir(d)
    assert {p.name: p.read_text() for p in d.iterdir()} == before


# ----------------------------------------------------------------------------- subset / split / combine


def ten_speakers(tmp_path: Path) -> Path:
    # Speaker k has k + 1 utterances: unequal sizes make balancing non-trivial.
    utts = {f"s{k}_{i}": (f"s{k}", f"text {k} {i}") for k in range(10) for i in range(k + 1)}
    return make_data_dir(tmp_path, utts, seconds=0.05)


def test_subset_by_num_is_seeded_and_sorted(tmp_path):
    src = ten_speakers(tmp_path)
    a = subset_data_dir(src, tmp_path / "a", num=7, seed=3)
    b = subset_data_dir(src, tmp_path / "b", num=7, seed=3)
    assert a.utts == b.utts and len(a.utts) == 7
    assert lines(tmp_path / "a" / "text") == [f"{u} {a.text[u]}" for u in a.utts]
    assert subset_data_dir(src, tmp_path / "c", num=7, seed=4).utts != a.utts
    first = subset_data_dir(src, tmp_path / "f", num=3, first=True)
    assert first.utts == ["s0_0", "s1_0", "s1_1"]
    assert validate_data_dir(tmp_path / "a") == []


def test_subset_by_speakers_and_utt_list(tmp_path):
    src = ten_speakers(tmp_path)
    by_spk = subset_data_dir(src, tmp_path / "s", speakers=["s2", "s0"])
    assert by_spk.utts == ["s0_0", "s2_0", "s2_1", "s2_2"]
    assert lines(tmp_path / "s" / "spk2utt") == ["s0 s0_0", "s2 s2_0 s2_1 s2_2"]
    write_raw(tmp_path / "list", ["s3_1", "s9_9 anything"])
    assert subset_data_dir(src, tmp_path / "u", utts=tmp_path / "list").utts == ["s3_1", "s9_9"]
    with pytest.raises(BadConfigError, match="cannot take 100 utterances from 55"):
        subset_data_dir(src, tmp_path / "x", num=100)
    with pytest.raises(BadDataDirError, match="speaker 'nobody' is not in the data dir"):
        subset_data_dir(src, tmp_path / "x", speakers=["nobody"])
    with pytest.raises(BadConfigError):
        subset_data_dir(src, tmp_path / "x")


def test_split_by_speaker_is_disjoint_and_balanced(tmp_path):
    src = ten_speakers(tmp_path)
    parts = split_data_dir(src, [tmp_path / f"p{i}" for i in range(3)], by="speaker")
    speaker_sets = [set(p.speakers) for p in parts]
    assert speaker_sets[0].isdisjoint(speaker_sets[1] | speaker_sets[2])
    assert speaker_sets[1].isdisjoint(speaker_sets[2])
    assert set().union(*speaker_sets) == {f"s{k}" for k in range(10)}
    sizes = sorted(len(p.utts) for p in parts)
    assert sum(sizes) == 55 and sizes[-1] - sizes[0] <= 2  # 55 = 18 + 18 + 19 at best
    for i in range(3):
        assert validate_data_dir(tmp_path / f"p{i}") == []
        assert DataDir.load(tmp_path / f"p{i}") == parts[i]


def test_split_by_count_has_near_equal_sizes(tmp_path):
    src = ten_speakers(tmp_path)
    parts = split_data_dir(src, [tmp_path / f"p{i}" for i in range(4)], by="count", seed=1)
    assert [len(p.utts) for p in parts] == [14, 14, 14, 13]
    all_utts = [u for p in parts for u in p.utts]
    assert sorted(all_utts) == DataDir.load(src).utts
    with pytest.raises(BadDataDirError, match="cannot split 10 speakers into 11 parts"):
        split_data_dir(src, [tmp_path / f"q{i}" for i in range(11)])


def test_combine_and_duplicate_utterance_error(tmp_path):
    a = make_data_dir(tmp_path / "a", {"x_1": ("x", "one"), "x_2": ("x", "two")})
    b = make_data_dir(tmp_path / "b", {"y_1": ("y", "three")})
    combined = combine_data_dirs(tmp_path / "all", [b, a])
    assert combined.utts == ["x_1", "x_2", "y_1"]
    assert lines(tmp_path / "all" / "text") == ["x_1 one", "x_2 two", "y_1 three"]
    assert lines(tmp_path / "all" / "spk2utt") == ["x x_1 x_2", "y y_1"]
    assert validate_data_dir(tmp_path / "all") == []
    c = make_data_dir(tmp_path / "c", {"x_2": ("x", "again")})
    with pytest.raises(BadDataDirError, match=r"duplicate utterance id 'x_2' \(also in .*a/data\)"):
        combine_data_dirs(tmp_path / "bad", [a, c])
    assert not (tmp_path / "bad").exists()


def test_combine_mixed_segments_gives_whole_recording_segments(tmp_path):
    plain = make_data_dir(tmp_path / "p", {"x_1": ("x", "one")}, seconds=0.5)
    seg = tmp_path / "s"
    DataDir({"rec": make_wav(tmp_path / "rec.wav", 1.0)}, {"y_1": "two"}, {"y_1": "y"},
            segments={"y_1": ("rec", 0.25, 0.75)}).save(seg)
    combined = combine_data_dirs(tmp_path / "all", [plain, seg])
    assert combined.segments == {"x_1": ("x_1", 0.0, 0.5), "y_1": ("rec", 0.25, 0.75)}
    assert validate_data_dir(tmp_path / "all") == []


def test_compute_utt2dur_from_headers_and_segments(tmp_path):
    d = make_data_dir(tmp_path, {"a_1": ("a", "x")}, seconds=0.5)
    assert compute_utt2dur(d) == {"a_1": 0.5}
    assert lines(d / "utt2dur") == ["a_1 0.5"]
    seg = tmp_path / "s"
    DataDir({"rec": "cat /x.wav |"}, {"y_1": "two"}, {"y_1": "y"}, segments={"y_1": ("rec", 0.25, 1.0)}).save(seg)
    assert compute_utt2dur(seg) == {"y_1": 0.75}
    pipe = tmp_path / "pipe"
    DataDir({"y_1": "cat /x.wav |"}, {"y_1": "two"}, {"y_1": "y"}).save(pipe)
    with pytest.raises(VoxTokError, match="cannot read the duration of 'y_1'"):
        compute_utt2dur(pipe)
