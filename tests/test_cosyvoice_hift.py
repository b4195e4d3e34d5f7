"""CosyVoice's HiFT vocoder (issue 20, item 5): `hift.pt` converted to `voxtok.tts.hift.HiFT` computes
what the reference computes, for the same mel and noise seed.

Fixture tests/fixtures/cosyvoice_hift/, made once from the reference repository FunAudioLLM/CosyVoice
at commit ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40 (a snapshot outside this repository; no reference
code is committed). The script (kept outside the repository) imported the snapshot's
cosyvoice.hifigan.generator.HiFTGenerator and cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor and,
under torch.manual_seed(0), built them with CosyVoice-300M's hift arguments at a reduced size
(base_channels and cond_channels 32 instead of 512; 22.05 kHz, 80 mels, upsample [8, 8] k16, iSTFT
n_fft 16 / hop 4, 8 harmonics, resblocks [3, 7, 11], source resblocks [7, 11] as released): the
committed cosyvoice.yaml is that `hift` entry. It gave the weights visible effect (Snake alphas
1 + 0.3 N, the source merge Linear N, conv_post gain x 0.3 and bias 1 (log-magnitudes) / 0 (phases)
+ 0.3 N, the F0 classifier set so F0 spans ~1-300 Hz with 7 of 48 frames below the 10 Hz voicing
threshold), saved the state_dict with old weight-norm names (weight_g / weight_v, the release's
hift.pt layout) as hift.pt, loaded it back into a fresh reference model and stored in
reference_outputs.pt: `mel` [2, 80, 24] (a mel-like pattern), the reference's F0 [2, 24], and
  - after torch.manual_seed(1234): `audio` [2, 6144], `source` [2, 1, 6144] = `inference(mel)`;
  - after torch.manual_seed(7): `audio_cached`, `source_cached` = `inference(mel[:1, :, :16],
    cache_source=source[:1, :, :1024])` (CosyVoice's streaming carries the excitation over);
  - after torch.manual_seed(99): `inference(mel[1:, :, :10])`, then `audio_second` = `inference(mel[:1])`
    (a second call: the global RNG has moved on);
  - `mel_wav` [1, 13312] (tones + noise) and `matcha_mel`, its Matcha-TTS `mel_spectrogram`
    (shivammehta25/Matcha-TTS 108906c, CosyVoice v1's feat_extractor settings: n_fft 1024, 80 mels,
    22.05 kHz, hop 256, win 1024, fmin 0, fmax 8000, center False).
Criteria: audio max |diff| <= 1e-4 x max(1, peak) (measured 2.7e-7 at peak 0.39), the excitation equal
to float rounding, and a wrong checkpoint or config is a one-line BadConfigError.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import within_tolerance

from voxtok.audio import MelConfig
from voxtok.convert.cosyvoice_hift import HIFT_CHECKPOINT, hift_config_from_reference, hift_from_reference
from voxtok.convert.cosyvoice_yaml import read_cosyvoice_yaml
from voxtok.convert.keymap import read_state_dict
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.registry import build, load, read_metadata
from voxtok.tts.hift import HiFT
from voxtok.tts.pipeline import StreamingVocoder

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cosyvoice_hift"
YAML, CHECKPOINT = FIXTURE / "cosyvoice.yaml", FIXTURE / "hift.pt"


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE / "reference_outputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def release():
    """(cosyvoice.yaml as data, hift.pt tensors), read the way `voxtok convert cosyvoice` reads them."""
    return read_cosyvoice_yaml(YAML), read_state_dict(CHECKPOINT, HIFT_CHECKPOINT)


@pytest.fixture(scope="module")
def hift(release):
    return hift_from_reference(release[1], release[0], YAML, CHECKPOINT)


@torch.no_grad()
def test_converted_hift_reproduces_the_reference_audio_for_the_same_seed(hift, reference):
    mel = reference["mel"]
    assert float((hift.f0_predictor(mel) - reference["f0"]).abs().max()) <= 1e-4
    audio, source = hift.synthesize(mel, seed=reference["seed"])
    assert audio.shape == (2, 1, 24 * 256)
    assert float((source - reference["source"]).abs().max()) <= 1e-6
    within_tolerance(audio, reference["audio"])
    within_tolerance(hift(mel, generator=torch.Generator().manual_seed(reference["seed"])), reference["audio"])
    # The noise matters: another seed gives audibly other audio, so the draws above were the reference's.
    assert float((hift(mel, seed=reference["seed"] + 1)[:, 0] - reference["audio"]).abs().max()) > 1e-2


@torch.no_grad()
def test_cached_excitation_and_a_generator_shared_across_calls_match_the_reference(hift, reference):
    mel = reference["mel"]
    _, source = hift.synthesize(mel, seed=reference["seed"])
    n = reference["cache_samples"]
    audio, cached = hift.synthesize(mel[:1, :, :reference["cache_mel_frames"]], cache_source=source[:1, :, :n],
                                    seed=reference["cache_seed"])
    assert torch.equal(cached[..., :n], source[:1, :, :n])
    assert float((cached - reference["source_cached"]).abs().max()) <= 1e-6
    within_tolerance(audio, reference["audio_cached"])
    generator = torch.Generator().manual_seed(reference["second_seed"])
    hift(mel[1:, :, :reference["first_frames"]], generator=generator)
    within_tolerance(hift(mel[:1], generator=generator), reference["audio_second"])
    with pytest.raises(BadConfigError, match="cache_source"):
        hift.synthesize(mel[:1, :, :2], cache_source=source[:1, :, :1024])


def test_mel_front_end_is_cosyvoices_matcha_mel(hift, reference):
    """HiFT.mel (the `cosyvoice` MelConfig preset) = the reference's feat_extractor."""
    assert hift.mel_config == MelConfig.preset("cosyvoice")
    assert float((hift.mel(reference["mel_wav"][:, None]) - reference["matcha_mel"]).abs().max()) <= 1e-4


