"""`voxtok convert vocos`: parity with the PyPI `vocos` package, and one-line refusals.

The reference models are built by the `vocos` package itself (`Vocos.from_hparams`) from a reduced
config.yaml in the release's layout (dim 64, intermediate 128, 2 layers; the release's n_fft 1024 /
hop 256), with random weights, and saved as the release saves them (config.yaml + pytorch_model.bin,
a plain state_dict). Converted with VoxTok and compared on the same audio: the mel features, `decode`
of those features and a full copy-synthesis (features -> audio) must agree to 1e-4 x max(1, peak).
"""

import pytest
import torch
import yaml
from conftest import espeak_speech

import voxtok
from voxtok.audio import MelConfig
from voxtok.cli import main
from voxtok.convert.vocos import convert_vocos
from voxtok.errors import BadConfigError
from voxtok.tts.vocoder import MelVocoder

vocos = pytest.importorskip("vocos", reason="the baselines extra (vocos) is not installed")

DIM, INTERMEDIATE, LAYERS = 64, 128, 2
# (feature_extractor padding, head padding, n_mels): the release's mel model (centred mel, centred
# ISTFT), a centred mel with a "same" head, and the "same"/"same" layout with fewer mels.
LAYOUTS = [("center", "center", 100), ("center", "same", 100), ("same", "same", 80)]


def release_config(mel_padding="center", head_padding="center", n_mels=100, features=None, backbone=None):
    """A Vocos config.yaml in the release's layout (class_path + init_args per part)."""
    return {
        "feature_extractor": features or {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": n_mels,
                          "padding": mel_padding}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": backbone or {"input_channels": n_mels, "dim": DIM,
                                               "intermediate_dim": INTERMEDIATE, "num_layers": LAYERS}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": DIM, "n_fft": 1024, "hop_length": 256, "padding": head_padding}},
    }


def write_release(folder, config, state):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.save(state, folder / "pytorch_model.bin")
    return folder / "config.yaml", folder / "pytorch_model.bin"


def reference_release(folder, *layout):
    """A random-weight Vocos built by the package, saved as config.yaml + pytorch_model.bin."""
    config = release_config(*layout)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(0)
    model = vocos.Vocos.from_hparams(str(folder / "config.yaml")).eval()
    with torch.no_grad():  # move off the init (unit layer scale, zero biases) so every weight matters
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model, *write_release(folder, config, model.state_dict())


@pytest.fixture(scope="module")
def clip():
    """1.2 s of espeak-ng speech at 24 kHz, [1, T] with T not a multiple of the hop."""
    return torch.from_numpy(espeak_speech("Vocos turns mel frames into speech.", "en-us", 24000, 1.2))[None]


@pytest.mark.parametrize("mel_padding, head_padding, n_mels", LAYOUTS)
def test_converted_vocos_computes_what_vocos_computes(tmp_path, clip, mel_padding, head_padding, n_mels):
    reference, config, checkpoint = reference_release(tmp_path / "release", mel_padding, head_padding, n_mels)
    convert_vocos(config, checkpoint, tmp_path / "out")
    vocoder = voxtok.load(tmp_path / "out")
    assert isinstance(vocoder, MelVocoder) and vocoder.registry_kind == "tts"
    assert (vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels) == (24000, 256, n_mels)
    assert vocoder.extra["converted_from"]["kind"] == "vocos"
    batch = torch.cat([clip, 0.5 * clip.flip(-1)])  # [2, T]
    with torch.no_grad():
        features = reference.feature_extractor(batch)
        ours = vocoder.mel(batch[:, None])
        # Same frames; the log-mels differ only through torchaudio's float32 filterbank (VoxTok's is
        # librosa's, exact to float32): up to ~1.3e-4 in the quietest bins (log values near -13).
        assert ours.shape == features.shape == (2, n_mels, vocoder.features.num_frames(batch.shape[-1]))
        assert float((ours - features).abs().max()) < 5e-4
        for name, ref, got in (("decode", reference.decode(features), vocoder(features)),
                               ("copy-synthesis", reference(batch), vocoder(vocoder.mel(batch[:, None])))):
            assert got.shape == (2, 1, vocoder.num_samples(features.shape[-1])) == (2, 1, ref.shape[-1]), name
            peak = float(ref.abs().max())
            assert float((got[:, 0] - ref).abs().max()) <= 1e-4 * max(1.0, peak), name


