"""The codec evaluation stage: a table with the codec and Codec2 rows, per-utterance CSV, samples."""

import csv

import torch
import yaml
from hydra import compose, initialize_config_dir

from voxtok.bench.tokens import code_statistics
from voxtok.registry import build
from voxtok.recipes import CONFIG_DIR
from voxtok.recipes.eval_codec import evaluate
from codec_fixtures import make_data_dir


def test_table_has_codec_and_codec2_rows(tmp_path):
    data = make_data_dir(tmp_path, n=2)
    model = build("codec", "wavtokenizer", yaml.safe_load((CONFIG_DIR / "codec" / "wavtokenizer_tiny.yaml").read_text())["model"])
    model.save_pretrained(tmp_path / "model")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("eval_codec", overrides=[f"model={tmp_path / 'model'}", f"test_dir={data}",
                                               f"out_dir={tmp_path / 'eval'}", "baselines=[codec2_3200]"])
    rows = evaluate(cfg)
    assert [r["system"].split()[0] for r in rows] == ["wavtokenizer", "codec2_3200"]
    assert abs(rows[0]["kbps"] - 0.9) < 1e-6 and 3.0 < rows[1]["kbps"] < 3.5
    assert 0 < rows[0]["usage"] <= 1 and rows[0]["perplexity"] >= 1
    assert 0 < rows[1]["stoi"] <= 1  # Codec2 keeps speech intelligible
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| codec2_3200 |" in table and "PESQ-wb" in table
    with open(tmp_path / "eval" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 4  # 2 systems x 2 utterances
    assert len(list((tmp_path / "eval" / "samples").rglob("*.wav"))) == 6


def test_code_statistics():
    stats = code_statistics([torch.tensor([[0, 1, 2, 3]]), torch.tensor([[0, 1, 2, 3]])], 8)
    assert stats["usage"] == 0.5 and abs(stats["perplexity"] - 4.0) < 1e-9
