"""Atomic writes: the target is the old file or the new one, and no temp file survives a failure.

The first tests cover `atomic_write` / `atomic_dir` themselves; the rest make each family of
callers fail in the middle of a write and check that the folder holds no temp file and the
previous output is untouched.
"""

import json
import os
import stat
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from voxtok.atomic import atomic_dir, atomic_write


def leftovers(folder):
    """Hidden temp files (".<name>.<random>.tmp" or mkdtemp's ".<name>.<random>") anywhere below folder."""
    return sorted(p.name for p in folder.rglob(".*"))


class Boom(Exception):
    pass


# ----------------------------------------------------------------------------- the two helpers


@pytest.mark.parametrize("mode, old, new", [("w", "old text\n", "new text\n"), ("wb", b"\x00old", b"\x01new\xff")])
def test_success_replaces_the_file(tmp_path, mode, old, new):
    target = tmp_path / "sub" / "out.bin"
    with atomic_write(target, mode) as handle:
        handle.write(old)
    with atomic_write(target, mode) as handle:
        handle.write(new)
    assert (target.read_text() if mode == "w" else target.read_bytes()) == new
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode, old, partial", [("w", "old text\n", "half"), ("wb", b"old bytes", b"half")])
def test_an_error_inside_the_block_keeps_the_old_file_and_no_temp(tmp_path, mode, old, partial):
    target = tmp_path / "out"
    with atomic_write(target, mode) as handle:
        handle.write(old)
    with pytest.raises(Boom):
        with atomic_write(target, mode) as handle:
            handle.write(partial)
            raise Boom()
    assert (target.read_text() if mode == "w" else target.read_bytes()) == old
    assert leftovers(tmp_path) == []


def test_an_error_with_no_old_file_leaves_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_write(tmp_path / "out") as handle:
            handle.write("half")
            raise Boom()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_no_temp(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # os.replace(file, existing folder) fails
    with pytest.raises(OSError):
        with atomic_write(target) as handle:
            handle.write("text")
    assert target.is_dir() and leftovers(tmp_path) == []


def test_text_options_are_passed_to_open(tmp_path):
    with atomic_write(tmp_path / "a.txt", newline="\r\n") as handle:
        handle.write("é\n")
    assert (tmp_path / "a.txt").read_bytes() == "é\r\n".encode("utf-8")


def test_permissions_follow_the_umask_like_an_ordinary_write(tmp_path):
    with atomic_write(tmp_path / "atomic") as handle:
        handle.write("x")
    (tmp_path / "plain").write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode) == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


def test_two_writers_of_one_target_do_not_collide(tmp_path):
    target = tmp_path / "out"
    with atomic_write(target) as first, atomic_write(target) as second:
        first.write("first")
        second.write("second")
    assert target.read_text() == "first"  # the outer block ends last and wins
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["a", "r", "w+", "x"])
def test_other_modes_are_refused(tmp_path, mode):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "out", mode):
            pass


def test_atomic_dir_replaces_on_success_and_keeps_the_old_folder_on_error(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("v2, half")
            raise Boom()
    assert (target / "weights").read_text() == "v1" and leftovers(tmp_path) == []
    with atomic_dir(target) as tmp:
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["other"]


# ----------------------------------------------------------------------------- callers


def test_save_audio_failing_mid_write(tmp_path, monkeypatch):
    import soundfile as sf

    from voxtok.audio import load_audio, save_audio

    target = tmp_path / "a.wav"
    save_audio(target, torch.full((1, 1600), 0.25), 16000)
    old = target.read_bytes()

    def half_then_fail(file, *args, **kwargs):
        file.write(b"RIFF")
        raise Boom()

    monkeypatch.setattr(sf, "write", half_then_fail)
    with pytest.raises(Boom):
        save_audio(target, torch.full((1, 800), 0.5), 16000)
    assert target.read_bytes() == old and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert load_audio(target, 16000)[0].shape[-1] == 1600


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_save_audio_writes_every_format_through_the_file_object(tmp_path, suffix):
    from voxtok.audio import load_audio, save_audio

    wav = 0.3 * torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 440)[None]
    save_audio(tmp_path / f"a{suffix}", wav, 16000)
    back, _ = load_audio(tmp_path / f"a{suffix}", 16000)
    assert back.shape[-1] == 16000 and leftovers(tmp_path) == []


