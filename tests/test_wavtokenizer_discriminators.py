"""WavTokenizer's discriminators and GAN loss weighting: VoxTok against the reference code.

Fixture tests/fixtures/wavtokenizer_disc/ was made once from a snapshot of jishengpeng/WavTokenizer
(commit 5cf440d91ac420ca338f117b7003a77450d64730) by a script run outside this repository, which:
- imported decoder/discriminators.py, decoder/discriminator_dac.py and decoder/loss.py (unchanged) and
  built the discriminators the reference's WavTokenizer Lightning module holds (experiment.py):
  `multiperioddisc = MultiPeriodDiscriminator(num_embeddings=4)`,
  `multiresddisc = MultiResolutionDiscriminator(num_embeddings=4)`, `dac = DACDiscriminator()`;
  its constructors hard-code their widths, so while they were built torch.nn.Conv2d / torch.nn.Embedding
  were narrowed (32 -> 2, 64 -> 8, 128 -> 8, 512 -> 32, 1024 -> 32 channels) to keep the fixture under
  2 MB; the reference's forward code ran unchanged;
- drew random weights (seed 0; biases ~ N(0, 0.1), the zero-initialised bandwidth embeddings ~ N(0, 0.5) so
  the conditioning shows), and saved the module's state_dict (state_dict.pt: multiperioddisc.*,
  multiresddisc.*, dac.*, weight norm as weight_g / weight_v);
- ran y (two 0.1 s, 24 kHz sines + noise) and y_hat = y + noise with bandwidth_id [2] (inputs.pt), and
  saved (outputs.pt) the logits and feature maps of y for every sub-discriminator, and the loss terms of
  experiment.py's discriminator and generator steps: loss_mp / 5, loss_mrd / 3, DACGANLoss.discriminator_loss;
  loss_gen_mp / 5, loss_gen_mrd / 3, loss_fm_mp, loss_fm_mrd, and DACGANLoss.generator_loss.
Measured: VoxTok's mapped discriminators give the reference's logits and feature maps exactly (max |diff| 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from voxtok.codecs.gan_config import read_gan_config
from voxtok.codecs.modules.discriminators import build_discriminators
from voxtok.codecs.modules.losses import family_discriminator_loss, family_generator_losses
from voxtok.convert.keymap import rename
from voxtok.convert.wavtokenizer_discriminators import RULES, map_discriminators
from voxtok.errors import BadConfigError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "wavtokenizer_disc"
# Parameters of the reference's full-size discriminators (counted from the snapshot's classes).
REFERENCE_PARAMETERS = {"mpd": 41_126_250, "mrd": 600_966, "dac": 42_519_760}


def fixture():
    state = torch.load(FIXTURE / "state_dict.pt", weights_only=True)
    inputs = torch.load(FIXTURE / "inputs.pt", weights_only=True)
    outputs = torch.load(FIXTURE / "outputs.pt", weights_only=True)
    return state, inputs, outputs


def mapped(state):
    config, disc_state = map_discriminators(state, None)
    disc = build_discriminators(config["names"], **config["options"])
    disc.load_state_dict(disc_state)
    return config, disc.eval()


def close(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape
    return float((ours - ref).abs().max() / max(1.0, float(ref.abs().max())))


def test_mapped_discriminators_compute_the_reference_outputs():
    state, inputs, ref = fixture()
    config, disc = mapped(state)
    assert config["names"] == ["mpd", "mrd", "dac"]
    with torch.no_grad():
        logits, features = disc(inputs["y"].unsqueeze(1), inputs["bandwidth_id"])
    logits, features, ref = disc.split(logits), disc.split(features), ref["outputs"]
    worst = 0.0
    for family in ("mpd", "mrd"):  # Vocos' fmap lists the output map last: so do ours (features_with_output)
        for ours, theirs in zip(logits[family], ref[f"{family}_logits"], strict=True):
            worst = max(worst, close(ours, theirs))
        for ours, theirs in zip(features[family], ref[f"{family}_features"], strict=True):
            worst = max(worst, *(close(a, b) for a, b in zip(ours, theirs, strict=True)))
    for score, ours, theirs in zip(logits["dac"], features["dac"], ref["dac_features"], strict=True):
        worst = max(worst, close(score, theirs[-1].flatten(1)))  # DAC: the last map is the logits
        worst = max(worst, *(close(a, b) for a, b in zip(ours, theirs[:-1], strict=True)))
    assert worst <= 1e-4, worst


def test_conditioning_on_the_bandwidth_id_matters():
    state, inputs, ref = fixture()
    _, disc = mapped(state)
    with torch.no_grad():
        logits, _ = disc(inputs["y"].unsqueeze(1), 0)
    assert close(logits[0], ref["outputs"]["mpd_logits"][0]) > 1e-3  # id 2 in the fixture


def test_paper_config_weighs_the_families_as_the_reference():
    """Per-family losses with wavtokenizer_75_paper.yaml's `loss` block equal experiment.py's terms."""
    state, inputs, ref = fixture()
    config, disc = mapped(state)
    paper = yaml.safe_load((ROOT / "configs" / "codec" / "wavtokenizer_75_paper.yaml").read_text())
    gan = read_gan_config({**paper, "discriminators": config}, ("commit", "codebook"), "codec")
    families = gan.loss_families()
    assert set(families) == {"mpd", "mrd", "dac"}
    y, y_hat = inputs["y"].unsqueeze(1), inputs["y_hat"].unsqueeze(1)
    with torch.no_grad():
        real_logits, real_feats = (disc.split(v) for v in disc(y, inputs["bandwidth_id"]))
        fake_logits, fake_feats = (disc.split(v) for v in disc(y_hat, inputs["bandwidth_id"]))
        d_total, d_parts = family_discriminator_loss(families, real_logits, fake_logits)
        adv, fm, g_parts = family_generator_losses(families, fake_logits, real_feats, fake_feats)
    want = ref["losses"]
    for name in ("mpd", "mrd", "dac"):
        assert d_parts[name].item() == pytest.approx(want[f"d_{name}"].item(), rel=1e-5)
        assert g_parts[name][0].item() == pytest.approx(want[f"g_{name}"].item(), rel=1e-5)
        assert g_parts[name][1].item() == pytest.approx(want[f"fm_{name}"].item(), rel=1e-5)
    assert d_total.item() == pytest.approx(sum(want[f"d_{n}"].item() for n in ("mpd", "mrd", "dac")), rel=1e-5)
    assert adv.item() == pytest.approx(sum(want[f"g_{n}"].item() for n in ("mpd", "mrd", "dac")), rel=1e-5)
    assert fm.item() == pytest.approx(sum(want[f"fm_{n}"].item() for n in ("mpd", "mrd", "dac")), rel=1e-5)


def test_paper_config_builds_the_reference_discriminators_key_for_key():
    """wavtokenizer_75_paper's discriminators: the reference's sizes, and its keys after renaming."""
    state, _, _ = fixture()
    paper = yaml.safe_load((ROOT / "configs" / "codec" / "wavtokenizer_75_paper.yaml").read_text())["discriminators"]
    disc = build_discriminators(paper["names"], **paper["options"])
    counts = {name: sum(p.numel() for p in d.parameters()) for name, d in disc.discriminators.items()}
    assert counts == REFERENCE_PARAMETERS
    renamed = rename(state, RULES)
    assert set(renamed) == set(disc.state_dict())


def test_a_lightning_checkpoint_maps_and_its_duplicates_are_dropped():
    state, _, _ = fixture()
    full = {**state, "backbone.embed.weight": torch.zeros(3),  # generator keys are ignored
            **{f"dacdiscriminator.discriminator.{k[4:]}": v for k, v in state.items() if k.startswith("dac.")}}
    document = {"model": {"init_args": {"feature_extractor": {"init_args": {"bandwidths": [6.6] * 4}}}}}
    config, disc_state = map_discriminators(full, document)
    assert config["options"]["mpd"]["num_embeddings"] == 4
    assert not any(k.startswith("dacdiscriminator") for k in disc_state)
    assert map_discriminators({"backbone.embed.weight": torch.zeros(3)}, None) is None


def test_a_checkpoint_that_does_not_fit_is_one_line():
    state, _, _ = fixture()
    broken = {k: v for k, v in state.items() if k != "multiresddisc.discriminators.1.convs.2.bias"}
    with pytest.raises(BadConfigError, match=r"missing .*mrd\.discriminators\.1\.convs\.2\.bias") as err:
        map_discriminators(broken, None)
    assert "\n" not in str(err.value)
    with pytest.raises(BadConfigError, match="bandwidth"):
        map_discriminators(state, {"feature_extractor": {"init_args": {"bandwidths": [1.5, 3.0]}}})
    fewer = {k: v for k, v in state.items() if not k.startswith("multiperioddisc.discriminators.4.")}
    with pytest.raises(BadConfigError, match="4 sub-discriminators"):
        map_discriminators(fewer, None)
