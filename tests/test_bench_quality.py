"""Quality predictors and choices of the benchmark: DNSMOS (speechmos, offline ONNX), UTMOS from a
local TorchScript file, the speaker encoder for speaker similarity (resemblyzer, a local WavLM
x-vector folder, CAM++'s hook), and the DASB probe preset (built at DASB's sizes, not trained)."""

import math

import numpy as np
import pytest
import torch

from bench_fixtures import noisy
from voxtok.bench import failures
from voxtok.bench import metrics as M
from voxtok.bench.report import write_report
from voxtok.bench.runner import BenchConfig
from voxtok.errors import BadConfigError

SR = 16000


def test_dnsmos_scores_clean_speech_above_noisy_speech(speech):
    pytest.importorskip("speechmos", reason="the published extra (speechmos) is not installed")
    clean = M.reconstruction_metrics(speech, speech, SR, which=["dnsmos"])
    dirty = M.reconstruction_metrics(speech, noisy(speech, 0.0), SR, which=["dnsmos"])
    assert set(clean) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}
    assert all(1.0 <= v <= 5.0 for v in clean.values())
    assert dirty["dnsmos_bak"] < clean["dnsmos_bak"] - 1 and dirty["dnsmos_ovrl"] < clean["dnsmos_ovrl"]
    failures.reset_metric_failures()
    with pytest.warns(RuntimeWarning, match="silent"):
        silent = M.reconstruction_metrics(speech, np.zeros_like(speech), SR, which=["dnsmos"])
    assert all(math.isnan(v) for v in silent.values()) and failures.metric_failures()["dnsmos_ovrl"] == 1
    assert M.metric_columns(["stoi", "dnsmos"]) == ["stoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"]


class ToyMOS(torch.nn.Module):
    """Stands in for UTMOS-PyTorch's scripted model: wav [B, T] at 16 kHz -> one score per item."""

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return 1.0 + 4.0 * torch.sigmoid(wav.abs().mean(-1) * 10)


def test_utmos_needs_a_local_checkpoint(tmp_path, speech):
    with pytest.raises(BadConfigError, match="UTMOS needs a local checkpoint"):
        M.MetricSettings().check(["utmos"])
    with pytest.raises(BadConfigError, match="not found"):
        M.MetricSettings(utmos_checkpoint=str(tmp_path / "missing.pt")).check(["utmos"])
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(BadConfigError, match="not a TorchScript UTMOS model"):
        M.MetricSettings(utmos_checkpoint=str(tmp_path / "junk.pt")).check(["utmos"])
    path = tmp_path / "utmos_scripted.pt"
    torch.jit.save(torch.jit.script(ToyMOS()), str(path))
    settings = M.MetricSettings(utmos_checkpoint=str(path))
    settings.check(["utmos"])
    score = M.reconstruction_metrics(speech, speech, SR, which=["utmos"], settings=settings)["utmos"]
    expected = float(ToyMOS()(torch.from_numpy(speech)[None]))
    assert score == pytest.approx(expected, abs=1e-5)


def test_speaker_encoder_choices(tmp_path, speech):
    import transformers as T

    for bad, match in (("ecapa", "unknown speaker encoder"), ("resemblyzer:x", "takes no path"),
                       ("wavlm", "needs a path"), ("campplus:cam.onnx", "CAM\\+\\+ speaker model not found"),
                       (f"wavlm:{tmp_path}", "no config.json")):
        with pytest.raises(BadConfigError, match=match):
            M.MetricSettings(speaker_encoder=bad).check(["speaker_similarity"])
    config = T.WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                           conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
                           tdnn_dim=(8, 8, 8, 8, 16), xvector_output_dim=8)
    torch.manual_seed(0)
    T.WavLMForXVector(config).save_pretrained(tmp_path / "wavlm_sv")
    T.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / "wavlm_sv")
    settings = M.MetricSettings(speaker_encoder=f"wavlm:{tmp_path / 'wavlm_sv'}")
    settings.check(["speaker_similarity"])
    same = M.reconstruction_metrics(speech, speech, SR, which=["speaker_similarity"], settings=settings)
    other = M.reconstruction_metrics(speech, noisy(speech, 0.0), SR, which=["speaker_similarity"], settings=settings)
    assert same["speaker_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= other["speaker_similarity"] < same["speaker_similarity"]


def test_dasb_probe_preset_has_dasbs_sizes_and_the_report_names_it(tmp_path):
    from voxtok.bench.probes import CTCProbe, SpeakerProbe, probe_preset

    cfg = probe_preset("dasb")
    asr = CTCProbe(2, 1024, cfg)
    assert asr.front.embed.table.embedding_dim == 1024 and asr.front.attend.score[0].out_features == 1024
    assert (asr.lstm.hidden_size, asr.lstm.num_layers, asr.lstm.bidirectional) == (1024, 2, True)
    assert asr.head.in_features == 2048
    spk = SpeakerProbe(2, 1024, 40, cfg)
    assert spk.encoder.first[0].out_channels == 1024 and spk.encoder.embed.out_features == 192
    assert [b.res2[0][0].dilation[0] for b in spk.encoder.blocks] == [2, 3, 4]
    assert spk.classify.weight.shape == (40, 192) and (spk.classify.margin, spk.classify.scale) == (0.2, 30.0)
    assert (cfg.asr_epochs, cfg.speaker_epochs, cfg.batch_size, cfg.asr_lr) == (20, 15, 16, 1e-4)
    assert cfg.steps("asr", 100) == 20 * 7 and probe_preset("quick").steps("asr", 100) == 600
    # the ECAPA probe runs (at a small width here)
    small = SpeakerProbe(2, 16, 3, probe_preset("dasb", dim=8, attention_hidden=8, conv_channels=16,
                                                    ecapa_embedding=4, ecapa_attention=4))
    logits = small(torch.randint(0, 16, (2, 2, 30)), torch.tensor([30, 20]), torch.tensor([0, 2]))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    # a Hydra config lists every quick value: the preset still wins, and changed values apply
    quick = probe_preset("quick").to_dict()
    bench = BenchConfig.from_mapping({"test_dir": "t", "out_dir": "o", "probe_preset": "dasb",
                                      "probe": {**quick, "asr_steps": 5}})
    assert bench.probe.lstm_hidden == 1024 and bench.probe.describe() == "dasb (modified: asr_steps)"
    with pytest.raises(BadConfigError, match="unknown probe preset"):
        probe_preset("superb")
    report = write_report([{"system": "x", "status": "ok", "kbps": 1.0}], tmp_path,
                          {"probe_preset": cfg.describe()})
    assert "- probe_preset: dasb" in report.read_text()
