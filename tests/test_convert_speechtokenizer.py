"""`voxtok convert speechtokenizer`: parity with the PyPI `speechtokenizer` package (and, for the SEANet
encoder/decoder and the residual VQ it is built from, with the PyPI `encodec` package), and one-line
refusals of checkpoints that are not SpeechTokenizer's.

The reference model is built by the `speechtokenizer` package itself (`SpeechTokenizer(config)`) at a
reduced size (n_filters 4, dimension 16, semantic_dimension 12, 4 x 32 codes; the release's strides,
BiLSTM and ELU), with random weights (weight-norm gains doubled, see `reference_model`). Its codebooks
take the k-means-free path: each layer's `embed` is set to jittered frames of the residual it
quantizes (so codes vary) and `inited` to 1, as a trained release has them. It is saved as the release is (config.json + SpeechTokenizer.pt, the generator's
state_dict), converted with VoxTok and compared on the same audio: `encode` codes equal
(SpeechTokenizer's [n_q, B, T] against VoxTok's [B, Q, T]), `decode` audio and the semantic
projection (`transform` of the RVQ-1 output, VoxTok's `sm` head) within 1e-4 x max(1, peak).
"""

import json
import re

import pytest
import torch

import voxtok
from voxtok.cli import main
from voxtok.codecs.modules.quantize import ResidualVQ
from voxtok.codecs.modules.seanet import SEANetDecoder, SEANetEncoder
from voxtok.convert.encodec_layout import as_voxtok_flags, rvq_rules, seanet_rules
from voxtok.convert.keymap import load_mapped, rename
from voxtok.convert.speechtokenizer import convert_speechtokenizer
from voxtok.errors import BadConfigError

from speechtokenizer_fixtures import RELEASE_CONFIG, audio, fit_codebooks, reference_model, within_tolerance

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.* is deprecated:FutureWarning")  # the packages' old weight norm
encodec = pytest.importorskip("encodec", reason="the baselines extra (encodec) is not installed")

HOP = 320


def write_release(folder, config, state):
    """config.json + SpeechTokenizer.pt as the release ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(state, folder / "SpeechTokenizer.pt")
    return folder / "config.json", folder / "SpeechTokenizer.pt"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(reference model, config.json, SpeechTokenizer.pt, converted VoxTok folder via the CLI)."""
    folder = tmp_path_factory.mktemp("speechtokenizer")
    model = reference_model()
    config, checkpoint = write_release(folder / "release", RELEASE_CONFIG, model.state_dict())
    out = folder / "converted"
    assert main(["convert", "speechtokenizer", "--config", str(config), "--checkpoint", str(checkpoint),
                 "-o", str(out)]) == 0
    return model, config, checkpoint, out


