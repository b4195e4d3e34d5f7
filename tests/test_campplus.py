"""CAM++ speaker embeddings from a campplus.onnx through VoxTok's loading code and CosyVoice's front end.

The ONNX file is exported here from a small random-weight torch module with the released model's
inputs and outputs (fbank [B, F, 80] -> [B, 192]; tests/onnx_models.py). The reference path is the one
of FunAudioLLM/CosyVoice (commit ace7c47) cosyvoice/cli/frontend.py `_extract_spk_embedding`:
torchaudio.compliance.kaldi.fbank(num_mel_bins=80, dither=0, sample_frequency=16000) on [1, T] audio at
16 kHz, minus the mean over time, then the model on [1, F, 80]. Tolerance 1e-4 x max(1, peak).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx", reason="exporting the stand-in model needs the onnx package")
kaldi = pytest.importorskip("torchaudio.compliance.kaldi")

from onnx_models import export_campplus, export_s3  # noqa: E402

from voxtok.audio import resample  # noqa: E402
from voxtok.errors import BadAudioError, BadConfigError  # noqa: E402
from voxtok.tts.campplus import CamPlusEncoder  # noqa: E402


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    module = export_campplus(folder / "campplus.onnx")
    return folder, module


def reference_embedding(module, wav16: np.ndarray) -> torch.Tensor:
    """CosyVoice's _extract_spk_embedding with the torch module in place of the ONNX session."""
    feat = kaldi.fbank(torch.from_numpy(wav16)[None], num_mel_bins=80, dither=0, sample_frequency=16000)
    feat = feat - feat.mean(dim=0, keepdim=True)
    with torch.no_grad():
        return module(feat[None])[0]


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    tolerance = 1e-4 * max(1.0, float(want.abs().max()))
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= tolerance


def test_embedding_equals_the_reference_front_end_and_model(release, speech):
    folder, module = release
    encoder = CamPlusEncoder(folder)  # a release folder or the file itself
    assert encoder.dim == 192 and encoder.store_meta["model"] == "campplus"
    embedding = encoder.embed_utterance(torch.from_numpy(speech)[None], 16000)
    assert embedding.dtype == torch.float32
    assert_close(embedding, reference_embedding(module, speech))


def test_any_rate_batches_and_file_path(release, speech):
    folder, module = release
    encoder = CamPlusEncoder(folder / "campplus.onnx")
    wav22 = resample(torch.from_numpy(speech), 16000, 22050).numpy()
    batch = encoder.embed_batch([wav22, wav22[: 22050]], 22050, names=["a", "b"])
    assert batch.shape == (2, 192)
    # Audio at another rate is resampled to 16 kHz first; each utterance runs on its own.
    wav16 = resample(torch.from_numpy(wav22), 22050, 16000).numpy()
    assert_close(batch[0], reference_embedding(module, wav16))
    assert_close(batch[1], encoder.embed_utterance(wav22[: 22050], 22050))


def test_bad_inputs_are_one_line_errors(release, tmp_path, monkeypatch, speech):
    folder, _ = release
    with pytest.raises(BadConfigError, match="CAM\\+\\+ speaker model not found"):
        CamPlusEncoder(tmp_path)  # a folder without campplus.onnx
    (tmp_path / "campplus.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(BadConfigError, match="cannot load"):
        CamPlusEncoder(tmp_path)
    export_s3(tmp_path / "campplus.onnx")  # a model of another signature
    with pytest.raises(BadConfigError, match="1 input"):
        CamPlusEncoder(tmp_path)
    encoder = CamPlusEncoder(folder)
    with pytest.raises(BadAudioError, match="short"):
        encoder.embed_utterance(speech[:1000], 16000, name="tiny.wav")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BadConfigError, match="onnxruntime, which is not installed"):
        CamPlusEncoder(folder)


def _data_dir(root, speech):
    """Four 0.5 s utterances of two 'speakers' (slices of one signal) as a Kaldi data dir."""
    from voxtok.audio import save_audio

    data = root / "data"
    data.mkdir()
    rows = [(f"s{s}-u{u}", f"s{s}", speech[(2 * s + u) * 8000:(2 * s + u + 1) * 8000]) for s in range(2) for u in range(2)]
    for utt, _, wav in rows:
        save_audio(root / f"{utt}.wav", wav, 16000, subtype="FLOAT")
    (data / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u, _, _ in rows))
    (data / "text").write_text("".join(f"{u} hello\n" for u, _, _ in rows))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _ in rows))
    (data / "spk2utt").write_text("s0 s0-u0 s0-u1\ns1 s1-u0 s1-u1\n")
    return data, {u: w for u, _, w in rows}


def test_speaker_stores_with_campplus(release, tmp_path, speech):
    from hydra import compose, initialize_config_dir

    from voxtok.tts.speaker import compute_embeddings, load_embeddings, open_speaker_encoder

    folder, module = release
    data, wavs = _data_dir(tmp_path, speech)
    out = tmp_path / "spk"
    assert compute_embeddings(data, out, progress=False, encoder=f"campplus:{folder}") == {}
    stores = load_embeddings(out)
    assert stores.utt2embedding.meta["model"] == "campplus" and stores.utt2embedding.meta["dim"] == 192
    assert_close(torch.from_numpy(stores.utt2embedding["s1-u0"]), reference_embedding(module, wavs["s1-u0"]))
    a, b = stores.utt2embedding["s0-u0"], stores.utt2embedding["s0-u1"]
    mean = (a + b) / np.linalg.norm(a + b)  # direction of the mean (the models L2-normalise anyway)
    np.testing.assert_allclose(stores.spk2embedding["s0"], mean / np.linalg.norm(mean), atol=1e-5)
    assert open_speaker_encoder(f"campplus:{folder / 'campplus.onnx'}").dim == 192
    # Resuming into the store with another encoder is refused; so are bad specs and missing files.
    with pytest.raises(Exception, match="different settings"):
        compute_embeddings(data, out, progress=False)
    with pytest.raises(BadConfigError, match="unknown speaker encoder"):
        compute_embeddings(data, tmp_path / "x", progress=False, encoder="campplus")
    with pytest.raises(BadConfigError, match="not found"):
        compute_embeddings(data, tmp_path / "x", progress=False, encoder=f"campplus:{tmp_path / 'none.onnx'}")
    config_dir = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("speaker_embeddings", overrides=[f"encoder=campplus:{folder}/campplus.onnx"])
    assert cfg.encoder == f"campplus:{folder}/campplus.onnx"


def test_benchmark_speaker_similarity_with_campplus(release, speech):
    from voxtok.bench.speaker_encoders import check_speaker_encoder, speaker_embedding

    folder, module = release
    spec = f"campplus:{folder}"
    check_speaker_encoder(spec)
    wav22 = resample(torch.from_numpy(speech), 16000, 22050).numpy()
    embedding = speaker_embedding(wav22, 22050, spec)
    assert embedding.shape == (192,) and embedding.dtype == np.float64
    wav16 = resample(torch.from_numpy(wav22), 22050, 16000).numpy()
    assert_close(torch.from_numpy(embedding).float(), reference_embedding(module, wav16))
    assert speaker_embedding(speech[:800], 16000, spec) is None  # 50 ms: nothing to compare


def test_release_folder_gives_the_encoder(release):
    from voxtok.convert.cosyvoice_frontend import speaker_encoder_from_release

    folder, _ = release
    assert speaker_encoder_from_release(folder).dim == 192