@torch.no_grad()
def test_new_weight_norm_names_and_a_training_checkpoint_convert_too(release, reference):
    config, state = release
    new_names = {k.replace("weight_g", "parametrizations.weight.original0")
                 .replace("weight_v", "parametrizations.weight.original1"): v for k, v in state.items()}
    training = {**{f"generator.{k}": v for k, v in state.items()}, "discriminator.mpd.conv.weight": torch.zeros(2)}
    for variant in (new_names, training):
        within_tolerance(hift_from_reference(variant, config)(reference["mel"], seed=reference["seed"]),
                         reference["audio"])


@torch.no_grad()
def test_saved_folder_loads_with_voxtok_load_and_is_deterministic(hift, reference, tmp_path):
    out = hift.save_pretrained(tmp_path / "hift")
    meta = read_metadata(out)
    assert (meta["kind"], meta["name"]) == ("tts", "hift")
    assert meta["info"] == {"sample_rate": 22050, "hop_length": 256, "n_mels": 80, "mel_center": False}
    loaded = load(out)
    assert isinstance(loaded, HiFT) and loaded.to_config() == hift.to_config()
    within_tolerance(loaded(reference["mel"], seed=reference["seed"]), reference["audio"])
    # Without a seed the config's noise_seed is used: the same mel always gives the same audio.
    assert torch.equal(loaded(reference["mel"]), loaded(reference["mel"]))
    assert torch.equal(loaded(reference["mel"]), loaded(reference["mel"], seed=0))


def test_wrong_checkpoint_is_one_line_error(release, tmp_path):
    config, state = release

    def fails(state_dict, match, cfg=config):
        with pytest.raises(BadConfigError, match=match) as err:
            hift_from_reference(state_dict, cfg, YAML, CHECKPOINT)
        assert "\n" not in str(err.value)
        return str(err.value)

    flow_like = {"decoder.estimator.down_blocks.0.weight": torch.zeros(2), "encoder.embed.out.0.weight": torch.zeros(2)}
    assert "hift.pt" in fails(flow_like, "not a CosyVoice hift.pt: no f0_predictor")
    missing = {k: v for k, v in state.items() if not k.startswith("conv_post.")}
    assert "conv_post" in fails(missing, "checkpoint does not fit the HiFT of cosyvoice.yaml")
    # The file is the reduced model; cosyvoice.yaml sizes the released one: shapes differ.
    full = dict(config, hift=type(config["hift"])("new", config["hift"].target,
                                                 {**config["hift"].args, "base_channels": 512}))
    fails(state, "shape", cfg=full)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadConfigError, match="cannot read a CosyVoice hift.pt"):
        read_state_dict(tmp_path / "junk.pt", HIFT_CHECKPOINT)


