"""DM-Codec's `shared_head` and `voxtok convert dmcodec`.

The DM-Codec repository (github.com/mubtasimahasan/DM-Codec, commit 25c742ad5f4e, read 2026-12) trains
SpeechTokenizer's model unchanged: its codec/model.py, modules/ and quantization/ are the
`speechtokenizer` package's files with the class renamed `Model` (checked with diff), and one
`transform` is scored against both the LM and the speech teacher. Its trainer saves the generator's
state_dict as Model_best_dev.pt and a training package {generator, discriminators, optim_g, optim_d,
scheduler_g, scheduler_d, best_dev_mel_loss} as ModelTrainer_*.pt. The reference model here is
therefore built by the PyPI `speechtokenizer` package (as in test_convert_speechtokenizer.py, reduced
size, random weights, fitted codebooks) and saved in both of those layouts; nothing of the
repository is committed.
"""

import json
from pathlib import Path

import pytest
import torch
import yaml
from speechtokenizer_fixtures import RELEASE_CONFIG, audio, reference_model, within_tolerance

import voxtok
from voxtok.cli import main
from voxtok.codecs.dmcodec import SHARED_HEAD
from voxtok.convert.dmcodec import convert_dmcodec
from voxtok.errors import BadConfigError
from voxtok.registry import build

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.* is deprecated:FutureWarning")

TINY = {"sample_rate": 16000,
        "encoder": {"dimension": 16, "n_filters": 4, "ratios": [8, 5, 4, 2], "lstm_layers": 1, "bidirectional": True},
        "decoder": {"dimension": 16, "n_filters": 4, "ratios": [8, 5, 4, 2], "lstm_layers": 1},
        "quantizer": {"kind": "rvq", "n_q": 2, "codebook_size": 16},
        "distill": {"lm": {"dim": 12}, "sm": {"dim": 12}}}


def tiny(name="dmcodec", **changes):
    return build("codec", name, {**TINY, **changes})


# ----------------------------------------------------------------------------- shared_head


def test_shared_head_is_one_projection_scored_against_both_teachers(tmp_path):
    torch.manual_seed(0)
    separate, shared = tiny(), tiny(shared_head=True)
    assert sorted(separate.heads) == ["lm", "sm"] and sorted(shared.heads) == [SHARED_HEAD]
    count = lambda codec: sum(p.numel() for p in codec.parameters())  # noqa: E731
    assert count(separate) - count(shared) == 16 * 12 + 12
    shared.train()
    wav, teachers = audio(2, 3200), {"lm": torch.randn(2, 10, 12), "sm": torch.randn(2, 10, 12)}
    out = shared.training_forward(wav, step=10**6, **teachers)
    assert {"distill_lm", "distill_sm"} <= set(out.losses)
    (out.losses["distill_lm"] + out.losses["distill_sm"]).backward()
    assert shared.heads[SHARED_HEAD].weight.grad.abs().sum() > 0
    q = out.quantizer
    assert torch.equal(shared.project(q, "lm"), shared.project(q, "sm"))
    loaded = voxtok.load(shared.save_pretrained(tmp_path / "shared"), kind="codec")
    assert loaded.shared_head and sorted(loaded.heads) == [SHARED_HEAD]


def test_shared_head_needs_every_teacher_at_one_width_and_layer():
    with pytest.raises(BadConfigError, match=r"model.shared_head needs every teacher at the same dim and layer "
                                             r"\(lm: dim 12, layer 1, sm: dim 10, layer 1\)"):
        tiny(shared_head=True, distill={"lm": {"dim": 12}, "sm": {"dim": 10}})
    with pytest.raises(BadConfigError, match="same dim and layer"):
        tiny(shared_head=True, distill={"lm": {"dim": 12}, "sm": {"dim": 12, "layer": 2}})
    with pytest.raises(BadConfigError, match="shared_head is on but distill names no teacher"):
        tiny(shared_head=True, distill=None)
    with pytest.raises(BadConfigError, match="shared_head' must be true or false, got 'no'"):
        tiny(shared_head="no")
    fuse = tiny("fusecodec", shared_head=True)  # FuseCodec's heads are DM-Codec's
    assert sorted(fuse.heads) == [SHARED_HEAD]


def test_the_paper_config_shares_its_head():
    model = yaml.safe_load((CONFIGS / "dmcodec_paper.yaml").read_text())["model"]
    assert model["shared_head"] is True and model["distill"]["lm"] == model["distill"]["sm"]