def test_write_tokens_failing_at_the_rename(tmp_path):
    from voxtok.codecs.tokenfile import TokenHeader, write_tokens

    header = TokenHeader("x", "h", 16000, 50.0, 1, 8, 3, 960)
    (tmp_path / "u.vtk").mkdir()
    with pytest.raises(OSError):
        write_tokens(tmp_path / "u.vtk", torch.tensor([[1, 2, 3]]), header)
    assert leftovers(tmp_path) == []


def test_kaldi_data_dir_failing_on_one_file_writes_none(tmp_path, monkeypatch):
    import voxtok.data.kaldi as kaldi

    data = kaldi.DataDir(wav_scp={"u1": "a.wav"}, text={"u1": "hello"}, utt2spk={"u1": "s1"})
    data.save(tmp_path / "d")
    before = {p.name: p.read_text() for p in (tmp_path / "d").iterdir()}

    real, opened = kaldi.atomic_write, []

    @contextmanager
    def fail_on_third(path, *args, **kwargs):
        opened.append(path)
        with real(path, *args, **kwargs) as handle:
            if len(opened) == 3:
                handle.write("half")
                raise Boom()
            yield handle

    monkeypatch.setattr(kaldi, "atomic_write", fail_on_third)
    changed = kaldi.DataDir(wav_scp={"u2": "b.wav"}, text={"u2": "bye"}, utt2spk={"u2": "s2"})
    with pytest.raises(Boom):
        changed.save(tmp_path / "d")
    assert {p.name: p.read_text() for p in (tmp_path / "d").iterdir()} == before
    assert leftovers(tmp_path) == []


def test_synth_text_write_failing_mid_write(tmp_path):
    from voxtok.data.synth import _claim_out_root

    with pytest.raises(TypeError):
        _claim_out_root(tmp_path, 42)  # not text: the write fails after the temp file exists
    assert list(tmp_path.iterdir()) == []


def test_shard_meta_failing_mid_write(tmp_path):
    from voxtok.data.shards import ShardWriter

    with pytest.raises(TypeError):
        ShardWriter(tmp_path / "store", {"codec": object()})  # not JSON-serialisable
    assert list((tmp_path / "store").iterdir()) == []


def test_bench_stage_cache_failing_mid_write(tmp_path):
    from voxtok.bench.runner import StageCache

    cache = StageCache(tmp_path / "cache.json")
    cache.put("recon", "k1", {"pesq": 1.5})
    old = (tmp_path / "cache.json").read_text()
    with pytest.raises(TypeError):
        # json.dump writes piece by piece: the temp file holds half a document when it fails.
        StageCache(tmp_path / "cache.json").put("recon", "k2", {"a": 1, "z": object()})
    assert (tmp_path / "cache.json").read_text() == old and json.loads(old)["recon"]["key"] == "k1"
    assert leftovers(tmp_path) == []


def test_bench_csv_failing_mid_write(tmp_path):
    from voxtok.bench.report import write_csv

    class Unprintable:
        def __str__(self):
            raise Boom()

    write_csv([{"system": "a", "kbps": 1.0, "x": 1}], tmp_path / "results.csv")
    old = (tmp_path / "results.csv").read_text()
    with pytest.raises(Boom):
        write_csv([{"system": "a", "kbps": 1.0, "x": Unprintable()}], tmp_path / "results.csv")
    assert (tmp_path / "results.csv").read_text() == old and leftovers(tmp_path) == []


def test_token_set_failing_mid_write(tmp_path, monkeypatch):
    from voxtok.bench.tokens import TokenSet

    tokens = TokenSet(50.0, 8, 1)
    tokens.add("u1", np.array([[1, 2, 3]]), 0.06)
    tokens.save(tmp_path / "t.npz")
    old = (tmp_path / "t.npz").read_bytes()

    def half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04")
        raise Boom()

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(Boom):
        tokens.save(tmp_path / "t.npz")
    monkeypatch.undo()
    assert (tmp_path / "t.npz").read_bytes() == old and leftovers(tmp_path) == []
    assert TokenSet.load(tmp_path / "t.npz").codes["u1"].tolist() == [[1, 2, 3]]


def test_recipe_outputs_failing_mid_write(tmp_path):
    from voxtok.recipes.eval_s3 import write_outputs

    rows = [{"utt": "u1", "ref": "a", "hyp": "a", "cer": 0.0, "wer": 0.0, "frames": 3}]
    with pytest.raises(KeyError):
        write_outputs(tmp_path, rows, {})  # the table needs summary keys: fails inside the write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