@pytest.mark.parametrize("edit, match", [
    (("HiFTGenerator\n", "CausalHiFTGenerator\n"), "CausalHiFTGenerator; supported: HiFTGenerator"),
    (("sample_rate: 22050", "sample_rate: 24000"), "only CosyVoice v1's 22.05 kHz HiFT"),
    (("lrelu_slope: 0.1", "lrelu_slop: 0.1"), r"unknown hift arguments \['lrelu_slop'\]"),
    (("ConvRNNF0Predictor", "CausalConvRNNF0Predictor"), "supported: ConvRNNF0Predictor"),
    (("sample_rate: 22050\n", "sample_rate: 22050\nfeat_extractor: !name:matcha.utils.audio.mel_spectrogram\n"
      "    hop_size: 512\n"), "feat_extractor hop_size 512 disagrees with the hift"),
])
def test_wrong_reference_config_is_one_line_error(edit, match, release, tmp_path):
    text = YAML.read_text()
    assert edit[0] in text
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(BadConfigError, match=match) as err:
        hift_from_reference(release[1], read_cosyvoice_yaml(path), path, CHECKPOINT)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


RELEASE_FEAT_EXTRACTOR = """feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 256
    win_size: 1024
    fmin: 0
    fmax: 8000
    center: False
"""


def test_reference_config_maps_to_the_tiny_config(release, tmp_path):
    tiny = yaml.safe_load((CONFIG_DIR / "tts" / "hift_tiny.yaml").read_text())
    converted = HiFT(hift_config_from_reference(release[0], YAML)).to_config()
    assert converted == HiFT(tiny["model"]).to_config() | {"mel": converted["mel"]}
    assert MelConfig.from_spec(converted["mel"]) == MelConfig.preset("cosyvoice")
    # With the release's feat_extractor entry (CosyVoice-300M's cosyvoice.yaml) the mel is the same.
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(YAML.read_text() + RELEASE_FEAT_EXTRACTOR)
    mel = hift_config_from_reference(read_cosyvoice_yaml(path), path)["mel"]
    assert MelConfig.from_spec(mel) == MelConfig.preset("cosyvoice")


def test_paper_config_has_the_reference_parameter_count_and_runs():
    cfg = yaml.safe_load((CONFIG_DIR / "tts" / "hift_cosyvoice_300m.yaml").read_text())
    hift = build("tts", cfg["name"], cfg["model"])
    # The reference HiFTGenerator built with CosyVoice-300M's cosyvoice.yaml arguments has 20,460,591.
    assert sum(p.numel() for p in hift.parameters()) == 20_460_591
    assert hift.to_config() == HiFT().to_config()  # the defaults are the published sizes
    with torch.no_grad():
        assert hift.eval()(torch.randn(1, 80, 4)).shape == (1, 1, 4 * 256)


def test_vocoder_contract_and_strict_config():
    """What the pipelines use: sample_rate, hop_length, mel_config, mel(wav), vocoder(mel), streaming."""
    tiny = yaml.safe_load((CONFIG_DIR / "tts" / "hift_tiny.yaml").read_text())["model"]
    hift = HiFT(tiny).eval()
    assert (hift.sample_rate, hift.hop_length, hift.n_mels, hift.num_samples(7)) == (22050, 256, 80, 7 * 256)
    mel = hift.mel(0.1 * torch.randn(2, 1, 256 * 12))
    assert mel.shape == (2, 80, 12)
    with torch.no_grad():
        assert hift(mel).shape == (2, 1, 12 * 256)
    chunks = StreamingVocoder(hift)
    audio = torch.cat([chunks.push(mel[0, :, :8], 6), chunks.push(mel[0, :, 6:], 6)])
    assert audio.shape == (12 * 256,)
    with pytest.raises(BadConfigError, match=r"\[B, 80, T'\]"):
        hift(torch.zeros(1, 100, 4))
    with pytest.raises(BadConfigError, match="'hift.base_chanels'"):
        HiFT({**tiny, "base_chanels": 32})
    with pytest.raises(BadConfigError, match="one source resblock per upsample stage"):
        HiFT({**tiny, "source_resblock_kernel_sizes": [7]})
    with pytest.raises(BadConfigError, match="kernel - rate even"):
        HiFT({**tiny, "upsample_kernel_sizes": [16, 15]})
