"""Stage 11 at scale (voxtok/recipes/synth_tts.py): the test set split over workers and batches gives
the same audio as one worker, every wav is written atomically, and a run that stopped part-way
continues where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxtok.audio import resample, save_audio
from voxtok.data.kaldi import DataDir
from voxtok.data.synth import Voice, run_espeak
from voxtok.errors import BadConfigError
from voxtok.recipes import synth_tts
from voxtok.tts.cosyvoice import CosyVoicePipeline

from tts_fixtures import save_cosyvoice_exp, tiny_tts_parts

TEXTS = {"a": ["good day to you", "the cat sat", "hello there"], "b": ["a quiet garden", "green and blue"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(pipeline manifest of tiny random CosyVoice-style parts, a test data dir of 2 espeak speakers)."""
    root = tmp_path_factory.mktemp("synth_workers")
    manifest = save_cosyvoice_exp(tiny_tts_parts(root / "spk"), root / "exp")
    data = root / "test"
    data.mkdir()
    utts = [(f"{spk}_{i}", spk, text) for spk, texts in TEXTS.items() for i, text in enumerate(texts)]
    for utt, spk, text in utts:
        wav, sr = run_espeak(Voice("espeak", "en-us" if spk == "a" else "en-gb", "F", rate=190), text)
        save_audio(data / f"{utt}.wav", resample(wav, sr, 16000), 16000)
    DataDir(wav_scp={u: str(data / f"{u}.wav") for u, _, _ in utts}, text={u: t for u, _, t in utts},
            utt2spk={u: s for u, s, _ in utts}).save(data)
    return manifest, data


def _cfg(setup, out: Path, **changes) -> dict:
    manifest, data = setup
    return {"pipeline": str(manifest), "test_dir": str(data), "out_dir": str(out), "mode": "zero_shot",
            "max_utts": None, "n_steps": 2, "seed": 3, "resynth": True, "batch_size": 2, "device": "cpu",
            "dtype": "float32", "ngpu": 0, "nj": 1, "threads": 1, "progress": False, **changes}


def _files(root: Path) -> dict[str, bytes]:
    """Every output (wav.scp with the folder's own path taken out), timing.json aside."""
    root = root.resolve()
    return {str(p.relative_to(root)): p.read_bytes().replace(str(root).encode(), b"OUT")
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "timing.json"}


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory) -> Path:
    """One in-process worker, batches of 2 texts, with the vocoder resynthesis."""
    return synth_tts.synthesize_test_set(_cfg(setup, tmp_path_factory.mktemp("ref") / "synth"))


def test_one_worker_writes_every_wav_and_the_data_dirs(reference):
    utts = sorted(u for spk, texts in TEXTS.items() for u in (f"{spk}_{i}" for i in range(len(texts))))
    assert sorted(p.stem for p in (reference / "wav").glob("*.wav")) == utts
    assert sorted(p.stem for p in (reference / "resynth" / "wav").glob("*.wav")) == utts
    for data_dir in (reference / "data", reference / "resynth" / "data"):
        data = DataDir.load(data_dir)
        assert data.utts == utts and all(Path(p).is_file() for p in data.wav_scp.values())
        assert data.text["a_1"] == "the cat sat" and data.utt2spk["b_0"] == "b"
    assert (reference / "prompts").read_text().splitlines()[0] == "a_0 a_1"
    assert not list(reference.rglob(".*.tmp"))


def test_two_workers_give_the_same_audio_as_one(setup, reference, tmp_path):
    out = synth_tts.synthesize_test_set(_cfg(setup, tmp_path / "synth", nj=2))
    assert _files(out) == _files(reference)
    assert '"workers": 2' in (out / "timing.json").read_text()


def test_a_run_that_failed_part_way_continues_where_it_stopped(setup, reference, tmp_path, monkeypatch):
    real = CosyVoicePipeline.synthesize_batch
    calls, killed = [], []

    def dies_on_the_second_batch(self, texts, *args, **kwargs):
        calls.append(list(texts))
        if len(calls) == 2 and not killed:
            killed.append(True)
            raise RuntimeError("killed")
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(CosyVoicePipeline, "synthesize_batch", dies_on_the_second_batch)
    out = tmp_path / "synth"
    with pytest.raises(RuntimeError, match="killed"):
        synth_tts.synthesize_test_set(_cfg(setup, out))
    assert len(list((out / "wav").glob("*.wav"))) == 2  # the first batch, whole; no temp files
    assert not list(out.rglob(".*.tmp")) and not (out / "data").exists()
    calls.clear()
    synth_tts.synthesize_test_set(_cfg(setup, out))
    assert len(calls) == 2  # the first batch is not synthesized again
    assert _files(out) == _files(reference)

    # A lost wav: its batch is redone (same seeds, same batch-mate) and only it is written.
    (out / "wav" / "a_1.wav").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "wav").glob("*.wav")}
    calls.clear()
    synth_tts.synthesize_test_set(_cfg(setup, out))
    assert len(calls) == 1 and _files(out) == _files(reference)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "wav").glob("*.wav") if p.name != "a_1.wav"}
    assert after == {k: v for k, v in before.items()}
    calls.clear()
    synth_tts.synthesize_test_set(_cfg(setup, out))  # a finished run: nothing to do
    assert calls == []


def test_bfloat16_runs_on_cpu(setup, tmp_path):
    out = synth_tts.synthesize_test_set(_cfg(setup, tmp_path / "bf16", dtype="bfloat16", max_utts=2, resynth=False))
    assert len(DataDir.load(out / "data").utts) == 2


@pytest.mark.parametrize("changes, message", [
    ({"nj": 0}, "nj must be an integer >= 1"), ({"batch_size": "4"}, "batch_size must be an integer"),
    ({"device": "cuda:7"}, "cuda:7"), ({"dtype": "float8"}, "unknown dtype")])
def test_bad_worker_settings_are_one_line_errors(setup, tmp_path, changes, message):
    import torch

    if "device" in changes and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(BadConfigError, match=message) as info:
        synth_tts.synthesize_test_set(_cfg(setup, tmp_path / "x", **changes))
    assert "\n" not in str(info.value) and not (tmp_path / "x").exists()
