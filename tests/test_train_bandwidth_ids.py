"""WavTokenizer's `train_bandwidth_ids`: a bandwidth id drawn at every GAN step, as the reference trains.

The reference (jishengpeng/WavTokenizer, decoder/experiment.py, `WavTokenizer.training_step`) draws
`torch.randint(0, len(bandwidths), (1,))` per step and hands it to the backbone's AdaLN and to the
MPD / MRD (the DAC discriminator is not conditioned); validation and inference use id 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.codecs.gan_trainer import GANModule
from voxtok.errors import BadConfigError
from voxtok.registry import build

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "codec" / "wavtokenizer_tiny.yaml").read_text())


def tiny_model(**model) -> dict:
    """The tiny WavTokenizer, narrower, with an AdaLN of 4 ids and the given model keys."""
    cfg = yaml.safe_load(yaml.safe_dump(TINY["model"]))
    cfg["encoder"].update(dimension=16, dim=16, intermediate_dim=32, num_layers=1)
    cfg["quantizer"].update(codebook_size=32, warmup_steps=0, kmeans_init=False)
    cfg["backbone"] = {"dim": 32, "intermediate_dim": 64, "num_layers": 1, "adanorm_num_embeddings": 4}
    return {**cfg, **model}


def gan_config(num_embeddings: int = 4) -> dict:
    return {"discriminators": {"names": ["mpd", "mrd"],
                               "options": {"mpd": {"periods": [2], "channels": 2, "max_channels": 8,
                                                   "num_embeddings": num_embeddings},
                                           "mrd": {"resolutions": [[256, 64, 256]], "channels": 2}}},
            "loss": {"mel": {"weight": 1.0, "n_ffts": [256], "hop_lengths": [64], "n_mels": 20}},
            "optim": {"lr": 1e-4, "fused": False}}


@pytest.mark.parametrize("rate", [75, 40])
def test_paper_configs_draw_from_the_four_reference_ids(rate):
    cfg = yaml.safe_load((ROOT / "configs" / "codec" / f"wavtokenizer_{rate}_paper.yaml").read_text())
    model, options = cfg["model"], cfg["discriminators"]["options"]
    assert model["train_bandwidth_ids"] == 4 == model["backbone"]["adanorm_num_embeddings"]
    assert options["mpd"]["num_embeddings"] == options["mrd"]["num_embeddings"] == 4
    assert model.get("bandwidth_id", 0) == 0  # inference: the reference's id 0


@pytest.mark.parametrize("value, why", [(5, "1..4"), (0, "1..4"), (True, "1..4"), ("4", "1..4")])
def test_bad_values_are_one_line_errors(value, why):
    with pytest.raises(BadConfigError, match=r"model\.train_bandwidth_ids.*" + why):
        build("codec", "wavtokenizer", tiny_model(train_bandwidth_ids=value))
    plain = tiny_model(train_bandwidth_ids=2)
    plain["backbone"].pop("adanorm_num_embeddings")
    with pytest.raises(BadConfigError, match="adanorm_num_embeddings unset"):
        build("codec", "wavtokenizer", plain)


def test_discriminators_must_know_every_drawn_id():
    codec = build("codec", "wavtokenizer", tiny_model(train_bandwidth_ids=4))
    with pytest.raises(BadConfigError, match=r"0\.\.3 \(train_bandwidth_ids\).*'mpd': 3"):
        GANModule(codec, gan_config(num_embeddings=3), max_steps=1, sample_rate=24000)


def _without_trainer(module: GANModule) -> GANModule:
    module.log_dict = lambda *a, **kw: None
    module.log = lambda *a, **kw: None
    opts = [torch.optim.SGD(part.parameters(), lr=0.0) for part in (module.generator, module.discriminator)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0) for o in opts]
    module.optimizers, module.lr_schedulers = (lambda: opts), (lambda: scheds)
    module.manual_backward = lambda loss: loss.backward()
    module.clip_gradients = lambda *a, **kw: None
    return module


def _record_ids(codec, module) -> tuple[list, list]:
    """Ids the backbone's AdaLN and the discriminators receive, call by call."""
    generator_ids, discriminator_ids = [], []
    codec.backbone.register_forward_pre_hook(lambda m, args: generator_ids.append(int(args[1].reshape(-1)[0])))
    module.discriminator.register_forward_pre_hook(
        lambda m, args: discriminator_ids.append(None if len(args) < 2 else int(torch.as_tensor(args[1]).reshape(-1)[0])))
    return generator_ids, discriminator_ids


def test_each_step_draws_one_id_for_the_generator_and_the_discriminators():
    torch.manual_seed(0)
    codec = build("codec", "wavtokenizer", tiny_model(train_bandwidth_ids=4, bandwidth_id=1))
    module = _without_trainer(GANModule(codec, gan_config(), max_steps=20, sample_rate=24000))
    generator_ids, discriminator_ids = _record_ids(codec, module)
    batch = {"wav": 0.1 * torch.randn(2, 1, 3200), "lengths": torch.tensor([3200, 2900])}
    steps = 12
    for _ in range(steps):
        module.training_step(batch, 0)
    # One generator forward and four discriminator passes (real, fake; then real, fake) per step.
    assert len(generator_ids) == steps and len(discriminator_ids) == 4 * steps
    for step, drawn in enumerate(generator_ids):
        assert discriminator_ids[4 * step: 4 * step + 4] == [drawn] * 4
    assert set(generator_ids) <= {0, 1, 2, 3} and len(set(generator_ids)) >= 3
    # Validation (and inference) decode with the fixed id.
    generator_ids.clear()
    module.validation_step({**batch, "utts": ["a", "b"]}, 1)
    assert generator_ids == [1]
    with torch.no_grad():
        codec.eval().decode(torch.zeros(1, 1, 4, dtype=torch.long))
    assert generator_ids == [1, 1]


def test_without_the_option_the_fixed_id_trains():
    torch.manual_seed(0)
    codec = build("codec", "wavtokenizer", tiny_model(bandwidth_id=2))
    module = _without_trainer(GANModule(codec, gan_config(), max_steps=2, sample_rate=24000))
    generator_ids, discriminator_ids = _record_ids(codec, module)
    module.training_step({"wav": 0.1 * torch.randn(1, 1, 3200), "lengths": torch.tensor([3200])}, 0)
    assert generator_ids == [2] and discriminator_ids == [2] * 4
