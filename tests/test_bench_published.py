"""Published tokenizers in the benchmark, each loaded through its official package (or transformers)
from a checkpoint the test builds with random weights at a small size with the package's own
model/config classes and saves in the package's own layout, then run through the benchmark runner
on two utterances (reconstruction, token statistics, minimal probes and token LM).
Also: the spec syntax of the new kinds, and a wrong checkpoint for each kind is a one-line error."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import espeak_speech
from test_bench_report import _data_dir
from voxtok.bench import runner
from voxtok.bench.lm import LMConfig
from voxtok.bench.probes import ProbeConfig
from voxtok.bench.systems import build_system, parse_spec
from voxtok.errors import BadConfigError

pytestmark = [pytest.mark.filterwarnings("ignore:.*weight_norm.* is deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
RATE = 16000


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(test dir: 2 utterances, train dir: 2 speakers x 2 utterances), 1.2 s of 16 kHz speech each."""
    root = tmp_path_factory.mktemp("published_data")
    test = [("a_t", "a", "en-us", "the garden is green today"), ("b_t", "b", "en-gb", "a quiet garden at night")]
    train = [(f"{s}_{i}", s, v, t) for s, v in (("a", "en-us"), ("b", "en-gb"))
             for i, t in enumerate(["the green garden was quiet", "a green and quiet garden"])]
    speak = lambda text, voice: espeak_speech(text, voice, RATE, seconds=1.2)  # noqa: E731
    return _data_dir(root / "test", test, speak, RATE), _data_dir(root / "train", train, speak, RATE)


def bench(tmp_path, dirs, spec: str, metrics=("stoi", "mel_distance"), **changes) -> dict:
    """One system through `runner.run_benchmark`; returns its row (asserted ok)."""
    test, train = dirs
    cfg = dict(test_dir=str(test), train_dir=str(train), out_dir=str(tmp_path / "bench"), systems=[spec], asr=False,
               metrics=list(metrics), swuggy_words=0, num_samples=1, threads=1, progress=False,
               probe=ProbeConfig(dim=8, attention_hidden=8, lstm_hidden=8, lstm_layers=1, conv_channels=8,
                                 asr_steps=2, speaker_steps=2, batch_size=2),
               lm_model=LMConfig(dim=8, layers=1, heads=2, context=16, steps=2, batch_size=2))
    cfg.update(changes)
    (row,) = runner.run_benchmark(runner.BenchConfig(**cfg))
    assert row["status"] == "ok", row.get("error")
    return row


def check_token_row(row: dict, n_q: int, frame_rate: float) -> None:
    """A decoding token system's row: measured bitrate = the codes it made, probes and LM ran."""
    assert row["n_q"] == n_q
    assert row["frames_per_s"] == pytest.approx(frame_rate, rel=0.1)
    assert row["kbps"] == pytest.approx(row["token_bits_per_s"] / 1000, rel=0.05)
    for key in ("stoi", "mel_distance", "usage", "probe_wer", "probe_spk_acc", "lm_ppl"):
        assert np.isfinite(row[key]), key


def first_line_error(fn, match: str) -> None:
    with pytest.raises(BadConfigError, match=match) as err:
        fn()
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- spec syntax


def test_spec_syntax_of_the_published_kinds():
    spec = parse_spec("ssl_kmeans:ckpt/hubert@layer=6@k=500")
    assert spec.options == {"layer": "6", "k": "500"} and spec.name == "ssl_kmeans:hubert@L6@k500"
    assert parse_spec("ssl_kmeans:h@layer=3+7,k=8,name=units").name == "units"
    assert parse_spec("hf:ckpt/mimi@n_q=8").options == {"n_q": "8"}
    for bad in ("snac:x@n_q=2", "mimi", "ssl_kmeans:x@layer=", "hf:x@codebooks=2"):
        with pytest.raises(BadConfigError):
            parse_spec(bad)


# ----------------------------------------------------------------------------- packages


def test_encodec_package(tmp_path, dirs):
    from encodec import EncodecModel

    # The package offers only its two published architectures, so the 24 kHz model at full size.
    ckpt = tmp_path / "encodec_24khz-test.th"
    torch.manual_seed(0)
    torch.save(EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), ckpt)
    row = bench(tmp_path, dirs, f"encodec:{ckpt}@bw=1.5")
    check_token_row(row, 2, 75)
    assert row["kbps"] == pytest.approx(1.5, rel=0.05)


