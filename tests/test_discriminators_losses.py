"""Discriminators (MPD, MSD, MRD, multi-band complex STFT, DAC) and GAN/reconstruction losses, per family too."""

from __future__ import annotations

import math

import pytest
import torch

from voxtok.codecs.modules.discriminators import (
    CombinedDiscriminator,
    MultiBandComplexSTFTDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTDiscriminator,
    MultiScaleDiscriminator,
    build_discriminators,
)
from voxtok.codecs.modules.losses import (
    MultiResolutionMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    waveform_l1_loss,
)
from voxtok.errors import BadConfigError

# Narrow widths: layer layout (and so output shapes) is the published one, but CPU-cheap.
SMALL = {
    "mpd": {"channels": 4, "max_channels": 32},
    "msd": {"channels": 8, "max_channels": 32},
    "mrd": {"channels": 8},
    "mbd": {"channels": 8},
}
# Sub-discriminators and hidden layers per sub-discriminator with the default settings.
LAYOUT = {"mpd": (5, 5), "msd": (3, 7), "mrd": (3, 5), "mbd": (3, 25)}


def sines(batch: int, length: int, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / sr
    freq = 150 + 300 * torch.rand(batch, 1, 1, generator=g)
    phase = 2 * math.pi * torch.rand(batch, 1, 1, generator=g)
    return 0.5 * torch.sin(2 * math.pi * freq * t + phase)


def noise(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, 1, length, generator=g)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- discriminators


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("length", [24000, 16000])
def test_output_structure(name, length):
    disc = build_discriminators([name], **{name: SMALL[name]})
    n_sub, n_layers = LAYOUT[name]
    assert disc.num_subdiscriminators == n_sub
    logits, features = disc(noise(2, length))
    assert len(logits) == len(features) == n_sub
    for score, feats in zip(logits, features):
        assert score.dim() == 2 and score.shape[0] == 2 and score.shape[1] > 0
        assert torch.isfinite(score).all()
        assert len(feats) == n_layers
        assert all(f.shape[0] == 2 and f.shape[1] > 0 for f in feats)


def test_mpd_shapes_follow_the_fold():
    disc = MultiPeriodDiscriminator(periods=(2, 3), **SMALL["mpd"])
    logits, features = disc(noise(2, 24000))
    # 4 stride-3 layers over T/p rows (kernel 5, pad 2): rows -> ceil(rows / 3) each time.
    for p, score, feats in zip((2, 3), logits, features):
        rows = math.ceil(24000 / p)
        for _ in range(4):
            rows = (rows - 1) // 3 + 1
        assert score.shape == (2, rows * p)
        assert feats[0].shape[-1] == p


def test_msd_scales_halve_the_time_axis():
    logits, _ = MultiScaleDiscriminator(**SMALL["msd"])(noise(2, 16000))
    # Overall stride 64 at the raw rate, then each scale sees a copy pooled x1/2 (plus padding).
    assert [s.shape[1] for s in logits] == [250, 126, 63]


def test_mbd_band_features_and_merge():
    disc = MultiBandComplexSTFTDiscriminator(window_lengths=(512,), **SMALL["mbd"])
    logits, features = disc(noise(2, 16000))
    # 5 bands x 5 layers; the frame axis is shared by all bands, frequency is split.
    assert len(features[0]) == 25
    frames = {f.shape[2] for f in features[0]}
    assert len(frames) == 1
    assert logits[0].shape[1] == frames.pop() * sum(features[0][i].shape[3] for i in range(4, 25, 5))


def test_default_sizes_match_the_published_ones():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(MultiPeriodDiscriminator()) - 41.1e6) < 0.1e6  # HiFi-GAN MPD
    assert abs(count(MultiScaleDiscriminator()) - 29.6e6) < 0.1e6  # HiFi-GAN MSD


