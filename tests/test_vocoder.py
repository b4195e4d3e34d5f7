"""Mel vocoder: frame/sample shapes, the paper size, learning, GAN recipe step, save/load."""

import numpy as np
import pytest
import torch
import yaml
from conftest import espeak_speech
from hydra import compose, initialize_config_dir

from voxtok.audio import MelConfig, save_audio
from voxtok.codecs.modules.losses import MultiResolutionMelLoss
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.tts.vocoder import MelVocoder

TINY = {"mel": "cosyvoice", "backbone": {"dim": 32, "intermediate_dim": 64, "num_layers": 1}, "head": {"n_fft": 1024}}


def test_frames_map_to_hops():
    vocoder = MelVocoder(TINY)
    assert (vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels) == (22050, 256, 80)
    assert vocoder.mel_config == MelConfig.preset("cosyvoice")
    wav = 0.1 * torch.randn(2, 1, 256 * 20)
    mel = vocoder.mel(wav)
    assert mel.shape == (2, 80, 20)
    assert vocoder(mel).shape == (2, 1, 20 * 256)
    assert vocoder.training_forward(wav[..., :5000]).recon.shape == (2, 1, 5000)
    with pytest.raises(BadConfigError, match=r"\[B, 80, T'\]"):
        vocoder(torch.zeros(1, 100, 20))


@pytest.mark.parametrize("head_padding, samples", [("center", 20 * 256), ("same", 21 * 256)])
def test_centred_mel_length_rule(head_padding, samples):
    """A centred mel (Vocos's front end) has T // hop + 1 frames; a "center" head gives back
    (T' - 1) * hop = T samples, a "same" head T' * hop (one hop more); training trims to T."""
    vocoder = MelVocoder({**TINY, "mel": "vocos", "head": {"n_fft": 1024, "padding": head_padding}})
    wav = 0.1 * torch.randn(2, 1, 256 * 20)
    mel = vocoder.mel(wav)
    assert mel.shape == (2, 100, 21)
    assert vocoder(mel).shape == (2, 1, samples) == (2, 1, vocoder.num_samples(21))
    assert vocoder.training_forward(wav[..., :5000]).recon.shape == (2, 1, 5000)
    with pytest.raises(BadConfigError, match="needs a centred mel"):
        MelVocoder({**TINY, "head": {"n_fft": 1024, "padding": "center"}})
    with pytest.raises(BadConfigError, match="head.padding must be one of"):
        MelVocoder({**TINY, "head": {"n_fft": 1024, "padding": "valid"}})


def test_paper_config_size_and_forward():
    cfg = yaml.safe_load((CONFIG_DIR / "tts" / "vocoder_paper.yaml").read_text())
    vocoder = MelVocoder.from_config(cfg["model"])
    # Vocos: embed conv k7, LayerNorm, 8 ConvNeXt blocks, final LayerNorm, Linear(dim -> n_fft + 2).
    dim, inter, layers, mels, n_fft = 512, 1536, 8, 80, 1024
    block = (dim * 7 + dim) + 2 * dim + (dim * inter + inter) + (inter * dim + dim) + dim
    expected = (mels * dim * 7 + dim) + 2 * dim + layers * block + 2 * dim + (dim * (n_fft + 2) + n_fft + 2)
    assert sum(p.numel() for p in vocoder.parameters()) == expected == 13_459_970
    # At Vocos's own 24 kHz / 100 mels this is the published 13.5M.
    vocos = MelVocoder({**cfg["model"], "mel": {"preset": "cosyvoice", "sample_rate": 24000, "n_mels": 100}})
    assert sum(p.numel() for p in vocos.parameters()) == 13_531_650
    with torch.no_grad():
        assert vocoder(torch.randn(1, 80, 8)).shape == (1, 1, 8 * 256)


def test_mel_loss_falls_on_one_clip():
    torch.manual_seed(0)
    vocoder = MelVocoder({**TINY, "backbone": {"dim": 64, "intermediate_dim": 128, "num_layers": 2}})
    clip = torch.from_numpy(espeak_speech("The quick brown fox jumps.", "en-us", 22050, 0.4))[None, None]
    loss_fn = MultiResolutionMelLoss(22050, n_ffts=[1024], hop_lengths=[256], n_mels=100,
                                     base=MelConfig.preset("vocos"))
    opt = torch.optim.AdamW(vocoder.parameters(), lr=3e-3, betas=(0.8, 0.9))
    losses = []
    for _ in range(20):
        loss = loss_fn(vocoder.training_forward(clip).recon, clip)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3]), losses


def test_save_load_round_trip(tmp_path):
    vocoder = MelVocoder(TINY).eval()
    mel = torch.randn(1, 80, 12)
    path = vocoder.save_pretrained(tmp_path / "voc")
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "metadata.json", "model.safetensors"]
    loaded = MelVocoder.from_pretrained(path)
    with torch.no_grad():
        assert torch.equal(loaded(mel), vocoder(mel))
    with pytest.raises(BadConfigError, match="not a VoxTok checkpoint folder"):
        MelVocoder.from_pretrained(tmp_path)