def test_dac_package(tmp_path, dirs):
    dac = pytest.importorskip("dac", reason="the published extra (descript-audio-codec) is not installed")
    torch.manual_seed(0)
    model = dac.DAC(encoder_dim=4, encoder_rates=[4, 8], latent_dim=16, decoder_dim=16, decoder_rates=[8, 4],
                    n_codebooks=3, codebook_size=16, codebook_dim=4, sample_rate=RATE)
    ckpt = model.save(str(tmp_path / "weights_16khz.pth"), package=False)  # DAC's release layout
    row = bench(tmp_path, dirs, f"dac:{ckpt}@n_q=2")
    check_token_row(row, 2, RATE / 32)
    # the codes are the package's own
    wav = torch.from_numpy(espeak_speech("a test", seconds=0.5))[None]
    system = build_system(f"dac:{ckpt}@n_q=2")
    with torch.no_grad():
        reference = model.eval().encode(model.preprocess(wav[None], RATE), n_quantizers=2)[1][0, :2]
    assert torch.equal(system.encode(wav)[0], reference)
    first_line_error(lambda: build_system(f"dac:{ckpt}@n_q=4"), "n_q=4 outside 1..3")
    torch.save({"state_dict": {}, "metadata": {"kwargs": {"n_codebooks": 3}}}, tmp_path / "empty.pth")
    first_line_error(lambda: build_system(f"dac:{tmp_path / 'empty.pth'}"), "not a DAC checkpoint")


SPEECHTOKENIZER = {"n_filters": 4, "strides": [8, 5, 4, 2], "dimension": 16, "semantic_dimension": 12,
                   "bidirectional": True, "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1,
                   "lstm_layers": 2, "activation": "ELU", "codebook_size": 32, "n_q": 4, "sample_rate": RATE}


def speechtokenizer_release(folder: Path, config=SPEECHTOKENIZER) -> Path:
    """config.json + SpeechTokenizer.pt as the release ships them (random weights)."""
    speechtokenizer = pytest.importorskip("speechtokenizer")
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(speechtokenizer.SpeechTokenizer(config).state_dict(), folder / "SpeechTokenizer.pt")
    return folder


def test_speechtokenizer_package(tmp_path, dirs):
    folder = speechtokenizer_release(tmp_path / "speechtokenizer")
    row = bench(tmp_path, dirs, f"speechtokenizer:{folder}@n_q=2")
    check_token_row(row, 2, 50)
    assert row["kbps"] == pytest.approx(2 * 50 * 5 / 1000, rel=0.05)
    (folder / "config.json").write_text(json.dumps({**SPEECHTOKENIZER, "dimension": 8}))
    first_line_error(lambda: build_system(f"speechtokenizer:{folder}"), "not a SpeechTokenizer checkpoint")
    (folder / "config.json").unlink()
    first_line_error(lambda: build_system(f"speechtokenizer:{folder}"), "config.json not found")


SNAC = dict(sampling_rate=RATE, encoder_dim=4, encoder_rates=[2, 4], decoder_dim=16, decoder_rates=[4, 2],
            attn_window_size=None, codebook_size=16, codebook_dim=4, vq_strides=[4, 2, 1], noise=True, depthwise=True)


def snac_folder(folder: Path) -> Path:
    """config.json + pytorch_model.bin as SNAC's hub folders hold them (random weights)."""
    snac = pytest.importorskip("snac", reason="the published extra (snac) is not installed")
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(SNAC))
    torch.save(snac.SNAC(**SNAC).state_dict(), folder / "pytorch_model.bin")
    return folder