def test_output_length_rule_of_the_release_layout(tmp_path):
    _, config, checkpoint = reference_release(tmp_path / "release", "center", "center", 100)
    vocoder = MelVocoder.from_pretrained(convert_vocos(config, checkpoint, tmp_path / "out"))
    # The "vocos" preset exactly: a flow decoder trained with `mel: vocos` pairs with this vocoder.
    assert vocoder.mel_config == MelConfig.preset("vocos")
    with torch.no_grad():
        # A centred mel of T = 40 hops has 41 frames; the centred head gives (41 - 1) * 256 = T samples.
        assert vocoder.mel(torch.zeros(1, 1, 40 * 256)).shape[-1] == 41
        assert vocoder(torch.zeros(3, 100, 41)).shape == (3, 1, 40 * 256)
        assert vocoder.training_forward(0.1 * torch.randn(2, 1, 5000)).recon.shape == (2, 1, 5000)


def test_output_folder_rules(tmp_path):
    """A failed conversion leaves an existing checkpoint as it was; a folder that is not a checkpoint
    is never replaced; a checkpoint folder is replaced by a new conversion."""
    _, config, checkpoint = reference_release(tmp_path / "release", "center", "center", 100)
    out = convert_vocos(config, checkpoint, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(BadConfigError, match="not found"):
        convert_vocos(config, tmp_path / "missing.bin", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert convert_vocos(config, checkpoint, out) == out
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(BadConfigError, match="refusing to replace"):
        convert_vocos(config, checkpoint, tmp_path / "data")
    assert (tmp_path / "data" / "keep.txt").read_text() == "mine"


def test_cli_converts_and_prints_the_layout(tmp_path, capsys):
    _, config, checkpoint = reference_release(tmp_path / "release", "center", "center", 100)
    assert main(["convert", "vocos", "--config", str(config), "--checkpoint", str(checkpoint),
                 "-o", str(tmp_path / "out")]) == 0
    assert "24000 Hz, 100 mels, hop 256, centred mel, head padding center" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.yaml", "metadata.json",
                                                                    "model.safetensors"]


def encodec_variant_state(n_bins=1024, n_q=8):
    """The state_dict layout of Vocos's EnCodec-feature model (what `Vocos.from_pretrained` loads into it):
    EnCodec's own weights under feature_extractor.encodec.*, the summed codebooks, a bandwidth-
    conditioned backbone with 128 inputs, head n_fft 1280 / hop 320. Only a few EnCodec keys: the
    refusal must not depend on having them all."""
    backbone = vocos.models.VocosBackbone(128, DIM, INTERMEDIATE, LAYERS, adanorm_num_embeddings=4)
    head = vocos.heads.ISTFTHead(DIM, 1280, 320, "same")
    state = {"feature_extractor.encodec.encoder.model.0.conv.conv.weight_g": torch.ones(32, 1, 1),
             "feature_extractor.encodec.encoder.model.0.conv.conv.weight_v": torch.ones(32, 1, 7),
             "feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed": torch.zeros(n_bins, 128),
             "feature_extractor.codebook_weights": torch.zeros(n_q * n_bins, 128)}
    state.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    return state


ENCODEC_CONFIG = {"class_path": "vocos.feature_extractors.EncodecFeatures",
                  "init_args": {"encodec_model": "encodec_24khz", "bandwidths": [1.5, 3.0, 6.0, 12.0]}}


def assert_refused(tmp_path, config, checkpoint, match):
    """One-line BadConfigError naming the file; nothing written, an existing output left as it was."""
    out = tmp_path / "out"
    with pytest.raises(BadConfigError, match=match) as err:
        convert_vocos(config, checkpoint, out)
    assert "\n" not in str(err.value)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temp folder left
    return str(err.value)


def test_encodec_feature_model_is_refused_by_config_and_by_keys(tmp_path):
    encodec_backbone = {"input_channels": 128, "dim": DIM, "intermediate_dim": INTERMEDIATE, "num_layers": LAYERS,
                        "adanorm_num_embeddings": 4}
    config, checkpoint = write_release(tmp_path / "encodec", release_config(
        features=ENCODEC_CONFIG, backbone=encodec_backbone), encodec_variant_state())
    message = assert_refused(tmp_path, config, checkpoint, "EnCodec-feature model .*not supported")
    assert "EncodecFeatures" in message and str(config) in message
    # The mel model's config.yaml beside the EnCodec model's weights: decided from the keys.
    mel_config, _ = write_release(tmp_path / "mixed", release_config(), {})
    message = assert_refused(tmp_path, mel_config, checkpoint, "EnCodec-feature model .*not supported")
    assert "feature_extractor.encodec." in message and "backbone.convnext.* " in message
    # An EnCodec-style conditioned backbone in an otherwise mel config.
    cond = {**encodec_backbone, "input_channels": 100}
    bad, _ = write_release(tmp_path / "cond", release_config(backbone=cond), {})
    assert_refused(tmp_path, bad, checkpoint, "AdaLayerNorm")


def test_wrong_and_missing_files_are_refused(tmp_path):
    reference, config, checkpoint = reference_release(tmp_path / "release", "center", "center", 100)
    assert_refused(tmp_path, config, tmp_path / "nope.bin", "pytorch_model.bin not found")
    assert_refused(tmp_path, tmp_path / "nope.yaml", checkpoint, "config.yaml not found")
    assert_refused(tmp_path, config, config, "cannot read a Vocos pytorch_model.bin")  # a YAML file as weights
    # Another model's weights: the first differing keys and what the file holds.
    torch.save({"encoder.conv.weight": torch.zeros(4, 1, 3)}, tmp_path / "other.bin")
    message = assert_refused(tmp_path, config, tmp_path / "other.bin", "does not fit the Vocos mel model")
    assert "missing ['backbone.embed.weight'" in message and "encoder.conv.* (1)" in message
    # A WavTokenizer generator given as vocos.
    wavtokenizer = {**reference.state_dict(), "backbone.pos_net.0.norm1.weight": torch.ones(DIM)}
    torch.save(wavtokenizer, tmp_path / "wt.bin")
    assert_refused(tmp_path, config, tmp_path / "wt.bin", "WavTokenizer generator .*voxtok convert wavtokenizer")
    # A config.yaml of another size than the weights.
    small, _ = write_release(tmp_path / "small", release_config(n_mels=80), {})
    assert_refused(tmp_path, small, checkpoint, "mel filterbank")
    del_fb = {k: v for k, v in reference.state_dict().items() if "mel_scale" not in k}
    torch.save(del_fb, tmp_path / "no_fb.bin")
    assert_refused(tmp_path, small, tmp_path / "no_fb.bin", r"shape \['backbone.embed.weight")


def test_bad_configs_are_refused(tmp_path):
    _, _, checkpoint = reference_release(tmp_path / "release", "center", "center", 100)
    imdct = release_config()
    imdct["head"] = {"class_path": "vocos.heads.IMDCTSymExpHead", "init_args": {"dim": DIM, "mdct_frame_len": 512}}
    cases = [
        (imdct, "head vocos.heads.IMDCTSymExpHead is not supported"),
        (release_config(backbone={"input_channels": 80, "dim": DIM, "intermediate_dim": INTERMEDIATE,
                                  "num_layers": LAYERS}), "backbone input_channels is 80, expected 100"),
        ({"feature_extractor": {"init_args": {}}}, "'feature_extractor' has no class_path"),
        ({"something": 1}, "no feature_extractor / backbone / head"),
    ]
    for i, (config, match) in enumerate(cases):
        path, _ = write_release(tmp_path / f"case{i}", config, {})
        assert_refused(tmp_path, path, checkpoint, match)
    # An uncentred mel with a centred head would lose the last hop: VoxTok's vocoder refuses it.
    path, _ = write_release(tmp_path / "mixed", release_config("same", "center"), {})
    assert_refused(tmp_path, path, checkpoint, "needs a centred mel")


def test_training_config_layout_is_read(tmp_path):
    """Vocos's Lightning training config nests the three parts under model.init_args."""
    reference, config, checkpoint = reference_release(tmp_path / "release", "center", "center", 100)
    training = {"model": {"class_path": "vocos.experiment.VocosExp",
                          "init_args": {"sample_rate": 24000, **yaml.safe_load(config.read_text())}}}
    (tmp_path / "vocos.yaml").write_text(yaml.safe_dump(training))
    vocoder = MelVocoder.from_pretrained(convert_vocos(tmp_path / "vocos.yaml", checkpoint, tmp_path / "out"))
    mel = torch.randn(1, 100, 9)
    with torch.no_grad():
        assert float((vocoder(mel)[:, 0] - reference.decode(mel)).abs().max()) < 1e-5


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
    _, config, _ = reference_release(tmp_path / "release", "center", "center", 100)
    assert main(["convert", "vocos", "--config", str(config), "--checkpoint", str(tmp_path / "x.bin"),
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not found" in err
    assert not (tmp_path / "out").exists()
