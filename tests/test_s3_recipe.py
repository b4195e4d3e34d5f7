"""S3 recipes: train_s3 runs exactly the configured updates, checkpoints, resumes and exports;
eval_s3 writes the CER / WER / codebook table."""

import csv
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from voxtok.audio import resample, save_audio
from voxtok.registry import load
from voxtok.data.kaldi import DataDir
from voxtok.recipes import CONFIG_DIR
from voxtok.recipes.eval_s3 import evaluate
from voxtok.recipes.train_s3 import train

# Lightning's own deprecation notice about torch's pytree API, not something this code does.
pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec")

TEXTS = ["the cat sat", "a red dog", "we ran home", "she sells sea shells"]
SMALL = ["codec.model.dim=64", "codec.model.heads=2", "codec.model.encoder1_blocks=1", "codec.model.encoder2_blocks=1",
         "codec.model.quantizer.codebook_size=32", "codec.model.quantizer.warmup_steps=2", "codec.data.batch_size=2",
         "trainer.val_every_n_steps=3", "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1",
         "trainer.limit_val_batches=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from voxtok.data.synth import Voice, run_espeak

    root = tmp_path_factory.mktemp("s3data")
    wavs, text, utt2spk = {}, {}, {}
    for i, transcript in enumerate(TEXTS):
        wav, sr = run_espeak(Voice("espeak", "en-us", "M", rate=220), transcript)
        utt = f"spk{i % 2}_utt{i}"
        wavs[utt] = str(save_audio(root / "wav" / f"{utt}.wav", resample(wav, sr, 22050), 22050))
        text[utt], utt2spk[utt] = transcript.capitalize() + ".", f"spk{i % 2}"
    return DataDir(wav_scp=wavs, text=text, utt2spk=utt2spk).save(root / "data")


def test_train_resume_export_and_eval(data_dir, tmp_path, capsys):
    exp = tmp_path / "exp"

    def run(max_steps: int):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train_s3", overrides=[f"train_dir={data_dir}", f"valid_dir={data_dir}", f"exp_dir={exp}",
                                                 f"trainer.max_steps={max_steps}", *SMALL])
        return train(cfg)

    run(4)
    # One optimiser step per update: max_steps and the checkpoint cadence count updates.
    state = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 4 and int(state["state_dict"]["updates"]) == 4
    assert sorted(p.name for p in (exp / "checkpoints").glob("step*")) == ["step00000002.ckpt", "step00000004.ckpt"]
    assert "validation after 3 updates" in capsys.readouterr().out
    model_dir = run(6)  # resumes from last.ckpt
    state = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 6 and int(state["state_dict"]["updates"]) == 6
    model = load(model_dir, kind="codec")
    assert model.codec_name == "s3" and bool(model.quantizer.initialized)

    out = tmp_path / "eval"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("eval_s3", overrides=[f"model={model_dir}", f"test_dir={data_dir}", f"out_dir={out}",
                                            "batch_seconds=3"])
    summary = evaluate(cfg)
    table = (out / "table.md").read_text()
    assert "CER" in table and "codebook usage" in table and "4 test utterances" in table
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["utt"]: r["ref"] for r in rows} == {f"spk{i % 2}_utt{i}": t for i, t in enumerate(TEXTS)}
    assert all(0 < int(r["frames"]) for r in rows)
    assert 0 < summary["usage"] <= 1 and 1 <= summary["perplexity"] <= 32
    assert summary["cer"] >= 0 and summary["frame_rate"] == 50