@pytest.mark.parametrize("samples", [16000, 12345, 700])
def test_converted_release_codes_audio_and_projection_match_the_package(release, samples):
    reference, _, _, out = release
    codec = voxtok.load(out, kind="codec")
    wav = audio(2, samples)
    with torch.no_grad():
        ref_codes = reference.encode(wav)  # [n_q, B, T]
        codes = codec.encode(wav)
        assert codes.shape == (2, 4, -(-samples // HOP)) and torch.equal(codes, ref_codes.permute(1, 0, 2))
        if samples > 5000:
            assert codes.unique().numel() > 8  # fitted codebooks: the comparison is not one code everywhere
        ref_audio = reference.decode(ref_codes)
        ours = codec.decode(codes)
        assert ours.shape == ref_audio.shape and within_tolerance(ours, ref_audio)
        assert within_tolerance(codec.decode(codes[:, :2]), reference.decode(ref_codes[:2]))
        _, _, ref_feature = reference(wav)  # transform(RVQ-1 output) [B, T, semantic_dimension]
        projection = codec.project(codec.quantizer(codec.inference_latent(wav)), "sm")
        assert projection.shape == ref_feature.shape and within_tolerance(projection, ref_feature)


def test_converted_release_is_a_dmcodec_folder_that_distills_into_the_sm_head(release):
    _, _, checkpoint, out = release
    codec = voxtok.load(out, kind="codec")
    assert codec.registry_name == "dmcodec" and codec.framing == "reference" and not codec.shared_head
    assert {name: (t.dim, t.layer) for name, t in codec.targets.items()} == {"sm": (12, 1)}
    assert (codec.sample_rate, codec.frame_rate, codec.n_q, codec.codebook_size) == (16000, 50, 4, 32)
    assert all(bool(layer.initialized) for layer in codec.quantizer.layers)
    assert codec.extra["converted_from"]["checkpoint"] == checkpoint.name
    with torch.no_grad():  # the reference's EMA state carries over for fine-tuning
        reference = torch.load(checkpoint, weights_only=True)
        assert torch.equal(codec.quantizer.layers[2].ema_embed_sum, reference["quantizer.vq.layers.2._codebook.embed_avg"])
    codec.train()
    out = codec.training_forward(audio(2, 3200), step=10**6, sm=torch.randn(2, 10, 12))
    assert {"commit", "distill_sm"} <= set(out.losses)


def test_release_without_a_projection_gets_an_identity_head(tmp_path):
    config = {**RELEASE_CONFIG, "semantic_dimension": RELEASE_CONFIG["dimension"]}  # transform = nn.Identity
    reference = reference_model(config)
    assert not any(k.startswith("transform.") for k in reference.state_dict())
    codec = voxtok.load(convert_speechtokenizer(*write_release(tmp_path, config, reference.state_dict()),
                                                tmp_path / "out"), kind="codec")
    wav = audio(1, 4000)
    with torch.no_grad():
        _, _, feature = reference(wav)
        assert within_tolerance(codec.project(codec.quantizer(codec.inference_latent(wav)), "sm"), feature)


def test_padded_batch_encodes_each_item_as_the_package_does(release):
    reference, _, _, out = release
    codec = voxtok.load(out, kind="codec")
    lengths = [9000, 6401, 9000]
    batch = audio(3, max(lengths), seed=3)
    for i, n in enumerate(lengths):
        batch[i, :, n:] = 0
    with torch.no_grad():
        codes = codec.encode(batch, torch.tensor(lengths))
        for i, n in enumerate(lengths):
            single = reference.encode(batch[i : i + 1, :, :n])[:, 0]
            assert torch.equal(codes[i, :, : single.shape[-1]], single)


# ----------------------------------------------------------------------------- the EnCodec modules


ENCODEC_SEANET = dict(channels=1, dimension=16, n_filters=4, n_residual_layers=2, ratios=[4, 4, 2],
                      kernel_size=7, last_kernel_size=5, residual_kernel_size=3, dilation_base=2)


def test_encodec_seanet_encoder_and_decoder_map_onto_voxtok_seanet():
    torch.manual_seed(0)
    ref_encoder = encodec.modules.SEANetEncoder(**ENCODEC_SEANET, lstm=2).eval()
    ref_decoder = encodec.modules.SEANetDecoder(**ENCODEC_SEANET, lstm=1).eval()
    encoder = SEANetEncoder(**ENCODEC_SEANET, lstm_layers=2)
    decoder = SEANetDecoder(**ENCODEC_SEANET, lstm_layers=1)
    for ours, ref in ((encoder, ref_encoder), (decoder, ref_decoder)):
        state = ref.state_dict()
        load_mapped(ours, rename(state, seanet_rules("", "")), "encodec", "VoxTok's SEANet", original=state)
    wav = audio(2, 32 * 50 + 7)
    with torch.no_grad():
        latent = ref_encoder(wav)
        assert within_tolerance(encoder.eval()(wav), latent)
        assert within_tolerance(decoder.eval()(latent), ref_decoder(latent))


def test_encodec_residual_vq_maps_onto_voxtok_residual_vq():
    torch.manual_seed(0)
    ref = encodec.quantization.ResidualVectorQuantizer(dimension=16, n_q=4, bins=32).eval()
    latent = torch.randn(3, 16, 40)
    with torch.no_grad():
        fit_codebooks([layer._codebook for layer in ref.vq.layers], latent)
    state = ref.state_dict()
    ours = ResidualVQ(n_q=4, dim=16, codebook_size=32)
    load_mapped(ours, as_voxtok_flags(rename(state, rvq_rules("", ""))), "encodec", "VoxTok's ResidualVQ",
                original=state)
    x = latent + 0.3 * torch.randn_like(latent)
    with torch.no_grad():
        ref_codes = ref.encode(x, sample_rate=16000)  # [n_q, B, T]
        codes = ours.eval().encode(x)
        assert codes.unique().numel() > 8 and torch.equal(codes, ref_codes.permute(1, 0, 2))
        assert within_tolerance(ours.decode(codes), ref.decode(ref_codes))
        assert within_tolerance(ours(x).quantized, ref.decode(ref_codes))  # eval forward: no EMA update


# ----------------------------------------------------------------------------- refusals


def wavtokenizer_state():
    """A WavTokenizer Lightning checkpoint's layout: EnCodec encoder + VQ under feature_extractor,
    a Vocos backbone and head (built by the packages at a tiny size)."""
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    torch.manual_seed(0)
    parts = {"feature_extractor.encodec.encoder.": encodec.modules.SEANetEncoder(**ENCODEC_SEANET),
             "feature_extractor.encodec.quantizer.": encodec.quantization.ResidualVectorQuantizer(16, 1, 32),
             "backbone.": VocosBackbone(16, 8, 16, 1), "head.": ISTFTHead(8, 64, 16)}
    return {"state_dict": {prefix + k: v for prefix, part in parts.items() for k, v in part.state_dict().items()}}


def vocos_state():
    """The Vocos mel model's pytorch_model.bin (plain state_dict), built by the package."""
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    parts = {"feature_extractor.": MelSpectrogramFeatures(n_mels=16), "backbone.": VocosBackbone(16, 8, 16, 1),
             "head.": ISTFTHead(8, 64, 16)}
    return {prefix + k: v for prefix, part in parts.items() for k, v in part.state_dict().items()}


def refused(tmp_path, capsys, config, state, match):
    """Convert through the CLI: exit 2, one line matching `match`, and no folder (nor temp) written."""
    config_path, checkpoint = write_release(tmp_path / "release", config, state)
    out = tmp_path / "out"
    assert main(["convert", "speechtokenizer", "--config", str(config_path), "--checkpoint", str(checkpoint),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert re.search(match, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]
    with pytest.raises(BadConfigError, match=match):
        convert_speechtokenizer(config_path, checkpoint, out)
    return err


def test_wavtokenizer_checkpoint_is_refused_naming_its_keys(tmp_path, capsys):
    err = refused(tmp_path, capsys, RELEASE_CONFIG, wavtokenizer_state(), "does not fit")
    assert "missing ['encoder.model.0.conv" in err and "feature_extractor.encodec.* (81)" in err
    assert "backbone.convnext.*" in err and "head.out.*" in err


def test_vocos_checkpoint_is_refused_naming_its_keys(tmp_path, capsys):
    err = refused(tmp_path, capsys, RELEASE_CONFIG, vocos_state(), "does not fit")
    assert "feature_extractor.mel_spec.*" in err and "backbone.convnext.*" in err


def test_checkpoint_of_another_size_is_refused_naming_the_shapes(tmp_path, capsys):
    state = reference_model().state_dict()
    err = refused(tmp_path, capsys, {**RELEASE_CONFIG, "n_filters": 8}, state, "does not fit")
    assert "shape" in err


def test_untrained_codebooks_and_bad_configs_are_refused(tmp_path, capsys):
    state = reference_model().state_dict()
    untrained = {**state, "quantizer.vq.layers.1._codebook.inited": torch.zeros(1)}
    refused(tmp_path / "a", capsys, RELEASE_CONFIG, untrained, r"codebook\(s\) \[1\].*never initialised")
    config = {k: v for k, v in RELEASE_CONFIG.items() if k != "semantic_dimension"}
    refused(tmp_path / "b", capsys, config, state, "lacks .*semantic_dimension")
    refused(tmp_path / "c", capsys, {**RELEASE_CONFIG, "activation": "Snake"}, state, "Snake")
    refused(tmp_path / "d", capsys, {**RELEASE_CONFIG, "strides": 320}, state, "wrong type")
