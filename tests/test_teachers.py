"""Teacher features for distillation: the bundled LM teacher, speech teachers (tiny random HF
encoders, the S3 tokenizer), and the extraction recipe's stores."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from voxtok.audio import load_audio, save_audio
from voxtok.codecs.align import AlignmentError, WordSpan, proportional_word_spans
from voxtok.codecs.teachers import LMTeacher, SMTeacher, frame_owners, interpolate_frames
from voxtok.data.shards import ShardStore
from voxtok.errors import BadAudioError, BadConfigError, BadTextError
from voxtok.recipes import CONFIG_DIR

TEXT = "The quick brown fox, unbelievably, jumps."


@pytest.fixture(scope="module")
def lm() -> LMTeacher:
    return LMTeacher()


def tiny_hf_encoder(root: Path, kind: str) -> Path:
    """A random 2-layer, 32-dim HF speech encoder (hop 320 = 50 Hz) saved with its feature extractor."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config_cls, model_cls = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel)}[kind]
    config = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 8, 8),
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    path = root / kind
    model_cls(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: tiny_hf_encoder(root, kind) for kind in ("wav2vec2", "hubert")}


# ----------------------------------------------------------------------------- LM teacher


def test_default_lm_teacher_gives_2d_token_and_frame_features(lm):
    tokens = lm.token_features(TEXT)
    n = len(tokens.pieces)
    assert lm.dim == 384 and tokens.states.shape == (n, 384) and tokens.cls.shape == (384,)
    assert tokens.words == TEXT.split()
    # "fox," is one space-separated word even though the tokenizer splits off the comma.
    assert [tokens.pieces[i] for i in range(n) if tokens.word_index[i] == 3] == ["fox", ","]
    assert tokens.word_index.tolist() == sorted(tokens.word_index.tolist())
    feats = lm.frame_features(TEXT, 53)
    assert feats.shape == (53, 384) and torch.isfinite(feats).all()
    assert lm.token_spans(TEXT, 53).shape == (n, 2)


def test_proportional_mapping_covers_all_frames_with_word_means(lm):
    frames = 61
    tokens = lm.token_features(TEXT)
    feats, inside = lm.frame_features(TEXT, frames, return_mask=True, tokens=tokens)
    assert inside.all()
    spans = proportional_word_spans(TEXT, frames)
    for k, span in enumerate(spans):
        mean = tokens.states[tokens.word_index == k].mean(0)
        assert torch.allclose(feats[span.start:span.end], mean.expand(span.end - span.start, -1), atol=1e-6)
    token_spans = lm.token_spans(TEXT, frames, tokens=tokens)
    assert token_spans[0, 0] == 0 and token_spans[-1, 1] == frames
    assert all(token_spans[i].tolist() == [spans[w].start, spans[w].end] for i, w in enumerate(tokens.word_index))


def test_different_texts_give_different_features(lm):
    a = lm.frame_features("the cat sat on the mat", 40)
    b = lm.frame_features("a dog ran in the park", 40)
    batch = torch.stack([a, b])
    assert batch.shape == (2, 40, 384)
    assert (batch[0] - batch[1]).abs().amax(-1).min() > 1e-3  # every frame differs: no broadcast row
    assert not torch.allclose(lm.token_features("hello").cls, lm.token_features("goodbye").cls)


def test_aligned_spans_silence_takes_nearest_word(lm):
    text = "hello big world"
    spans = [WordSpan("hello", 2, 6), WordSpan("big", 10, 12), WordSpan("world", 12, 15)]
    feats, inside = lm.frame_features(text, 20, word_spans=spans, return_mask=True)
    assert inside.tolist() == [False] * 2 + [True] * 4 + [False] * 4 + [True] * 5 + [False] * 5
    owner, _ = frame_owners(spans, 20)
    assert owner.tolist() == [0] * 8 + [1] * 4 + [2] * 8  # the gap is split between its neighbours
    assert torch.equal(feats[0], feats[5]) and torch.equal(feats[7], feats[2]) and torch.equal(feats[8], feats[10])
    assert torch.equal(feats[19], feats[12])
    assert lm.token_spans(text, 20, spans).tolist() == [[2, 6], [10, 12], [12, 15]]
    with pytest.raises(AlignmentError, match="do not match"):
        lm.frame_features(text, 20, word_spans=spans[:2])
    with pytest.raises(AlignmentError, match="outside 14 frames"):
        lm.frame_features(text, 14, word_spans=spans)
    with pytest.raises(BadTextError):
        lm.token_features("  ")


