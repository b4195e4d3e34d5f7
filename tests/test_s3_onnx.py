"""CosyVoice's S3 speech tokenizer from a speech_tokenizer_v1.onnx, as the registered codec `s3_onnx`.

The ONNX file is exported here from a small random-weight torch module with the released model's
inputs and outputs (feats [1, 128, N] float32, feats_length [1] int32 -> tokens [1, ceil(N / 2)];
tests/onnx_models.py). The reference path is the one of FunAudioLLM/CosyVoice (commit ace7c47)
cosyvoice/cli/frontend.py `_extract_speech_token`: whisper.log_mel_spectrogram(speech, n_mels=128) on
[1, T] audio at 16 kHz, then the model with feats_length = N; its tokens must equal the codec's.
The log-mel is compared with openai-whisper's (1e-4 x max(1, peak)) when that package is installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx", reason="exporting the stand-in model needs the onnx package")

from onnx_models import export_campplus, export_s3  # noqa: E402

from voxtok.audio import MelConfig, MelSpectrogram, save_audio  # noqa: E402
from voxtok.cli import main  # noqa: E402
from voxtok.codecs.s3_onnx import S3OnnxCodec, whisper_log_mel  # noqa: E402
from voxtok.codecs.tokenfile import read_tokens  # noqa: E402
from voxtok.codecs.tokenize import encode_stream  # noqa: E402
from voxtok.errors import BadConfigError  # noqa: E402
from voxtok.registry import load  # noqa: E402


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    module = export_s3(folder / "speech_tokenizer_v1.onnx")
    return folder, module


def reference_log_mel(wav16: np.ndarray) -> torch.Tensor:
    """whisper.log_mel_spectrogram(speech, n_mels=128) [1, 128, N] (openai-whisper when installed)."""
    try:
        import whisper
    except ImportError:
        return whisper_log_mel(torch.from_numpy(wav16), MelSpectrogram(MelConfig.preset("whisper")))[None]
    return whisper.log_mel_spectrogram(torch.from_numpy(wav16)[None], n_mels=128)


def reference_tokens(module, wav16: np.ndarray) -> torch.Tensor:
    feat = reference_log_mel(wav16)
    with torch.no_grad():
        return module(feat, torch.tensor([feat.shape[2]], dtype=torch.int32)).flatten().long()


def test_log_mel_equals_whisper(speech):
    whisper = pytest.importorskip("whisper")
    mel = MelSpectrogram(MelConfig.preset("whisper"))
    for n in (len(speech), 16100, 4321, 401):
        want = whisper.log_mel_spectrogram(torch.from_numpy(speech[:n])[None], n_mels=128)[0]
        got = whisper_log_mel(torch.from_numpy(speech[:n]), mel)
        assert got.shape == want.shape == (128, n // 160)
        assert float((got - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))


def test_codes_equal_the_reference_and_survive_save_load(release, speech, tmp_path):
    folder, module = release
    codec = S3OnnxCodec.from_onnx(folder)  # the release folder, or the file
    assert (codec.sample_rate, codec.frame_rate, codec.n_q, codec.codebook_size) == (16000, 50.0, 1, 4096)
    codes = codec.encode(torch.from_numpy(speech)[None, None])
    assert codes.dtype == torch.long and codes.shape == (1, 1, 100)
    assert torch.equal(codes[0, 0], reference_tokens(module, speech))
    saved = codec.save_pretrained(tmp_path / "s3")
    assert sorted(p.name for p in saved.iterdir()) == ["config.yaml", "metadata.json", "model.safetensors"]
    meta = json.loads((saved / "metadata.json").read_text())
    assert meta["name"] == "s3_onnx" and meta["info"]["can_decode"] is False and meta["info"]["frame_rate"] == 50
    loaded = load(saved)
    assert isinstance(loaded, S3OnnxCodec) and loaded.checkpoint_hash == meta["weights_hash"]
    assert torch.equal(loaded.encode(torch.from_numpy(speech)[None, None]), codes)


def test_padded_batches_and_long_audio(release, speech):
    folder, module = release
    codec = S3OnnxCodec.from_onnx(folder / "speech_tokenizer_v1.onnx", max_seconds=1.0)
    lengths = torch.tensor([len(speech), 16100, 4321])
    batch = torch.zeros(3, 1, len(speech))
    for i, n in enumerate(lengths.tolist()):
        batch[i, 0, :n] = torch.from_numpy(speech[:n])
    codes = codec.encode(batch, lengths)
    valid = codec.code_lengths(lengths)
    assert valid.tolist() == [100, 50, 14]  # ceil((T // 160) / 2) per 1 s piece
    # 1 s pieces: a 2 s signal gives the tokens of its two halves; each item equals its own encode.
    halves = [reference_tokens(module, speech[:16000]), reference_tokens(module, speech[16000:])]
    assert torch.equal(codes[0, 0, :100], torch.cat(halves))
    for i, n in enumerate(lengths.tolist()[1:], start=1):
        alone = codec.encode(torch.from_numpy(speech[:n])[None, None])
        assert torch.equal(codes[i, :, : valid[i]], alone[0, :, : valid[i]])
    assert torch.equal(codes[2, 0, :14], reference_tokens(module, speech[:4321]))


def test_codec_cli_and_tokenize_stage(release, speech, tmp_path):
    folder, module = release
    model = S3OnnxCodec.from_onnx(folder).save_pretrained(tmp_path / "s3")
    save_audio(tmp_path / "a.wav", speech[:24000], 16000, subtype="FLOAT")
    assert main(["codec", "encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.vtk"), "--model", str(model)]) == 0
    codes, header = read_tokens(tmp_path / "a.vtk")
    assert header.codec == "s3_onnx" and header.frame_rate == 50 and codes.shape == (1, 75)
    assert torch.equal(codes[0].long(), reference_tokens(module, speech[:24000]))
    # The tokenize stage's loop (load + encode_stream) gives the same tokens.
    (utt, stream_codes, _, error), = encode_stream(load(model, kind="codec"), [("a", str(tmp_path / "a.wav"))])
    assert error is None and torch.equal(stream_codes, codes.long())
    assert main(["codec", "decode", str(tmp_path / "a.vtk"), "-o", str(tmp_path / "b.wav"), "--model", str(model)]) == 2


def test_bad_files_and_settings_are_one_line_errors(release, tmp_path, speech):
    folder, _ = release
    with pytest.raises(BadConfigError, match="S3 speech tokenizer not found"):
        S3OnnxCodec.from_onnx(tmp_path)
    export_campplus(tmp_path / "speech_tokenizer_v1.onnx")
    with pytest.raises(BadConfigError, match="2 input"):
        S3OnnxCodec.from_onnx(tmp_path)
    with pytest.raises(BadConfigError, match="unknown s3_onnx setting"):
        S3OnnxCodec.from_onnx(folder, frame_rate=25)
    with pytest.raises(BadConfigError, match="does not fit this model"):
        S3OnnxCodec.from_onnx(folder, hop_length=640).encode(torch.from_numpy(speech)[None, None])
    codec = S3OnnxCodec.from_onnx(folder)
    assert codec.can_decode is False
    with pytest.raises(BadConfigError, match="no decoder"):
        codec.decode(torch.zeros(1, 1, 5, dtype=torch.long))


def test_release_folder_and_config_give_the_codec(release, tmp_path, speech):
    from voxtok.convert.cosyvoice_frontend import speech_tokenizer_from_release
    from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml

    folder, module = release
    path = tmp_path / "cosyvoice.yaml"
    path.write_text("llm: !new:cosyvoice.llm.llm.TransformerLM\n    speech_token_size: 4096\n"
                    "flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec\n    vocab_size: 4096\n    input_frame_rate: 50\n")
    codec = speech_tokenizer_from_release(folder, read_cosyvoice_yaml(path))
    assert (codec.codebook_size, codec.frame_rate) == (4096, 50.0)
    assert torch.equal(codec.encode(torch.from_numpy(speech)[None, None])[0, 0], reference_tokens(module, speech))
    path.write_text(path.read_text().replace("vocab_size: 4096", "vocab_size: 6561"))
    with pytest.raises(BadConfigError, match="differ"):
        speech_tokenizer_from_release(folder, read_cosyvoice_yaml(path))
