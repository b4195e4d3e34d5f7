"""Speaker embeddings: d-vectors separate voices, batch == single, stores round trip and resume."""

import numpy as np
import pytest
import torch
from conftest import espeak_speech
from hydra import compose, initialize_config_dir

from voxtok.audio import resample, save_audio
from voxtok.errors import BadAudioError, BadDataDirError
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.speaker import SpeakerEncoder, compute_embeddings, load_embeddings

TEXTS = ("She sells sea shells by the sea shore, surely. The quick brown fox jumps.",
         "A bright morning came over the quiet village and the children went to school.")
VOICES = ("en-us", "en-us+f3")


@pytest.fixture(scope="module")
def clips() -> dict[tuple[str, int], torch.Tensor]:
    """(voice, text index) -> 2.5 s of espeak-ng speech [1, T] at 16 kHz."""
    return {(v, i): torch.from_numpy(espeak_speech(t, v, 16000, 2.5))[None]
            for v in VOICES for i, t in enumerate(TEXTS)}


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def test_same_voice_is_closer_than_another_voice(clips, encoder):
    keys = list(clips)
    emb = encoder.embed_batch([clips[k] for k in keys], 16000)
    assert emb.shape == (4, 256) and torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = {(a, b): float(emb[i] @ emb[j]) for i, a in enumerate(keys) for j, b in enumerate(keys)}
    same = [sim[(v, 0), (v, 1)] for v in VOICES]
    other = [sim[(VOICES[0], i), (VOICES[1], j)] for i in range(2) for j in range(2)]
    assert min(same) > max(other) + 0.05, (same, other)
    # One LSTM pass over all windows gives what one utterance at a time gives.
    single = encoder.embed_utterance(clips[keys[2]], 16000)
    assert single.shape == (256,) and torch.allclose(single, emb[2], atol=1e-5)


def test_any_sample_rate_is_resampled(clips, encoder):
    wav = clips[VOICES[0], 0]
    at_16k = encoder.embed_utterance(wav, 16000)
    at_24k = encoder.embed_utterance(resample(wav, 16000, 24000), 24000)
    assert float(at_16k @ at_24k) > 0.98


def test_unusable_audio_is_a_clear_error(encoder):
    with pytest.raises(BadAudioError, match="silent"):
        encoder.embed_utterance(torch.zeros(1, 16000), 16000, "quiet.wav")
    with pytest.raises(BadAudioError, match="too short"):
        encoder.embed_utterance(0.1 * torch.randn(1, 800), 16000)
    with pytest.raises(BadAudioError, match="mono"):
        encoder.embed_utterance(0.1 * torch.randn(2, 16000), 16000)


def _data_dir(root, clips, extra_silent: bool = False):
    rows = [(f"{v.replace('+', '_')}-u{i}", v.replace("+", "_"), clips[v, i]) for v in VOICES for i in range(2)]
    if extra_silent:
        rows.append(("en-us-u9", "en-us", torch.zeros(1, 16000)))
    data = root / "data"
    data.mkdir(exist_ok=True)
    for utt, _, wav in rows:
        save_audio(root / f"{utt}.wav", wav, 16000)
    (data / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u, _, _ in sorted(rows)))
    (data / "text").write_text("".join(f"{u} hello\n" for u, _, _ in sorted(rows)))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _ in sorted(rows)))
    spk2utt = {}
    for u, s, _ in sorted(rows):
        spk2utt.setdefault(s, []).append(u)
    (data / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    return data


def test_embedding_stores_round_trip_and_resume(tmp_path, clips, capsys):
    data, out = _data_dir(tmp_path, clips), tmp_path / "emb"
    with pytest.raises(BadDataDirError, match="speaker-embedding stage"):
        load_embeddings(out)
    assert compute_embeddings(data, out, progress=False) == {}
    stores = load_embeddings(out)
    assert len(stores.utt2embedding) == 4 and sorted(stores.spk2embedding.keys()) == ["en-us", "en-us_f3"]
    a0, a1 = stores.utt2embedding["en-us-u0"], stores.utt2embedding["en-us-u1"]
    assert a0.shape == (256,) and a0.dtype == np.float32 and abs(np.linalg.norm(a0) - 1) < 1e-5
    mean = (a0 + a1) / np.linalg.norm(a0 + a1)
    np.testing.assert_allclose(stores.spk2embedding["en-us"], mean, atol=1e-6)
    direct = SpeakerEncoder().embed_utterance(clips[VOICES[0], 0], 16000).numpy()
    assert float(a0 @ direct) > 0.9999  # the store holds the 16-bit file's embedding

    # Resume: nothing is recomputed; a new (silent) utterance is tried, skipped and reported.
    capsys.readouterr()
    _data_dir(tmp_path, clips, extra_silent=True)
    failed = compute_embeddings(data, out, progress=False)
    assert list(failed) == ["en-us-u9"] and "silent" in failed["en-us-u9"]
    log = capsys.readouterr().out
    assert "5 utterances, 0 newly stored, 1 skipped" in log and "skipped:" in log
    assert len(load_embeddings(out).utt2embedding) == 4


def test_recipe_config_composes(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("speaker_embeddings", overrides=[f"data_dir={tmp_path}", "out_dir=x", "nj=2"])
    assert cfg.nj == 2 and cfg.data_dir == str(tmp_path) and cfg.out_dir == "x"