def test_snac_package_and_its_multi_rate_codes(tmp_path, dirs):
    import snac

    folder = snac_folder(tmp_path / "snac")
    row = bench(tmp_path, dirs, f"snac:{folder}")
    check_token_row(row, 7, RATE / 8 / 4)  # 1 + 2 + 4 rows at the coarsest rate
    # rows hold every code of the three rates, and decode as the package decodes its own lists
    model = snac.SNAC.from_pretrained(str(folder))
    system = build_system(f"snac:{folder}")
    wav = torch.from_numpy(espeak_speech("a test", seconds=0.5))[None]
    codes, _ = system.encode(wav)
    with torch.no_grad():
        levels = model.encode(wav[None])
        assert sorted(codes.reshape(-1).tolist()) == sorted(torch.cat([c.reshape(-1) for c in levels]).tolist())
        torch.manual_seed(1)  # SNAC's decoder adds noise
        reference = model.decode(levels).reshape(-1)[: wav.shape[-1]]
    torch.manual_seed(1)
    assert torch.equal(system.decode(codes, None, wav.shape[-1]), reference)
    assert torch.equal(codes[0], levels[0][0]) and torch.equal(codes[1:3].t().reshape(-1), levels[1][0])


# ----------------------------------------------------------------------------- transformers


def hf_configs():
    import transformers as T

    return {
        "encodec": (T.EncodecConfig(num_filters=4, upsampling_ratios=[4, 4], hidden_size=16, codebook_size=16,
                                    target_bandwidths=[4.0, 8.0], sampling_rate=RATE, num_lstm_layers=1), "bw=8", 2),
        "dac": (T.DacConfig(encoder_hidden_size=4, downsampling_ratios=[4, 8], decoder_hidden_size=16,
                            upsampling_ratios=[8, 4], n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=16,
                            sampling_rate=RATE), "n_q=2", 2),
        "mimi": (T.MimiConfig(hidden_size=16, num_filters=4, upsampling_ratios=[4, 4, 5, 4], codebook_size=16,
                              codebook_dim=8, num_quantizers=4, num_semantic_quantizers=1, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=2, head_dim=8, intermediate_size=16,
                              upsample_groups=16, vector_quantization_hidden_dimension=8, sampling_rate=RATE,
                              frame_rate=12.5), "n_q=3", 3),
        "xcodec": (T.XcodecConfig(
            acoustic_model_config=dict(encoder_hidden_size=4, downsampling_ratios=[8, 5, 4, 2], decoder_hidden_size=16,
                                       upsampling_ratios=[8, 5, 4, 2], hidden_size=8, codebook_size=16, n_codebooks=2,
                                       codebook_dim=4),
            semantic_model_config=dict(model_type="hubert", hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16, conv_dim=(4,) * 7, num_conv_pos_embeddings=8,
                                       num_conv_pos_embedding_groups=2),
            codebook_size=16, target_bandwidths=[0.2, 0.4]), "bw=0.4", 2),
    }


def hf_folder(folder: Path, model_type: str) -> Path:
    """A transformers codec with random weights, saved with save_pretrained (+ its feature extractor)."""
    import transformers as T

    config = hf_configs()[model_type][0]
    torch.manual_seed(0)
    T.AutoModel.from_config(config).save_pretrained(folder)
    if model_type in ("encodec", "mimi"):
        T.EncodecFeatureExtractor(feature_size=1, sampling_rate=RATE).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ["encodec", "dac", "mimi", "xcodec"])
def test_transformers_codecs(tmp_path, dirs, model_type):
    config, option, n_q = hf_configs()[model_type]
    folder = hf_folder(tmp_path / model_type, model_type)
    kind = "mimi" if model_type == "mimi" else "hf"
    row = bench(tmp_path, dirs, f"{kind}:{folder}@{option}")
    check_token_row(row, n_q, config.frame_rate)
    assert row["notes"].startswith("transformers ")


def test_transformers_folders_that_do_not_fit_are_refused(tmp_path):
    import transformers as T

    folder = hf_folder(tmp_path / "dac", "dac")
    first_line_error(lambda: build_system(f"mimi:{folder}"), "needs a mimi model")
    first_line_error(lambda: build_system(f"hf:{folder}@bw=6"), "takes n_q, not bw")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_codebooks": 4}))  # one codebook more than saved
    first_line_error(lambda: build_system(f"hf:{folder}"), "weights do not fit config.json")
    T.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                 vocab_size=10).save_pretrained(tmp_path / "bert")
    T.BertModel(T.BertConfig.from_pretrained(tmp_path / "bert")).save_pretrained(tmp_path / "bert")
    first_line_error(lambda: build_system(f"hf:{tmp_path / 'bert'}"), "not an audio codec")
    first_line_error(lambda: build_system(f"hf:{tmp_path / 'nothing'}"), "no config.json")
