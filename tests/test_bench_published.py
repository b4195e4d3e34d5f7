"""Published tokenizers in the benchmark, each loaded through its official package (or transformers)
from a checkpoint the test builds with random weights at a small size with the package's own
model/config classes and saves in the package's own layout, then run through the benchmark runner
on two utterances (reconstruction, token statistics, minimal probes and token LM).
Also: the spec syntax of the new kinds, and a wrong checkpoint for each kind is a one-line error."""

import json

import numpy as np
import pytest
import torch

from bench_fixtures import bench, dirs  # noqa: F401  (the shared data dirs fixture)
from conftest import espeak_speech
from published_checkpoints import RATE, SPEECHTOKENIZER, hf_configs, hf_folder, snac_folder, speechtokenizer_release
from voxtok.bench.systems import build_system, parse_spec
from voxtok.errors import BadConfigError

pytestmark = [pytest.mark.filterwarnings("ignore:.*weight_norm.* is deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


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


def test_speechtokenizer_package(tmp_path, dirs):
    folder = speechtokenizer_release(tmp_path / "speechtokenizer")
    row = bench(tmp_path, dirs, f"speechtokenizer:{folder}@n_q=2")
    check_token_row(row, 2, 50)
    assert row["kbps"] == pytest.approx(2 * 50 * 5 / 1000, rel=0.05)
    (folder / "config.json").write_text(json.dumps({**SPEECHTOKENIZER, "dimension": 8}))
    first_line_error(lambda: build_system(f"speechtokenizer:{folder}"), "not a SpeechTokenizer checkpoint")
    (folder / "config.json").unlink()
    first_line_error(lambda: build_system(f"speechtokenizer:{folder}"), "config.json not found")


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
