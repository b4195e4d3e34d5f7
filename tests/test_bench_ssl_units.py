"""DASB's discrete SSL units (`ssl_kmeans`): k-means fitted on the training split over a local
transformers HuBERT/WavLM folder (random weights at a tiny size here), registered as a VoxTok codec
(voxtok.load, token files), encode only, and run through the benchmark with probes and the LM."""

import pytest
import torch

import voxtok
from bench_fixtures import bench, dirs  # noqa: F401  (the shared data dirs fixture)
from published_checkpoints import ssl_folder
from voxtok.bench.ssl_units import fit_ssl_kmeans
from voxtok.bench.systems import build_system
from voxtok.errors import BadConfigError, BadTokenFileError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.mark.parametrize("model", ["hubert", "wavlm"])
def test_units_are_the_nearest_centroid_of_the_full_models_hidden_states(tmp_path, model):
    import transformers as T

    folder = ssl_folder(tmp_path / model, model)
    wavs = [torch.randn(1, 8000) * 0.1 for _ in range(3)]
    codec = fit_ssl_kmeans(folder, [1, 2], k=8, wavs=wavs, iters=3)
    assert (codec.n_q, codec.codebook_size, codec.frame_rate) == (2, 8, 50)
    assert len(codec.encoder.encoder.layers) == 3  # layer 2 used: one more kept (pre-norm models)
    x = torch.randn(1, 1, 4000) * 0.1
    codes = codec.encode(x)
    assert codes.shape == (1, 2, 13)  # ceil(4000 / 320) frames
    # the same frames from the untruncated model, padded alike, give the same codes
    full = T.AutoModel.from_pretrained(folder).eval()
    left = (codec.receptive_field - codec.hop_length) // 2
    total = codec.hop_length * 12 + codec.receptive_field - 4000
    signal = x[0]
    if codec.normalize:
        signal = (signal - signal.mean()) / (signal.std(unbiased=False) + 1e-7)
    with torch.no_grad():
        hidden = full(torch.nn.functional.pad(signal, (left, total - left)), output_hidden_states=True).hidden_states
    for q, layer in enumerate([1, 2]):
        distances = torch.cdist(hidden[layer][0, :13], codec.centroids[q])
        assert torch.equal(codes[0, q], distances.argmin(-1))
    # batches with padding give the codes of each item alone
    batch = torch.cat([x, torch.nn.functional.pad(x[..., :2000], (0, 2000))])
    together = codec.encode(batch, torch.tensor([4000, 2000]))
    assert torch.equal(together[0], codes[0]) and torch.equal(together[1, :, :7], codec.encode(x[..., :2000])[0])


def test_units_are_a_voxtok_codec_without_a_decoder(tmp_path):
    folder = ssl_folder(tmp_path / "hubert")
    codec = fit_ssl_kmeans(folder, [2], k=4, wavs=[torch.randn(1, 6000) * 0.1], iters=2)
    codec.save_pretrained(tmp_path / "units")
    loaded = voxtok.load(tmp_path / "units")
    x = torch.randn(1, 1, 3200) * 0.1
    codes = loaded.encode(x)
    assert torch.equal(codes, codec.encode(x))
    with pytest.raises(BadConfigError, match="no decoder"):
        loaded.decode(codes)
    path = loaded.save_tokens(tmp_path / "a.vtk", codes[0], 3200)
    assert torch.equal(loaded.load_tokens(path)[0], codes[0])
    other = fit_ssl_kmeans(folder, [2], k=4, wavs=[torch.randn(1, 6000) * 0.1], iters=2)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(BadTokenFileError, match="checkpoint"):
        voxtok.load(tmp_path / "other").load_tokens(path)
    with pytest.raises(BadConfigError, match="at least 64 frames"):
        fit_ssl_kmeans(folder, [2], k=64, wavs=[torch.randn(1, 6000) * 0.1])
    with pytest.raises(BadConfigError, match="layer 5 outside 0..3"):
        fit_ssl_kmeans(folder, [5], k=4, wavs=[])


def test_units_in_the_benchmark(tmp_path, dirs):  # noqa: F811
    folder = ssl_folder(tmp_path / "hubert")
    spec = f"ssl_kmeans:{folder}@layer=1+3@k=8@iters=3"
    row = bench(tmp_path, dirs, spec)
    assert row["notes"] == "tokens only (no decoder): reconstruction metrics skipped"
    assert "stoi" not in row and row["n_q"] == 2 and row["codebook_size"] == 8
    assert row["kbps"] == pytest.approx(2 * 50 * 3 / 1000, rel=0.1)
    for key in ("usage", "probe_wer", "probe_spk_acc", "lm_ppl"):
        assert key in row, key
    fitted = list((tmp_path / "bench" / "cache" / "fitted").iterdir())
    assert len(fitted) == 1 and (fitted[0] / "metadata.json").is_file()
    stamp = (fitted[0] / "model.safetensors").stat().st_mtime_ns
    again = bench(tmp_path, dirs, spec)  # the fit is cached: nothing refitted, same results
    assert (fitted[0] / "model.safetensors").stat().st_mtime_ns == stamp and again["usage"] == row["usage"]
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "reconstruction metrics skipped" in report
    test, train = dirs
    with pytest.raises(BadConfigError, match="train_dir"):
        bench(tmp_path / "no_train", (test, None), spec, train_dir=None)
    with pytest.raises(BadConfigError, match="layer option"):
        build_system(f"ssl_kmeans:{folder}@k=8")
