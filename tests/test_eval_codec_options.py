"""The codec evaluation stage's options for the distillation ablation: n_q (fewer RVQ codebooks),
speaker similarity and Whisper WER / dWER."""

import csv

import pytest
import torch
from hydra import compose, initialize_config_dir

from voxtok.audio import save_audio
from voxtok.registry import build
from voxtok.recipes import CONFIG_DIR
from voxtok.recipes.eval_codec import evaluate
from codec_fixtures import fitted, tiny_model


def test_eval_codec_at_fewer_codebooks_with_speaker_and_asr_scores(tmp_path, speech):
    torch.manual_seed(0)
    tiny = fitted(build("codec", "dmcodec", tiny_model()))
    data = tmp_path / "data"
    save_audio(tmp_path / "u1.wav", speech, 16000)
    data.mkdir()
    (data / "wav.scp").write_text(f"u1 {tmp_path / 'u1.wav'}\n")
    (data / "text").write_text("u1 she sells sea shells by the sea shore surely the quick brown fox jumps\n")
    (data / "utt2spk").write_text("u1 s1\n")
    (data / "spk2utt").write_text("s1 u1\n")
    tiny.save_pretrained(tmp_path / "exp" / "model")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("eval_codec", overrides=[f"model={tmp_path / 'exp' / 'model'}", f"test_dir={data}",
                                               f"out_dir={tmp_path / 'eval'}", "baselines=[]", "n_q=2",
                                               "speaker_similarity=true", "asr=true"])
    (row,) = evaluate(cfg)
    assert row["system"] == "dmcodec (exp) n_q=2" and row["kbps"] == pytest.approx(2 * 4 * 50 / 1000)
    assert -1 <= row["speaker_similarity"] <= 1
    assert row["dwer"] >= 0 and row["wer"] >= 0  # an untrained codec: any value, but measured
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| spk sim | WER | dWER |" in table
    with open(tmp_path / "eval" / "results.csv") as f:
        (utt,) = list(csv.DictReader(f))
    assert "transcript" in utt and utt["speaker_similarity"]
