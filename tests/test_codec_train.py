"""Codec GAN training: losses fall, checkpoints + resume after a stop, export, DDP on 2 CPU processes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from codec_fixtures import make_data_dir, scalars
from voxtok.registry import load
from voxtok.recipes import CONFIG_DIR
from voxtok.recipes.train_codec import train

ROOT = Path(__file__).resolve().parents[1]
# Small enough for a few CPU steps per second; the structure is the tiny config's.
SMALL = [
    "codec.model.encoder.dim=32", "codec.model.encoder.intermediate_dim=64", "codec.model.encoder.num_layers=1",
    "codec.model.encoder.dimension=32",
    "codec.model.quantizer.codebook_size=64", "codec.model.backbone.dim=48",
    "codec.model.backbone.intermediate_dim=96", "codec.model.backbone.num_layers=1",
    "codec.discriminators.options.mpd.channels=4", "codec.discriminators.options.mpd.max_channels=16",
    "codec.discriminators.options.mrd.channels=4", "codec.data.crop_seconds=0.2", "codec.data.batch_size=4",
    "trainer.val_every_n_steps=1000", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=1",
]


def config(data: Path, exp: Path, *overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train_codec", overrides=[f"train_dir={data}", f"valid_dir={data}", f"exp_dir={exp}",
                                                 f"hydra_dir={exp}/hydra", *SMALL, *overrides])


def test_mel_loss_falls_and_export_loads(tmp_path):
    data = make_data_dir(tmp_path)
    exp = tmp_path / "exp"
    out = train(config(data, exp, "trainer.max_steps=40", "codec.optim.disc_start_step=30", "+codec.loss.mel.log_floor=1e-5",
                       "codec.optim.lr=3e-3", "codec.optim.warmup_steps=0"))
    mel = scalars(exp, "train/mel")
    assert len(mel) == 40 and np.mean(mel[-5:]) < 0.7 * np.mean(mel[:5])
    assert len(scalars(exp, "train/d_loss")) == 10  # the discriminator joined at step 30
    codec = load(out, kind="codec")
    with torch.no_grad():
        assert codec.encode(torch.randn(1, 1, 2400) * 0.1).shape == (1, 1, 8)


def test_resume_continues_from_last_checkpoint(tmp_path):
    data = make_data_dir(tmp_path)
    exp = tmp_path / "exp"
    train(config(data, exp, "trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2"))
    first = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=False)
    assert int(first["state_dict"]["updates"]) == 4
    # A later run with a larger budget picks up at update 4 instead of starting over.
    train(config(data, exp, "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=2"))
    second = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=False)
    assert int(second["state_dict"]["updates"]) == 6
    assert len(scalars(exp, "train/mel")) == 6


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    data = make_data_dir(tmp_path)
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "voxtok.recipes.train_codec", f"train_dir={data}", f"valid_dir={data}",
           f"exp_dir={exp}", *SMALL, "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_steps=3",
           "codec.optim.disc_start_step=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VOXTOK_PROGRESS": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stderr + done.stdout and "2 processes" in done.stderr + done.stdout
    assert (exp / "model" / "model.safetensors").is_file()
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=False)
    assert int(ckpt["state_dict"]["updates"]) == 3


def test_stoi_loss_and_speed_perturbation_train(tmp_path):
    data = make_data_dir(tmp_path)
    exp = tmp_path / "exp"
    # 0.5 s crops: the STOI loss needs one 30-frame (~0.4 s) segment of active audio.
    train(config(data, exp, "trainer.max_steps=6", "trainer.val_every_n_steps=6", "codec.data.crop_seconds=0.5",
                 "++codec.loss.stoi=100", "++codec.data.speed_perturb=0.1"))
    stoi_terms = scalars(exp, "train/stoi_loss")
    assert len(stoi_terms) == 6 and all(0 < v < 1.5 for v in stoi_terms)
    assert len(scalars(exp, "val/stoi_loss")) >= 1


def test_speed_perturbation_with_teacher_streams_is_refused():
    from types import SimpleNamespace

    from voxtok.errors import BadConfigError
    from voxtok.codecs.gan_loaders import make_loaders

    cfg = {"codec": {"data": {"crop_seconds": 1.0, "batch_size": 2, "speed_perturb": 0.1}},
           "train_dir": "unused", "valid_dir": "unused", "teachers_dir": "unused"}
    with pytest.raises(BadConfigError, match="speed_perturb cannot be used with teacher streams"):
        make_loaders(cfg, 16000, codec=SimpleNamespace(teacher_streams=("lm",)))


def test_optimisers_are_fused_by_default_and_step_like_plain_adamw(tmp_path):
    from omegaconf import OmegaConf

    from voxtok.registry import build
    from voxtok.codecs.gan_trainer import GANModule

    ccfg = OmegaConf.to_container(config(tmp_path, tmp_path / "exp"), resolve=True)["codec"]

    def generator_after_one_step(fused: bool):
        torch.manual_seed(0)
        cfg = {**ccfg, "optim": {**ccfg["optim"], "fused": fused, "warmup_steps": 0}}
        module = GANModule(build("codec", cfg["name"], cfg["model"]), cfg, max_steps=10, sample_rate=24000)
        (opt_g, _), _ = module.configure_optimizers()
        assert opt_g.defaults["fused"] is fused
        before = torch.cat([p.detach().flatten() for p in module.generator.parameters()])
        for p in module.generator.parameters():
            p.grad = torch.full_like(p, 0.01)
        opt_g.step()
        after = torch.cat([p.detach().flatten() for p in module.generator.parameters()])
        assert (after - before).abs().max() > 1e-4  # the step moved the weights
        return after

    assert torch.allclose(generator_after_one_step(True), generator_after_one_step(False), atol=1e-6)


# ----------------------------------------------------------------------------- fine-tuning (init_from)


def saved_codec(tmp_path: Path, data: Path, with_discriminators: bool, seed: int = 7) -> Path:
    """A random-weight codec folder of the test config (+ its discriminators), as an export writes it."""
    from omegaconf import OmegaConf

    from voxtok.codecs.gan_trainer import GANModule
    from voxtok.recipes.train_codec import export_codec
    from voxtok.registry import build

    torch.manual_seed(seed)
    ccfg = OmegaConf.to_container(config(data, tmp_path / "unused"), resolve=True)["codec"]
    module = GANModule(build("codec", ccfg["name"], ccfg["model"]), ccfg, max_steps=1, sample_rate=24000)
    folder = tmp_path / ("with_disc" if with_discriminators else "codec_only")
    if with_discriminators:
        export_codec(module, folder)
    else:
        module.generator.save_pretrained(folder)
    return folder


def record_start(monkeypatch) -> dict:
    """Patch GANModule so that the weights it holds when training starts are recorded."""
    from voxtok.codecs.gan_trainer import GANModule

    seen = {}

    def on_train_start(module):
        seen["generator"] = {k: v.detach().clone() for k, v in module.generator.state_dict().items()}
        seen["discriminator"] = {k: v.detach().clone() for k, v in module.discriminator.state_dict().items()}

    monkeypatch.setattr(GANModule, "on_train_start", on_train_start, raising=False)
    return seen


def test_fine_tuning_starts_from_a_folder_with_discriminators(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from voxtok.codecs.gan_checkpoint import load_discriminators

    data = make_data_dir(tmp_path)
    folder = saved_codec(tmp_path, data, with_discriminators=True)
    seen = record_start(monkeypatch)
    exp = tmp_path / "exp"
    out = train(config(data, exp, f"init_from={folder}", "trainer.max_steps=3", "codec.optim.disc_start_step=0",
                       "codec.model.quantizer.codebook_size=32"))  # overridden by the folder's config
    assert "generator and discriminators from there" in capsys.readouterr().out
    generator = load_file(str(folder / "model.safetensors"))
    assert seen["generator"].keys() == generator.keys()
    assert all(torch.equal(seen["generator"][k], v) for k, v in generator.items())
    _, discriminators = load_discriminators(folder)
    assert all(torch.equal(seen["discriminator"][k], v) for k, v in discriminators.items())
    for tag in ("train/g_loss", "train/d_loss", "train/fm"):
        values = scalars(exp, tag)
        assert len(values) == 3 and np.isfinite(values).all(), tag
    # The export carries on: the fine-tuned codec (same architecture) and its trained discriminators.
    codec = load(out, kind="codec")
    assert codec.codebook_size == 64 and codec.extra["init_from"] == str(folder)
    config_after, after = load_discriminators(out)
    assert config_after == load_discriminators(folder)[0]
    assert any(not torch.equal(after[k], v) for k, v in discriminators.items())  # they trained


def test_fine_tuning_from_a_folder_without_discriminators(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    data = make_data_dir(tmp_path)
    folder = saved_codec(tmp_path, data, with_discriminators=False)
    other = load_file(str(saved_codec(tmp_path, data, with_discriminators=True, seed=8) / "discriminators.safetensors"))
    seen = record_start(monkeypatch)
    exp = tmp_path / "exp"
    train(config(data, exp, f"init_from={folder}", "trainer.max_steps=2", "codec.optim.disc_start_step=0"))
    assert "discriminators start afresh" in capsys.readouterr().out
    generator = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(seen["generator"][k], v) for k, v in generator.items())
    assert seen["discriminator"].keys() == other.keys()  # built from codec.discriminators, fresh weights
    assert all(np.isfinite(scalars(exp, tag)).all() for tag in ("train/g_loss", "train/d_loss"))


def test_fine_tuning_refuses_another_codec(tmp_path):
    from voxtok.errors import BadConfigError
    from voxtok.recipes.train_codec import start_from

    data = make_data_dir(tmp_path)
    folder = saved_codec(tmp_path, data, with_discriminators=False)
    with pytest.raises(BadConfigError, match="init_from holds a codec 'wavtokenizer', but codec.name is 'dmcodec'"):
        start_from(folder, {"name": "dmcodec", "model": {}})
    with pytest.raises(BadConfigError, match="not a checkpoint folder"):
        start_from(tmp_path / "nowhere", {"name": "wavtokenizer", "model": {}})


def test_fine_tuning_from_a_converted_wavtokenizer_checkpoint(tmp_path, monkeypatch):
    """The reference layouts of tests/fixtures/wavtokenizer_ref (generator) and wavtokenizer_disc
    (discriminators) in one Lightning checkpoint -> `voxtok convert wavtokenizer` -> a few GAN steps."""
    from safetensors.torch import load_file

    from voxtok.codecs.gan_checkpoint import load_discriminators
    from voxtok.convert.wavtokenizer import convert_wavtokenizer

    fixtures = ROOT / "tests" / "fixtures"
    generator = torch.load(fixtures / "wavtokenizer_ref" / "model.ckpt", weights_only=True)["state_dict"]
    discriminators = torch.load(fixtures / "wavtokenizer_disc" / "state_dict.pt", weights_only=True)
    torch.save({"state_dict": {**generator, **discriminators}}, tmp_path / "reference.ckpt")
    folder = convert_wavtokenizer(fixtures / "wavtokenizer_ref" / "config.yaml", tmp_path / "reference.ckpt",
                                  tmp_path / "converted", log=lambda line: None)
    disc_config, disc_state = load_discriminators(folder)
    assert disc_config["names"] == ["mpd", "mrd", "dac"]
    data = make_data_dir(tmp_path)
    seen = record_start(monkeypatch)
    exp = tmp_path / "exp"
    train(config(data, exp, f"init_from={folder}", "trainer.max_steps=2", "codec.optim.disc_start_step=0"))
    assert all(torch.equal(seen["generator"][k], v) for k, v in load_file(str(folder / "model.safetensors")).items())
    assert all(torch.equal(seen["discriminator"][k], v) for k, v in disc_state.items())
    assert all(np.isfinite(scalars(exp, tag)).all() for tag in ("train/g_loss", "train/d_loss", "train/fm"))