@pytest.mark.parametrize("name", sorted(SMALL))
def test_gradients_reach_the_input(name):
    disc = build_discriminators([name], **{name: SMALL[name]})
    wav = noise(2, 8000).requires_grad_()
    logits, features = disc(wav)
    (sum(s.mean() for s in logits) + sum(f[-1].mean() for f in features)).backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_hinge_training_separates_sines_from_noise(name):
    disc = build_discriminators([name], **{name: SMALL[name]})
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3, betas=(0.5, 0.9))
    real, fake = sines(4, 2048), noise(4, 2048)
    losses = []
    for _ in range(20):
        loss, _ = hinge_discriminator_loss(disc(real)[0], disc(fake)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    with torch.no_grad():
        real_score = torch.cat([s.flatten() for s in disc(real)[0]]).mean()
        fake_score = torch.cat([s.flatten() for s in disc(fake)[0]]).mean()
    assert real_score > fake_score


def test_combined_concatenates_and_splits():
    combo = build_discriminators(["mpd", "mrstft"], mpd={"periods": (2, 3), **SMALL["mpd"]},
                                 mrstft=SMALL["mrd"])
    logits, features = combo(noise(1, 4000))
    assert len(logits) == len(features) == combo.num_subdiscriminators == 5
    parts = combo.split(logits)
    assert list(parts) == ["mpd", "mrstft"] and [len(v) for v in parts.values()] == [2, 3]
    plain = CombinedDiscriminator([MultiResolutionSTFTDiscriminator(((256, 64, 256),), channels=4)])
    assert len(plain(noise(1, 4000))[0]) == 1


def test_build_rejects_bad_names_and_options():
    with pytest.raises(BadConfigError, match="unknown discriminator"):
        build_discriminators(["mpd", "wavegan"])
    with pytest.raises(BadConfigError, match="not in the list"):
        build_discriminators(["mpd"], msd={"num_scales": 2})
    with pytest.raises(BadConfigError, match="bad options"):
        build_discriminators(["mrd"], mrd={"n_fft": 1024})


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        MultiPeriodDiscriminator(periods=(2,), **SMALL["mpd"])(torch.zeros(2, 4000))


# ----------------------------------------------------------------------------- adversarial losses


def test_hinge_values_by_hand():
    real = [torch.tensor([[2.0, 0.5]]), torch.tensor([[0.0]])]
    fake = [torch.tensor([[-2.0, 0.0]]), torch.tensor([[1.0]])]
    # D: sub 0: relu(1-r) = [0, .5] -> .25, relu(1+f) = [0, 1] -> .5 => .75; sub 1: 1 + 2 = 3.
    total, parts = hinge_discriminator_loss(real, fake)
    assert [p.item() for p in parts] == pytest.approx([0.75, 3.0])
    assert total.item() == pytest.approx(1.875)
    # G: sub 0: relu(1-f) = [3, 1] -> 2; sub 1: relu(0) = 0.
    total, parts = hinge_generator_loss(fake)
    assert [p.item() for p in parts] == pytest.approx([2.0, 0.0])
    assert total.item() == pytest.approx(1.0)


def test_lsgan_values_by_hand():
    real = [torch.tensor([[1.0, 0.0]])]
    fake = [torch.tensor([[0.5, -1.0]])]
    # D: mean((1-r)^2) = (0 + 1)/2 = .5, mean(f^2) = (.25 + 1)/2 = .625 => 1.125.
    total, parts = lsgan_discriminator_loss(real, fake)
    assert total.item() == pytest.approx(1.125) and len(parts) == 1
    # G: mean((1-f)^2) = (.25 + 4)/2 = 2.125.
    assert lsgan_generator_loss(fake)[0].item() == pytest.approx(2.125)


def test_dispatchers():
    real, fake = [torch.randn(2, 7)], [torch.randn(2, 7)]
    for kind, d_fn, g_fn in (("hinge", hinge_discriminator_loss, hinge_generator_loss),
                             ("lsgan", lsgan_discriminator_loss, lsgan_generator_loss)):
        assert torch.equal(discriminator_loss(kind, real, fake)[0], d_fn(real, fake)[0])
        assert torch.equal(generator_adv_loss(kind, fake)[0], g_fn(fake)[0])
    with pytest.raises(BadConfigError):
        discriminator_loss("wasserstein", real, fake)
    with pytest.raises(ValueError):
        hinge_discriminator_loss(real, fake + fake)


# ----------------------------------------------------------------------------- feature matching


def test_feature_matching():
    feats = [[torch.randn(2, 4, 10), torch.randn(2, 8, 5)], [torch.randn(2, 3, 6)]]
    total, parts = feature_matching_loss(feats, [[f.clone() for f in d] for d in feats])
    assert total.item() == 0.0 and len(parts) == 2
    real = [[torch.zeros(1, 2), torch.ones(1, 2)]]
    fake = [[torch.ones(1, 2).requires_grad_(), torch.full((1, 2), 3.0)]]
    total, _ = feature_matching_loss(real, fake)
    assert total.item() == pytest.approx(1.0 + 2.0)  # sum over layers of mean |r - f|
    assert feature_matching_loss([[torch.full((1, 2), 2.0)]], [[torch.ones(1, 2)]], relative=True)[0].item() \
        == pytest.approx(0.5, rel=1e-6)


def test_feature_matching_detaches_real():
    real = [[torch.randn(2, 5, requires_grad=True)]]
    fake = [[torch.randn(2, 5, requires_grad=True)]]
    feature_matching_loss(real, fake)[0].backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


# ----------------------------------------------------------------------------- reconstruction


def test_mel_loss_orders_distortions():
    loss = MultiResolutionMelLoss(16000, n_ffts=(512, 256), hop_lengths=(128, 64), n_mels=(64, 32),
                                  weights=(1.0, 0.5))
    clean = sines(2, 8000) + 0.01 * noise(2, 8000)
    assert loss(clean, clean).item() == 0.0
    scaled = loss(0.9 * clean, clean).item()
    noisy = loss(noise(2, 8000, seed=5), clean).item()
    assert 0 < scaled < noisy


def test_mel_loss_wavtokenizer_defaults_and_l2():
    loss = MultiResolutionMelLoss()  # WavTokenizer: 24 kHz, n_fft 1024, hop 256, 100 mels
    (mel,) = loss.mels
    cfg = mel.config
    assert (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels) == (24000, 1024, 256, 100)
    x, y = noise(1, 6000), noise(1, 6000, seed=3)
    l1 = loss(x, y)
    both = MultiResolutionMelLoss(l2_weight=1.0)(x, y)
    assert both.item() > l1.item()
    pred = x.clone().requires_grad_()
    loss(pred, y).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_mel_loss_ignores_padding():
    loss = MultiResolutionMelLoss(16000, n_ffts=(256,), hop_lengths=(64,), n_mels=40)
    target = sines(2, 4000)
    pred = target.clone()
    pred[..., 3000:] = noise(2, 1000)  # garbage only in the padded tail of both items
    lengths = torch.tensor([2800, 2800])
    assert loss(pred, target, lengths).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(pred, target).item() > 0.1


def test_mel_loss_rejects_mismatched_config():
    with pytest.raises(BadConfigError):
        MultiResolutionMelLoss(16000, n_ffts=(1024, 512), hop_lengths=(256,))


def test_waveform_l1_ignores_padding():
    target = torch.zeros(2, 1, 10)
    pred = torch.zeros(2, 1, 10)
    pred[0, 0, :4] = 1.0  # inside item 0 (length 4)
    pred[0, 0, 4:] = 9.0  # padding of item 0
    pred[1, 0, 6:] = 9.0  # padding of item 1 (length 6)
    lengths = torch.tensor([4, 6])
    assert waveform_l1_loss(pred, target, lengths).item() == pytest.approx(4.0 / 10.0)
    assert waveform_l1_loss(pred, target).item() == pytest.approx((4 + 6 * 9 + 4 * 9) / 20.0)
    with pytest.raises(ValueError):
        waveform_l1_loss(pred, target[..., :5])


# ----------------------------------------------------------------------------- reference variants


def test_dac_discriminator_runs_mpd_and_band_branches_on_one_input():
    disc = build_discriminators(["dac"], dac={"channels": 2, "period_channels": 2, "period_max_channels": 8})
    assert disc.num_subdiscriminators == 8
    logits, features = disc(noise(2, 6000))
    assert [len(f) for f in features] == [5] * 5 + [25] * 3  # DAC matches hidden maps only
    # DAC's MPD pads a whole period when p divides T: 6000 / 2 = 3000 rows + 1, then a stride-3 conv.
    rows = 6000 // 2 + 1
    assert features[0][0].shape[2] == (rows - 1) // 3 + 1
    plain = build_discriminators(["mbd"], mbd=SMALL["mbd"])  # the band branches alone, keys unchanged
    assert plain.num_subdiscriminators == 3
    assert "discriminators.mbd.discriminators.0.band_convs.0.0.parametrizations.weight.original1" in plain.state_dict()


def test_mpd_feature_options_list_the_vocos_maps():
    disc = MultiPeriodDiscriminator(periods=(2,), **SMALL["mpd"], first_feature_layer=1, features_with_output=True)
    logits, features = disc(noise(1, 4000))
    assert len(features[0]) == 5  # layers 2..5 + the output map
    assert torch.equal(features[0][-1].flatten(1), logits[0])
    with pytest.raises(BadConfigError, match="first_feature_layer"):
        MultiPeriodDiscriminator(first_feature_layer=9)


def test_vocos_mrd_layers_and_rectangular_window():
    disc = MultiResolutionSTFTDiscriminator(((512, 128, 512),), channels=4, layers="vocos", window="rect",
                                            features_with_output=True)
    stft = disc.discriminators[0].stft
    assert torch.equal(stft.window, torch.ones(512))
    logits, features = disc(noise(2, 8000))
    freq, frames = 257, 8000 // 128 + 1
    for stride_f, stride_t in ((2, 2), (2, 1), (2, 2), (2, 1), (2, 2)):  # kernels padded to keep "same" size
        freq, frames = (freq - 1) // stride_f + 1, (frames - 1) // stride_t + 1
    assert features[0][4].shape == (2, 4, freq, frames) and len(features[0]) == 6
    with pytest.raises(BadConfigError, match="unknown MRD layers"):
        MultiResolutionSTFTDiscriminator(layers="hifigan")
    with pytest.raises(BadConfigError, match="unknown STFT window"):
        MultiResolutionSTFTDiscriminator(window="hamming")


def test_bandwidth_conditioning_starts_neutral_and_reaches_only_conditioned_members():
    combo = build_discriminators(["mpd", "mrd"], mpd={"periods": (3,), **SMALL["mpd"], "num_embeddings": 4},
                                 mrd={"resolutions": ((256, 64, 256),), "channels": 4})
    assert combo.conditioning == {"mpd": 4}
    wav = noise(2, 3000)
    plain = combo(wav)[0]
    assert all(torch.equal(a, b) for a, b in zip(plain, combo(wav, 3)[0]))  # zero-initialised table
    with torch.no_grad():
        combo.discriminators["mpd"].discriminators[0].emb.weight.normal_()
    moved = combo(wav, torch.tensor([1]))[0]
    assert not torch.equal(moved[0], plain[0]) and torch.equal(moved[1], plain[1])
    per_item = combo(wav, torch.tensor([1, 1]))[0]
    assert torch.allclose(per_item[0], moved[0])


def test_loss_reductions():
    real, fake = [torch.ones(1, 2), -torch.ones(1, 2)], [torch.zeros(1, 2), torch.zeros(1, 2)]
    mean, parts = hinge_discriminator_loss(real, fake)
    total, _ = hinge_discriminator_loss(real, fake, reduction="sum")
    assert total.item() == pytest.approx(sum(p.item() for p in parts)) == pytest.approx(2 * mean.item())
    assert lsgan_generator_loss(fake, "sum")[0].item() == pytest.approx(2.0)
    feats = [[torch.zeros(1, 2)], [torch.ones(1, 2)]]
    assert feature_matching_loss(feats, [[torch.ones(1, 2)], [torch.ones(1, 2)]], reduction="sum")[0].item() == 1.0
    with pytest.raises(BadConfigError, match="reduction"):
        hinge_generator_loss(fake, "max")


def test_family_losses_pool_like_the_old_mean_and_weigh_per_family():
    from voxtok.codecs.modules.losses import FamilyLoss, family_discriminator_loss, family_generator_losses

    torch.manual_seed(3)
    real = [torch.randn(2, 5) for _ in range(4)]
    fake = [torch.randn(2, 5) for _ in range(4)]
    feats_r = [[torch.randn(2, 3)] for _ in range(4)]
    feats_f = [[torch.randn(2, 3)] for _ in range(4)]
    pooled = {"all": FamilyLoss("hinge")}
    d, _ = family_discriminator_loss(pooled, {"all": real}, {"all": fake})
    assert torch.equal(d, hinge_discriminator_loss(real, fake)[0])
    families = {"a": FamilyLoss("hinge"), "b": FamilyLoss("lsgan", weight=0.5, reduction="sum",
                                                          feature_matching_reduction="sum")}
    split = lambda v: {"a": v[:1], "b": v[1:]}  # noqa: E731
    d, parts = family_discriminator_loss(families, split(real), split(fake))
    want_b = lsgan_discriminator_loss(real[1:], fake[1:], "sum")[0]
    assert torch.allclose(parts["b"], want_b)
    assert torch.allclose(d, hinge_discriminator_loss(real[:1], fake[:1])[0] + 0.5 * want_b)
    adv, fm, parts = family_generator_losses(families, split(fake), split(feats_r), split(feats_f))
    assert torch.allclose(adv, hinge_generator_loss(fake[:1])[0] + 0.5 * lsgan_generator_loss(fake[1:], "sum")[0])
    assert torch.allclose(fm, feature_matching_loss(feats_r[:1], feats_f[:1])[0]
                          + 0.5 * feature_matching_loss(feats_r[1:], feats_f[1:], reduction="sum")[0])


def test_loss_families_config_is_strict():
    from voxtok.codecs.gan_config import read_gan_config

    base = {"discriminators": {"names": ["mpd", "mrd"]}, "optim": {"lr": 1e-3},
            "loss": {"mel": {"weight": 1.0}, "families": {"mrd": {"weight": 0.1}}}}
    gan = read_gan_config(base, (), "codec")
    assert gan.families["mrd"].weight == 0.1 and gan.families["mpd"].reduction == "mean"  # defaults fill in
    assert read_gan_config({**base, "loss": {"mel": {"weight": 1.0}}}, ()).loss_families().keys() == {"all"}
    for families, key in (({"msd": {}}, "codec.loss.families.msd"),
                          ({"mpd": {"weigth": 1.0}}, "codec.loss.families.mpd.weigth"),
                          ({"mpd": {"reduction": "max"}}, "codec.loss.families.mpd.reduction"),
                          ({"mpd": {"adversarial": "wgan"}}, "codec.loss.families.mpd.adversarial"),
                          ({"mpd": {"weight": -1}}, "codec.loss.families.mpd.weight")):
        with pytest.raises(BadConfigError, match=key.replace(".", r"\.")):
            read_gan_config({**base, "loss": {"mel": {"weight": 1.0}, "families": families}}, (), "codec")


def test_gan_module_logs_and_sums_the_families():
    from voxtok.codecs.gan_trainer import GANModule
    from voxtok.codecs.modules.outputs import GeneratorOutput

    class Generator(torch.nn.Module):
        loss_names = ()
        bandwidth_id = 2

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def training_forward(self, wav, lengths, step=0):
            return GeneratorOutput(wav * self.scale)

    cfg = {"discriminators": {"names": ["mpd", "dac"],
                              "options": {"mpd": {"periods": [2], **SMALL["mpd"], "num_embeddings": 3},
                                          "dac": {"periods": [3], "window_lengths": [256], "channels": 2,
                                                  "period_channels": 2, "period_max_channels": 8}}},
           "loss": {"mel": {"weight": 1.0, "n_ffts": [256], "n_mels": 20},
                    "families": {"dac": {"adversarial": "lsgan", "reduction": "sum",
                                         "feature_matching_reduction": "sum"}}},
           "optim": {"lr": 1e-3, "fused": False}}
    module = GANModule(Generator(), cfg, max_steps=1, sample_rate=16000, where="codec")
    assert module.bandwidth_id == 2
    logged = {}
    module.log_dict = lambda values, **kw: logged.update(values)
    module.log = lambda *a, **kw: None
    opt = torch.optim.SGD(module.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    module.optimizers, module.lr_schedulers = (lambda: [opt, opt]), (lambda: [sched, sched])  # no Trainer needed
    module.manual_backward = lambda loss: loss.backward()
    module.clip_gradients = lambda *a, **kw: None
    module.training_step({"wav": noise(1, 4000), "lengths": torch.tensor([4000])}, 0)
    for kind in ("d_loss", "g_adv", "fm"):
        assert logged[f"train/{kind}"] == pytest.approx(logged[f"train/{kind}_mpd"] + logged[f"train/{kind}_dac"],
                                                        rel=1e-5)
    cfg["discriminators"]["options"]["mpd"]["num_embeddings"] = 2
    with pytest.raises(BadConfigError, match="bandwidth_id 2 is outside"):
        GANModule(Generator(), cfg, max_steps=1, sample_rate=16000, where="codec")