# ----------------------------------------------------------------------------- convert dmcodec


@pytest.fixture(scope="module")
def repository_checkpoints(tmp_path_factory):
    """(reference model, config.json, Model_best_dev.pt, ModelTrainer_00001000.pt) in the repository's layouts."""
    folder = tmp_path_factory.mktemp("dmcodec")
    model = reference_model(seed=3)
    config = folder / "config.json"
    config.write_text(json.dumps(RELEASE_CONFIG, indent=2))
    best = folder / "Model_best_dev.pt"
    torch.save(model.state_dict(), best)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    package = {"generator": model.state_dict(),
               "discriminators": {"mpd": {"convs.0.weight": torch.randn(4, 1, 5, 1)}},
               "optim_g": optim.state_dict(), "optim_d": optim.state_dict(),
               "scheduler_g": torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=10).state_dict(),
               "scheduler_d": {}, "best_dev_mel_loss": 1.5}
    trainer = folder / "ModelTrainer_00001000.pt"
    torch.save(package, trainer)
    return model, config, best, trainer


def convert_cli(config, checkpoint, out, *options):
    return main(["convert", "dmcodec", "--config", str(config), "--checkpoint", str(checkpoint), "-o", str(out),
                 *options])


def test_repository_checkpoints_convert_to_a_shared_head_dmcodec_matching_the_reference(repository_checkpoints,
                                                                                         tmp_path):
    reference, config, best, trainer = repository_checkpoints
    assert convert_cli(config, best, tmp_path / "best") == 0
    assert convert_cli(config, trainer, tmp_path / "trainer") == 0
    codec = voxtok.load(tmp_path / "best", kind="codec")
    assert voxtok.load(tmp_path / "trainer", kind="codec").checkpoint_hash == codec.checkpoint_hash
    assert codec.shared_head and codec.framing == "reference"
    assert {name: (t.dim, t.layer) for name, t in codec.targets.items()} == {"lm": (12, 1), "sm": (12, 1)}
    wav = audio(2, 11111, seed=5)
    with torch.no_grad():
        ref_codes = reference.encode(wav)
        codes = codec.encode(wav)
        assert codes.unique().numel() > 8 and torch.equal(codes, ref_codes.permute(1, 0, 2))
        assert within_tolerance(codec.decode(codes), reference.decode(ref_codes))
        _, _, feature = reference(wav)  # the one transform, scored against both teachers by the repository
        q = codec.quantizer(codec.inference_latent(wav))
        for teacher in ("lm", "sm"):
            assert within_tolerance(codec.project(q, teacher), feature)


def test_one_teacher_and_a_deeper_layer(repository_checkpoints, tmp_path):
    reference, config, best, _ = repository_checkpoints
    assert convert_cli(config, best, tmp_path / "lm", "--teachers", "lm", "--layer", "2") == 0
    codec = voxtok.load(tmp_path / "lm", kind="codec")
    assert not codec.shared_head and sorted(codec.heads) == ["lm"] and codec.targets["lm"].layer == 2
    wav = audio(1, 8000, seed=6)
    with torch.no_grad():
        _, _, feature = reference(wav, layers=[1])  # the repository's --layer 1 = RVQ-2
        assert within_tolerance(codec.project(codec.quantizer(codec.inference_latent(wav)), "lm"), feature)


@pytest.mark.parametrize("options, match", [
    (["--teachers", "lm,bert"], "--teachers must list some of lm, sm"),
    (["--layer", "9"], r"distill.lm.layer must be in 1..4"),
])
def test_bad_options_are_refused_in_one_line(repository_checkpoints, tmp_path, capsys, options, match):
    _, config, best, _ = repository_checkpoints
    assert convert_cli(config, best, tmp_path / "out", *options) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and not (tmp_path / "out").exists()


def test_a_package_without_generator_weights_is_refused(repository_checkpoints, tmp_path):
    _, config, _, _ = repository_checkpoints
    package = tmp_path / "ModelTrainer_only_optim.pt"
    torch.save({"optim_g": {"state": {}, "param_groups": []}, "best_dev_mel_loss": 1.0}, package)
    with pytest.raises(BadConfigError, match="not a DM-Codec checkpoint .* it holds no tensors"):
        convert_dmcodec(config, package, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [package.name]