def test_lm_layer_choice(lm):
    last = LMTeacher(layer=-1)
    assert not torch.allclose(last.token_features("hi there").states, lm.token_features("hi there").states)
    with pytest.raises(BadConfigError, match="layer"):
        LMTeacher(layer=7)


# ----------------------------------------------------------------------------- speech teachers


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_hf_speech_teacher_resamples_to_the_codec_frames(hf_dirs, kind, speech):
    from transformers import AutoModel

    teacher = SMTeacher.from_hf(hf_dirs[kind])
    assert teacher.dim == 32 and teacher.sample_rate == 16000
    wav = torch.from_numpy(speech[:16480])[None]
    feats = teacher.features(wav, frame_rate=50)
    assert feats.shape == (math.ceil(16480 * 50 / 16000), 32)
    assert teacher.features(wav, frame_rate=75, num_frames=78).shape == (78, 32)
    # At the encoder's own rate the features are exactly the mean of its hidden states.
    model = AutoModel.from_pretrained(hf_dirs[kind], local_files_only=True).eval()
    x = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        hidden = model(x, output_hidden_states=True).hidden_states
    native = torch.stack(hidden).mean(0)[0]
    assert torch.allclose(teacher.features(wav, 50, num_frames=native.shape[0]), native, atol=1e-4)
    one = SMTeacher.from_hf(hf_dirs[kind], layer=1)
    assert torch.allclose(one.features(wav, 50, num_frames=native.shape[0]), hidden[1][0], atol=1e-4)
    # Other input rates are resampled to 16 kHz first; the frame count follows the input's length.
    from voxtok.audio import resample
    assert teacher.features(resample(wav, 16000, 24000), 75, sample_rate=24000).shape == (78, 32)


def test_speech_teacher_bad_inputs(hf_dirs, tmp_path):
    from transformers import AutoModel

    with pytest.raises(BadConfigError, match="does not exist"):
        SMTeacher.from_hf(tmp_path / "nothing")
    AutoModel.from_pretrained(hf_dirs["hubert"], local_files_only=True).save_pretrained(tmp_path / "bare")
    with pytest.raises(BadConfigError, match="preprocessor_config.json"):
        SMTeacher.from_hf(tmp_path / "bare")
    teacher = SMTeacher.from_hf(hf_dirs["hubert"])
    with pytest.raises(BadAudioError, match="shorter than"):
        teacher.features(torch.randn(1, 100), 50)
    with pytest.raises(BadAudioError, match=r"\[1, T\]"):
        teacher.features(torch.randn(2, 1, 16000), 50)
    with pytest.raises(BadConfigError, match="does not exist"):
        LMTeacher(tmp_path / "nothing")


def test_interpolation_keeps_endpoints_and_is_linear():
    x = torch.arange(4.0)[:, None].repeat(1, 3)
    y = interpolate_frames(x, 8)
    assert y.shape == (8, 3) and y[0, 0] == 0 and y[-1, 0] == 3
    assert torch.all(y[1:, 0] >= y[:-1, 0])
    with pytest.raises(AssertionError):
        interpolate_frames(x[None], 8)


def test_s3_speech_teacher(tmp_path, speech):
    pytest.importorskip("voxtok.codecs.s3", reason="voxtok/codecs/s3.py (S3 tokenizer) is not in this tree")
    from voxtok.registry import build

    cfg = yaml.safe_load((CONFIG_DIR / "codec" / "s3_tiny.yaml").read_text())["model"]
    torch.manual_seed(0)
    build("codec", "s3", cfg).save_pretrained(tmp_path / "s3")
    teacher = SMTeacher.from_s3(tmp_path / "s3")
    wav = torch.from_numpy(speech[:16000])[None]
    feats = teacher.features(wav, frame_rate=75, num_frames=75)
    assert feats.shape == (75, teacher.dim) and torch.isfinite(feats).all()
    assert SMTeacher.from_s3(tmp_path / "s3", layer=0).features(wav, 50).shape == (50, teacher.dim)


# ----------------------------------------------------------------------------- extraction recipe


def make_data_dir(root: Path, speech: np.ndarray) -> tuple[Path, dict[str, int]]:
    texts = {"u1": "she sells sea shells", "u2": "by the sea shore", "u3": "surely the quick brown fox"}
    lengths = {"u1": 16000, "u2": 12345, "u3": 20000}
    d = root / "data"
    d.mkdir()
    for utt, n in lengths.items():
        save_audio(root / f"{utt}.wav", speech[:n], 16000)
    (d / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u in texts))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
    (d / "utt2spk").write_text("".join(f"{u} spk\n" for u in texts))
    (d / "spk2utt").write_text("spk u1 u2 u3\n")
    return d, lengths


