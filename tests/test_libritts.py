"""LibriTTS tree -> Kaldi data dirs, on a tiny tree built in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxtok.data.kaldi import DataDir, read_kv, validate_data_dir
from voxtok.data.libritts import PrepReport, prepare_libritts, prepare_splits, split_name
from voxtok.errors import BadConfigError, BadDataDirError

SR = 24000


def add_utt(root: Path, subset: str, speaker: str, chapter: str, index: int,
            text: str | None, seconds: float = 0.1) -> str:
    """One LibriTTS-style utterance; text=None leaves out the .normalized.txt file."""
    folder = root / subset / speaker / chapter
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{speaker}_{chapter}_{index:06d}_000000"
    t = np.arange(int(round(seconds * SR))) / SR
    sf.write(folder / f"{stem}.wav", (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SR)
    if text is not None:
        (folder / f"{stem}.normalized.txt").write_text(text, encoding="utf-8")
        (folder / f"{stem}.original.txt").write_text(text.upper(), encoding="utf-8")
    return stem


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "LibriTTS"
    add_utt(root, "dev-clean", "84", "121123", 1, "Hello there.\n", seconds=0.25)
    add_utt(root, "dev-clean", "84", "121123", 2, "  Second\nline  ", seconds=0.5)
    add_utt(root, "dev-clean", "84", "121550", 3, None)  # missing transcript
    add_utt(root, "dev-clean", "174", "50561", 4, "   \n")  # empty transcript
    add_utt(root, "dev-clean", "174", "50561", 5, "Caf\u00e9 au lait.", seconds=0.125)
    add_utt(root, "train-clean-100", "19", "198", 1, "Train one.")
    add_utt(root, "train-clean-100", "26", "495", 1, "Train two.")
    add_utt(root, "train-other-500", "20", "205", 1, "Other train.")
    add_utt(root, "test-clean", "121", "121726", 1, "Test one.")
    (root / "docs").mkdir()
    (root / "docs" / "README.txt").write_text("not a subset")
    return root


def test_prepare_subset_writes_exact_data_dir(corpus, tmp_path):
    reports = prepare_libritts(corpus, tmp_path / "data", ["dev-clean"])
    assert list(reports) == ["dev-clean"]
    out = tmp_path / "data" / "dev_clean"
    assert reports["dev-clean"] == PrepReport(
        subset="dev-clean", data_dir=out, utts=3, speakers=2, missing_text=1, empty_text=1, seconds=0.875
    )
    assert reports["dev-clean"].summary() == "dev-clean: 3 utts, 2 speakers, 0.0 h (1 missing text, 1 empty text)"
    assert (out / "text").read_text(encoding="utf-8").splitlines() == [
        "174_50561_000005_000000 Caf\u00e9 au lait.",
        "84_121123_000001_000000 Hello there.",
        "84_121123_000002_000000 Second line",
    ]
    assert (out / "utt2spk").read_text().splitlines() == [
        "174_50561_000005_000000 174",
        "84_121123_000001_000000 84",
        "84_121123_000002_000000 84",
    ]
    assert (out / "spk2utt").read_text().splitlines() == [
        "174 174_50561_000005_000000",
        "84 84_121123_000001_000000 84_121123_000002_000000",
    ]
    wav_scp = read_kv(out / "wav.scp")
    assert wav_scp["84_121123_000002_000000"] == str(
        (corpus / "dev-clean" / "84" / "121123" / "84_121123_000002_000000.wav").resolve()
    )
    assert read_kv(out / "utt2dur") == {
        "174_50561_000005_000000": "0.125",
        "84_121123_000001_000000": "0.25",
        "84_121123_000002_000000": "0.5",
    }
    assert validate_data_dir(out) == []


def test_prepare_without_durations(corpus, tmp_path):
    report = prepare_libritts(corpus, tmp_path / "data", ["test-clean"], with_durations=False)["test-clean"]
    assert report.seconds is None and report.utts == 1
    assert not (tmp_path / "data" / "test_clean" / "utt2dur").exists()
    assert DataDir.load(tmp_path / "data" / "test_clean").utt2spk == {"121_121726_000001_000000": "121"}


def test_all_subsets_found_when_none_given(corpus, tmp_path):
    add_utt(corpus, "my-extra", "7", "1", 1, "Custom folder.")
    reports = prepare_libritts(corpus, tmp_path / "data")
    assert list(reports) == ["dev-clean", "my-extra", "test-clean", "train-clean-100", "train-other-500"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dev_clean", "my_extra", "test_clean", "train_clean_100", "train_other_500"]
    assert [reports[name].utts for name in reports] == [3, 1, 1, 2, 1]


def test_subset_without_usable_utterances_raises(corpus, tmp_path):
    (corpus / "dev-other").mkdir()
    with pytest.raises(BadDataDirError, match=r"dev-other: subset 'dev-other' has no usable utterances \(0 wav"):
        prepare_libritts(corpus, tmp_path / "data", ["dev-other"])
    add_utt(corpus, "test-other", "5", "6", 1, None)
    add_utt(corpus, "test-other", "5", "6", 2, "")
    with pytest.raises(BadDataDirError, match="1 missing transcripts, 1 empty transcripts"):
        prepare_libritts(corpus, tmp_path / "data", ["test-other"])
    assert not (tmp_path / "data" / "test_other").exists()


def test_missing_root_or_subset_raises(corpus, tmp_path):
    with pytest.raises(BadDataDirError, match="LibriTTS root does not exist"):
        prepare_libritts(tmp_path / "nowhere", tmp_path / "data")
    with pytest.raises(BadDataDirError, match="subset 'train-clean-360' not found"):
        prepare_libritts(corpus, tmp_path / "data", ["train-clean-360"])
    with pytest.raises(BadDataDirError, match="no LibriTTS subsets found"):
        prepare_libritts(tmp_path, tmp_path / "data")  # tmp_path holds LibriTTS/, not subsets


def test_split_name():
    assert [split_name(s) for s in ("train-clean-100", "train_other_500", "dev-clean", "test-other")] == [
        "train", "train", "dev", "test"]
    with pytest.raises(BadConfigError, match="subset 'trainx' is train, dev or test"):
        split_name("trainx")


def test_prepare_splits_combines_subsets(corpus, tmp_path):
    data = tmp_path / "data"
    by_split = prepare_splits(corpus, data)
    assert {split: [r.subset for r in reports] for split, reports in by_split.items()} == {
        "dev": ["dev-clean"], "test": ["test-clean"], "train": ["train-clean-100", "train-other-500"]}
    train = DataDir.load(data / "train")
    assert train.utts == ["19_198_000001_000000", "20_205_000001_000000", "26_495_000001_000000"]
    assert train.speakers == ["19", "20", "26"]
    assert set(train.utt2dur) == set(train.utts)
    assert DataDir.load(data / "dev") == DataDir.load(data / "dev_clean")
    for split in ("train", "dev", "test"):
        assert validate_data_dir(data / split) == []


def test_prepare_splits_rejects_unclassifiable_subset_before_writing(corpus, tmp_path):
    add_utt(corpus, "extra", "7", "1", 1, "Custom folder.")
    with pytest.raises(BadConfigError, match="subset 'extra'"):
        prepare_splits(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()
