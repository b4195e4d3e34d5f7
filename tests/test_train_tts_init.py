"""`voxtok.recipes.train_tts init_from=DIR`: fine-tuning a converted CosyVoice-300M LLM (the reduced random-weight
folder of tests/reduced_release_folder.py) on a small corpus whose tokens and x-vectors come from the folder's own
S3 tokenizer and CAM++; and the one-line errors when the folder or the data do not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx", reason="exporting the stand-in ONNX models needs the onnx package")
pytest.importorskip("whisper", reason="the whisper_bpe text frontend needs openai-whisper")

from reduced_release_folder import convert_release, make_release  # noqa: E402

from voxtok.errors import BadConfigError  # noqa: E402
from voxtok.recipes import CONFIG_DIR  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "egs" / "libritts" / "conf" / "finetune_cosyvoice.yaml"
TEXTS = {"a_1": "The cat sat on the mat.", "a_2": "A quick brown fox.", "b_1": "Hello there, friend.",
         "b_2": "She sells sea shells."}
QUICK = ["trainer.max_steps=2", "trainer.val_every_n_steps=1000", "trainer.checkpoint_every_n_steps=1000",
         "trainer.log_every_n_steps=1", "tts.data.num_workers=0"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cosyvoice")
    return convert_release(make_release(root / "CosyVoice-300M"), root / "converted")


@pytest.fixture(scope="module")
def corpus(converted, speech, tmp_path_factory) -> Path:
    """data/{train,dev} (espeak speech), tokens/ of the folder's S3 tokenizer, spk/ of its CAM++."""
    from voxtok.audio import save_audio
    from voxtok.data.kaldi import DataDir
    from voxtok.recipes.tokenize import tokenize_split
    from voxtok.tts.speaker import compute_embeddings

    root = tmp_path_factory.mktemp("corpus")
    for i, utt in enumerate(TEXTS):
        save_audio(root / "wav" / f"{utt}.wav", torch.from_numpy(np.roll(speech, 4000 * i)[None]), 16000)
    for split in ("train", "dev"):
        DataDir(wav_scp={u: str(root / "wav" / f"{u}.wav") for u in TEXTS}, text=dict(TEXTS),
                utt2spk={u: u[0] for u in TEXTS}).save(root / "data" / split)
        tokenize_split(str(converted / "s3" / "model"), root / "data" / split, root / "tokens" / split, 1, None)
        compute_embeddings(root / "data" / split, root / "spk" / split, progress=False,
                           encoder=f"campplus:{converted / 'speaker' / 'campplus.onnx'}")
    return root


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train_tts", overrides=list(overrides))


def llm_run(converted: Path, corpus: Path, exp: Path, *extra: str, init: str = "tts/llm/model",
            token_dir: Path | None = None, embedding_dir: Path | None = None):
    """The composed train_tts config of a quick fine-tuning of the converted folder's part `init`."""
    return compose("tts=llm_cosyvoice_300m", f"init_from={converted / init}", f"data_dir={corpus / 'data'}",
                   f"token_dir={token_dir or corpus / 'tokens'}", f"embedding_dir={embedding_dir or corpus / 'spk'}",
                   f"exp_dir={exp}", f"hydra_dir={exp}/hydra", *QUICK, *extra)


def test_init_from_fine_tunes_the_converted_llm_with_the_settings_file(converted, corpus, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import voxtok
    from voxtok.recipes.train_tts import train
    from voxtok.registry import read_metadata
    from voxtok.tts.finetune import command_line_keys

    exp = tmp_path / "exp"
    cfg = llm_run(converted, corpus, exp, f"finetune={SHIPPED}")
    out = train(cfg, command_line_keys(QUICK))  # as the Hydra entry point passes its command line
    log = capsys.readouterr().out
    assert "llm weights, model config and text frontend from there" in log
    assert "tts.optim.lr" in log and "trainer.max_steps" not in log.split("finetune ")[1].splitlines()[0]
    assert "exported llm after 2 updates" in log  # the command line's 2 steps, not the file's 2000

    init, tuned = voxtok.load(converted / "tts" / "llm" / "model"), voxtok.load(out)
    assert tuned.to_config() == init.to_config()  # the folder's architecture (the YAML's sizes are 300M)
    init_state = dict(init.named_parameters())
    changed = {n for n, p in tuned.named_parameters() if not torch.equal(p, init_state[n])}
    assert changed and not any(n.startswith("text_encoder.") for n in changed)  # the file freezes it
    assert any(n.startswith("backbone.") for n in changed)
    extra = read_metadata(out)["extra"]
    assert extra["frontend"]["kind"] == "whisper_bpe" and extra["init_from"] == str(converted / "tts" / "llm" / "model")
    assert extra["tokens"] == init.extra["tokens"] and extra["converted_from"]["checkpoint"] == "llm.pt"
    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    assert [round(e.value, 10) for e in acc.Scalars("train/lr")] == [1e-5, 1e-5]  # the file's constant rate


def _with_meta(src: Path, dst: Path, **changes) -> Path:
    """A copy of the store folder `src` (per split) with meta.json fields changed."""
    for split in ("train", "dev"):
        shutil.copytree(src / split, dst / split)
        for meta in (dst / split).rglob("meta.json"):
            meta.write_text(json.dumps({**json.loads(meta.read_text()), **changes}))
    return dst


@pytest.mark.parametrize("case, message", [
    ("codec_folder", "init_from holds a codec 's3_onnx', but tts.name is 'llm' (choose the tts config of that model)"),
    ("flow_folder", "init_from holds a tts 'flow', but tts.name is 'llm'"),
    ("other_tokenizer", "holds tokens of tokenizer checkpoint 0123456789abcdef, the model was trained on checkpoint"),
    ("other_codebook", "speech_vocab_size 64 in the model, 128 from token_dir"),
    ("resemblyzer_vectors", "spk_dim 192 in the model, 256 from embedding_dir"),
    ("finetune_without_init", "finetune settings apply to a model to start from: set init_from"),
    ("unknown_freeze", "freeze: 'decoder' names no submodule of TextToTokenLM"),
])
def test_init_from_that_does_not_fit_is_a_one_line_error(converted, corpus, tmp_path, case, message):
    from voxtok.recipes.train_tts import train

    exp = tmp_path / "exp"
    if case == "codec_folder":
        cfg = llm_run(converted, corpus, exp, init="s3/model")
    elif case == "flow_folder":
        cfg = llm_run(converted, corpus, exp, init="tts/flow/model")
    elif case == "other_tokenizer":
        cfg = llm_run(converted, corpus, exp, token_dir=_with_meta(corpus / "tokens", tmp_path / "t",
                                                                    checkpoint_hash="0123456789abcdef"))
    elif case == "other_codebook":
        cfg = llm_run(converted, corpus, exp,
                      token_dir=_with_meta(corpus / "tokens", tmp_path / "t", codebook_size=128))
    elif case == "resemblyzer_vectors":
        cfg = llm_run(converted, corpus, exp, embedding_dir=_with_meta(corpus / "spk", tmp_path / "s", dim=256))
    elif case == "finetune_without_init":
        cfg = llm_run(converted, corpus, exp, f"finetune={SHIPPED}", "init_from=null")
    else:
        cfg = llm_run(converted, corpus, exp, "freeze=[decoder]")
    with pytest.raises(BadConfigError) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (exp / "model").exists()