def test_recipe_runs_gan_steps_and_exports(tmp_path):
    from voxtok.recipes.train_vocoder import train

    wavs, data = tmp_path / "wav", tmp_path / "data"
    data.mkdir()
    utts = [f"s0_u{i}" for i in range(2)]
    for i, utt in enumerate(utts):
        save_audio(wavs / f"{utt}.wav", espeak_speech(f"Number {i + 1} is here.", "en-us", 24000, 0.6), 24000)
    (data / "wav.scp").write_text("".join(f"{u} {wavs / (u + '.wav')}\n" for u in utts))
    (data / "text").write_text("".join(f"{u} hello\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} s0\n" for u in utts))
    (data / "spk2utt").write_text(f"s0 {' '.join(utts)}\n")
    exp = tmp_path / "exp"
    small = ["tts.model.backbone.dim=16", "tts.model.backbone.intermediate_dim=32", "tts.model.backbone.num_layers=1",
             "tts.discriminators.options.mpd.channels=4", "tts.discriminators.options.mpd.max_channels=8",
             "tts.discriminators.options.mrd.channels=4", "tts.data.crop_seconds=0.2", "tts.data.batch_size=2",
             "tts.data.valid_crop_seconds=0.3", "tts.optim.disc_start_step=1", "trainer.max_steps=2",
             "trainer.val_every_n_steps=2", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=1",
             "trainer.checkpoint_every_n_steps=2"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train_vocoder", overrides=[f"train_dir={data}", f"valid_dir={data}", f"exp_dir={exp}",
                                                  f"hydra_dir={exp}/hydra", *small])
    out = train(cfg)  # update 1 is mel-only, update 2 adversarial
    ckpt = torch.load(exp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(ckpt["state_dict"]["updates"]) == 2
    vocoder = MelVocoder.from_pretrained(out)
    state = {k[len("generator."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("generator.")}
    assert all(torch.equal(vocoder.state_dict()[k], v) for k, v in state.items())
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        wrong = compose("train_vocoder", overrides=["tts=flow_tiny"])
    with pytest.raises(BadConfigError, match="not a vocoder"):
        train(wrong)


def test_paper_config_weighs_the_mrd_by_a_tenth_as_vocos():
    """vocoder_paper.yaml's `loss.families` give Vocos's GAN terms: with the `vocos` package's own loss
    modules combined as its experiment.py does (mrd_loss_coeff 0.1 from its configs/vocos.yaml: the
    discriminator's MRD loss, the generator's MRD loss and the MRD feature matching, each divided by the
    number of sub-discriminators) on random logits and feature maps of 5 MPD and 3 MRD sub-discriminators."""
    vocos_loss = pytest.importorskip("vocos.loss")
    from voxtok.codecs.gan_config import read_gan_config
    from voxtok.codecs.modules.losses import FamilyLoss, family_discriminator_loss, family_generator_losses

    cfg = yaml.safe_load((CONFIG_DIR / "tts" / "vocoder_paper.yaml").read_text())
    families = read_gan_config(cfg, MelVocoder.from_config(TINY).loss_names, "tts").loss_families()
    assert families == {"mpd": FamilyLoss("hinge", 1.0, "mean", "mean"), "mrd": FamilyLoss("hinge", 0.1, "mean", "mean")}
    torch.manual_seed(0)
    counts = {"mpd": 5, "mrd": 3}
    real, fake = ({n: [torch.randn(2, 40) for _ in range(k)] for n, k in counts.items()} for _ in range(2))
    real_maps, fake_maps = ({n: [[torch.randn(2, 4, 9) for _ in range(4)] for _ in range(k)] for n, k in counts.items()}
                            for _ in range(2))
    d_total, _ = family_discriminator_loss(families, real, fake)
    adv, fm, _ = family_generator_losses(families, fake, real_maps, fake_maps)
    disc_loss, gen_loss, fm_loss = vocos_loss.DiscriminatorLoss(), vocos_loss.GeneratorLoss(), vocos_loss.FeatureMatchingLoss()
    loss_mp, mp_parts, _ = disc_loss(real["mpd"], fake["mpd"])
    loss_mrd, mrd_parts, _ = disc_loss(real["mrd"], fake["mrd"])
    assert d_total.item() == pytest.approx((loss_mp / len(mp_parts) + 0.1 * loss_mrd / len(mrd_parts)).item(), rel=1e-6)
    gen_mp, gen_mp_parts = gen_loss(fake["mpd"])
    gen_mrd, gen_mrd_parts = gen_loss(fake["mrd"])
    assert adv.item() == pytest.approx((gen_mp / len(gen_mp_parts) + 0.1 * gen_mrd / len(gen_mrd_parts)).item(), rel=1e-6)
    want_fm = (fm_loss(real_maps["mpd"], fake_maps["mpd"]) / 5 + 0.1 * fm_loss(real_maps["mrd"], fake_maps["mrd"]) / 3)
    assert fm.item() == pytest.approx(want_fm.item(), rel=1e-6)
