"""Fine-tuning settings files (voxtok/tts/finetune.py): strict reading, precedence, freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.finetune import (apply_overrides, command_line_keys, finetune_overrides, freeze_parameters,
                                 read_finetune_config)

SHIPPED = Path(__file__).resolve().parents[1] / "egs" / "libritts" / "conf" / "finetune_cosyvoice.yaml"


def tiny(name: str) -> torch.nn.Module:
    """A model of configs/tts/<name>_tiny.yaml (the submodule names do not depend on the sizes)."""
    from voxtok.registry import build

    cfg = yaml.safe_load((CONFIG_DIR / "tts" / f"{name}_tiny.yaml").read_text())["model"]
    if name == "llm":
        cfg |= {"text_vocab_size": 40, "speech_vocab_size": 32}
    return build("tts", name, cfg)


@pytest.mark.parametrize("part", ["llm", "flow"])
def test_the_shipped_conf_reads_strictly_and_freezes_real_submodules(part):
    block = read_finetune_config(SHIPPED, part)
    settings = finetune_overrides(block)
    assert settings["tts.optim.lr"] == 1e-5 and settings["trainer.max_steps"] > 0 and settings["freeze"]
    model = tiny(part)
    frozen, trainable = freeze_parameters(model, settings["freeze"])
    assert frozen > 0 and trainable > 0
    assert frozen + trainable == sum(p.numel() for p in model.parameters())
    for name, param in model.named_parameters():
        assert param.requires_grad != any(name.startswith(p + ".") for p in settings["freeze"]), name


@pytest.mark.parametrize("text, message", [
    ("llm: {optim: {lr: 1.0e-5, lrr: 2}}", "unknown config key 'llm.optim.lrr'"),
    ("llm: {trainer: {max_stepz: 3}}", "unknown config key 'llm.trainer.max_stepz'"),
    ("llm: {data: {batchsize: 3}}", "unknown config key 'llm.data.batchsize'"),
    ("llm: {steps: 3}", "unknown config key 'llm.steps' (allowed: data, freeze, optim, trainer)"),
    ("llm: {freeze: text_encoder}", "'llm.freeze' must be a list of submodule names"),
    ("llm: {optim: 3}", "config 'llm.optim' must be a mapping"),
    ("flow: {}", "no 'llm' block (the file has: flow)"),
    ("- llm", "must map part names (llm, flow, ...) to their settings"),
    ("llm: [unclosed", "not valid YAML"),
])
def test_bad_settings_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "finetune.yaml"
    path.write_text(text)
    with pytest.raises(BadConfigError) as err:
        read_finetune_config(path, "llm")
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BadConfigError, match="fine-tuning settings file not found"):
        read_finetune_config(tmp_path / "missing.yaml", "llm")


def test_command_line_settings_win_over_the_file():
    config = {"trainer": {"max_steps": 4, "seed": 0}, "tts": {"optim": {"lr": 1e-3}, "data": {}}, "freeze": []}
    settings = finetune_overrides({"trainer": {"max_steps": 2000, "seed": 3}, "optim": {"lr": 1e-5, "grad_clip": 1.0},
                                   "data": {"batch_size": 8}, "freeze": ["encoder"]})
    given = command_line_keys(["tts=llm_cosyvoice_300m", "trainer.max_steps=4", "+tts.optim={lr: 2}", "~x"])
    assert given == {"tts", "trainer.max_steps", "tts.optim", "x"}
    applied = apply_overrides(config, settings, given)
    # tts=... chooses a config file, so it covers nothing; tts.optim (a value) covers the keys under it.
    assert applied == ["trainer.seed", "tts.data.batch_size", "freeze"]
    assert config == {"trainer": {"max_steps": 4, "seed": 3}, "tts": {"optim": {"lr": 1e-3}, "data": {"batch_size": 8}},
                      "freeze": ["encoder"]}
    assert apply_overrides({}, {"tts.data.batch_size": 2}) == ["tts.data.batch_size"]  # missing blocks are made
    with pytest.raises(BadConfigError, match="cannot set 'tts.optim.lr': 'optim' is not a config block"):
        apply_overrides({"tts": {"optim": 3}}, {"tts.optim.lr": 1e-5})


def test_freezing_names_real_submodules_and_leaves_something_to_train():
    model = tiny("flow")
    with pytest.raises(BadConfigError, match="'encodr' names no submodule of FlowDecoder .*input_embedding, encoder"):
        freeze_parameters(model, ["encodr"])
    with pytest.raises(BadConfigError, match="leaves no parameter of FlowDecoder to train"):
        freeze_parameters(tiny("flow"), [name for name, _ in model.named_children()])
    model = tiny("flow")
    frozen, _ = freeze_parameters(model, ["estimator.down_blocks.0"])  # a dotted path reaches deeper
    assert frozen == sum(p.numel() for p in model.estimator.down_blocks[0].parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("estimator.down_blocks.0."))