def recipe_config(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("extract_teachers", overrides=["splits=null", "nj=1", *overrides])


def test_extraction_recipe_writes_stores_and_resumes(tmp_path, hf_dirs, speech, capsys):
    from voxtok.recipes.extract_teachers import run

    data, lengths = make_data_dir(tmp_path, speech)
    out = tmp_path / "teachers"
    cfg = recipe_config(f"data_dir={data}", f"out_dir={out}", f"sm.model_dir={hf_dirs['hubert']}")
    assert "3 newly stored" in run(cfg)[0]
    stores = {name: ShardStore(out / name) for name in ("lm", "lm_tokens", "lm_spans", "lm_cls", "sm")}
    for utt, n in lengths.items():
        frames = -(-n // 320)
        pieces = stores["lm_tokens"].shape(utt)[0]
        assert stores["lm"].shape(utt) == (frames, 384) and stores["sm"].shape(utt) == (frames, 32)
        assert stores["lm_tokens"].shape(utt) == (pieces, 384) and stores["lm_cls"].shape(utt) == (1, 384)
        spans = stores["lm_spans"][utt]
        assert spans.dtype == np.int32 and spans.shape == (pieces, 2)
        assert spans[0, 0] == 0 and spans[-1, 1] == frames and np.all(spans[:, 1] > spans[:, 0])
    assert not np.allclose(stores["lm"]["u1"][:10], stores["lm"]["u2"][:10])
    meta = json.loads((out / "lm" / "meta.json").read_text())
    assert meta["frame_rate"] == 50 and meta["dim"] == 384 and meta["layer"] == "mean"
    assert meta["alignment"] == "proportional" and meta["frame_rule"] == "ceil(num_samples / hop)"
    assert json.loads((out / "sm" / "meta.json").read_text())["model_type"] == "hubert"

    # Resume: nothing to do; a lost store is rebuilt without duplicating the others.
    assert "0 newly stored" in run(cfg)[0]
    for path in (out / "sm").iterdir():
        path.unlink()
    (out / "sm").rmdir()
    assert "3 newly stored" in run(cfg)[0]
    assert len(ShardStore(out / "lm")) == 3 and len(ShardStore(out / "sm")) == 3
    assert sum(1 for _ in (out / "lm").glob("*.index.tsv")) == 1

    # Without a speech teacher the sm store is skipped with a note; a wrong frame rate is refused.
    capsys.readouterr()
    run(recipe_config(f"data_dir={data}", f"out_dir={tmp_path / 'lm_only'}"))
    assert "'sm' store is skipped" in capsys.readouterr().out
    assert not (tmp_path / "lm_only" / "sm").exists() and len(ShardStore(tmp_path / "lm_only" / "lm")) == 3
    with pytest.raises(BadConfigError, match="frame_rate"):
        run(recipe_config(f"data_dir={data}", f"out_dir={out}", "frame_rate=75"))


def test_extraction_with_ctc_aligner(tmp_path, speech):
    pytest.importorskip("voxtok.codecs.s3", reason="voxtok/codecs/s3.py (S3 tokenizer) is not in this tree")
    from voxtok.registry import build
    from voxtok.recipes.extract_teachers import run

    cfg = yaml.safe_load((CONFIG_DIR / "codec" / "s3_tiny.yaml").read_text())["model"]
    torch.manual_seed(0)
    build("codec", "s3", cfg).save_pretrained(tmp_path / "s3")
    data, lengths = make_data_dir(tmp_path, speech)
    out = tmp_path / "teachers"
    summary = run(recipe_config(f"data_dir={data}", f"out_dir={out}", f"aligner.s3_model={tmp_path / 's3'}",
                                f"sm.s3_model={tmp_path / 's3'}", "sample_rate=24000", "hop=320", "frame_rate=75"))[0]
    assert "3 newly stored" in summary and "0 not CTC-alignable" in summary
    for utt in lengths:
        frames = -(-load_audio(tmp_path / f"{utt}.wav", 24000)[0].shape[-1] // 320)
        assert ShardStore(out / "lm").shape(utt) == (frames, 384)
        assert ShardStore(out / "sm").shape(utt) == (frames, 192)
        spans = ShardStore(out / "lm_spans")[utt]
        assert np.all(np.diff(spans[:, 0]) >= 0) and spans.max() <= frames
    assert json.loads((out / "lm" / "meta.json").read_text())["alignment"].startswith("ctc:")
