"""`voxtok codec encode|decode|info` on files, folders and wav.scp, with bad inputs."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from voxtok.audio import load_audio, save_audio
from voxtok.cli import main
from voxtok.registry import build, load
from voxtok.codecs.tokenfile import read_tokens

TINY = Path(__file__).resolve().parents[1] / "configs" / "codec" / "wavtokenizer_tiny.yaml"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    codec = build("codec", "wavtokenizer", yaml.safe_load(TINY.read_text())["model"])
    return codec.save_pretrained(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture()
def audio_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    for name, seconds, sr in [("a", 0.7, 24000), ("b", 0.45, 16000), ("c", 1.1, 22050)]:
        t = np.arange(int(seconds * sr)) / sr
        save_audio(folder / f"{name}.wav", 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t)), sr)
    return folder


def test_encode_folder_decode_and_info(model_dir, audio_dir, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["codec", "encode", str(audio_dir), "-o", str(out), "--model", str(model_dir)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.vtk", "b.vtk", "c.vtk"]
    codec = load(model_dir, kind="codec")
    codes, header = read_tokens(out / "b.vtk")
    assert header.num_samples == int(0.45 * 24000) and codes.shape == (1, -(-header.num_samples // 320))
    # batched CLI codes equal a direct unbatched encode
    wav, _ = load_audio(audio_dir / "b.wav", 24000)
    with torch.no_grad():
        assert torch.equal(codec.encode(wav[None])[0], codes)
    assert main(["codec", "decode", str(out / "c.vtk"), "-o", str(tmp_path / "c.wav"), "--model", str(model_dir)]) == 0
    rec, sr = load_audio(tmp_path / "c.wav", check=False)
    assert sr == 24000 and abs(rec.shape[-1] - 26400) <= 1  # 1.1 s at 24 kHz
    capsys.readouterr()
    assert main(["codec", "info", str(out / "a.vtk")]) == 0
    info = capsys.readouterr().out
    assert "codec=wavtokenizer" in info and "frame_rate=75" in info and "n_q=1" in info


def test_wav_scp_and_parallel_jobs_match(model_dir, audio_dir, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"utt_{p.stem} {p}\n" for p in sorted(audio_dir.glob("*.wav"))))
    assert main(["codec", "encode", str(scp), "-o", str(tmp_path / "one"), "--model", str(model_dir)]) == 0
    assert main(["codec", "encode", str(scp), "-o", str(tmp_path / "two"), "--model", str(model_dir), "--nj", "2"]) == 0
    for name in ("utt_a", "utt_b", "utt_c"):
        assert torch.equal(read_tokens(tmp_path / "one" / f"{name}.vtk")[0], read_tokens(tmp_path / "two" / f"{name}.vtk")[0])


def test_bad_file_is_reported_and_others_kept(model_dir, audio_dir, tmp_path, capsys):
    (audio_dir / "broken.wav").write_bytes(b"RIFF-not-really")
    out = tmp_path / "tok"
    assert main(["codec", "encode", str(audio_dir), "-o", str(out), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.wav" in err[0] and "cannot read audio" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["a.vtk", "b.vtk", "c.vtk"]


def test_silent_audio_is_encoded(model_dir, audio_dir, tmp_path, capsys):
    # A corpus has silent segments: the codec encodes them like any other audio.
    save_audio(audio_dir / "quiet.wav", np.zeros(8000, dtype=np.float32), 16000)
    out = tmp_path / "tok"
    assert main(["codec", "encode", str(audio_dir), "-o", str(out), "--model", str(model_dir)]) == 0
    assert capsys.readouterr().err == ""
    codes, header = read_tokens(out / "quiet.vtk")
    assert header.num_samples == 12000 and codes.shape == (1, -(-12000 // 320))
    assert main(["codec", "decode", str(out / "quiet.vtk"), "-o", str(tmp_path / "q.wav"), "--model", str(model_dir)]) == 0
    assert load_audio(tmp_path / "q.wav", check=False)[0].shape == (1, 12000)


def test_silent_prompt_is_still_refused():
    # The silence check stays where speech is needed: a TTS voice prompt.
    from voxtok.errors import BadAudioError
    from voxtok.tts.pipeline import check_prompt_audio

    with pytest.raises(BadAudioError, match="silent"):
        check_prompt_audio(torch.zeros(1, 32000), 16000, "prompt.wav", min_seconds=1.0, max_seconds=30.0)


@pytest.mark.parametrize("nj", [1, 2])
def test_output_folder_is_created(model_dir, audio_dir, tmp_path, nj):
    out = tmp_path / "new" / "deeper"
    assert main(["codec", "encode", str(audio_dir), "-o", str(out), "--model", str(model_dir), "--nj", str(nj)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.vtk", "b.vtk", "c.vtk"]
    assert main(["codec", "encode", str(audio_dir / "a.wav"), "-o", str(tmp_path / "one" / "x.vtk"),
                 "--model", str(model_dir)]) == 0
    assert (tmp_path / "one" / "x.vtk").is_file()


@pytest.mark.parametrize("nj", [1, 2])
def test_output_folder_that_cannot_be_made_says_why(model_dir, audio_dir, tmp_path, capsys, nj):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should go")
    for target in (blocker, blocker / "sub"):
        capsys.readouterr()
        assert main(["codec", "encode", str(audio_dir), "-o", str(target), "--model", str(model_dir),
                     "--nj", str(nj)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(blocker) in err and ("folder" in err), err
    assert blocker.read_text() == "a file where the folder should go"


def test_a_token_file_that_cannot_be_written_is_reported(model_dir, audio_dir, tmp_path, capsys):
    out = tmp_path / "tok"
    (out / "b.vtk").mkdir(parents=True)  # a folder where b's token file should go
    assert main(["codec", "encode", str(audio_dir), "-o", str(out), "--model", str(model_dir)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "b.vtk" in err[0] and "cannot write the token file" in err[0]
    assert "encoded 2 utterance(s), 1 failed" in captured.out
    assert (out / "a.vtk").is_file() and (out / "c.vtk").is_file()


def test_decoding_with_another_checkpoint_fails_cleanly(model_dir, audio_dir, tmp_path, capsys):
    out = tmp_path / "a.vtk"
    assert main(["codec", "encode", str(audio_dir / "a.wav"), "-o", str(out), "--model", str(model_dir)]) == 0
    other = build("codec", "wavtokenizer", yaml.safe_load(TINY.read_text())["model"]).save_pretrained(tmp_path / "other")
    capsys.readouterr()
    assert main(["codec", "decode", str(out), "-o", str(tmp_path / "x.wav"), "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint" in err
    assert not (tmp_path / "x.wav").exists()
