"""TTS pipelines as registered models: capability attributes and their one check, the manifest
(one reader, one writer, read once per load, strict keys), and the CLI / demo reading the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from voxtok.errors import BadConfigError
from voxtok.registry import load, registered
from voxtok.tts.cosyvoice import CosyVoicePipeline
from voxtok.tts.flowomni_pipeline import FlowOmniPipeline
from voxtok.tts.manifest import read_manifest, write_manifest
from voxtok.tts.pipeline import TTSPipeline

from tts_fixtures import save_cosyvoice_exp, save_flowomni_exp, tiny_flowomni, tiny_tts_parts


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    """An exp dir with tiny random CosyVoice-style and Flow-Omni pipelines (tts/*.yaml)."""
    root = tmp_path_factory.mktemp("pipelines")
    parts = tiny_tts_parts(root / "spk")
    save_cosyvoice_exp(parts, root / "exp")
    save_flowomni_exp(tiny_flowomni(parts.frontend), parts, root / "exp")
    return root / "exp"


def test_pipelines_are_registered_with_their_capabilities():
    pipelines = registered("pipeline")
    assert pipelines["cosyvoice"] is CosyVoicePipeline and pipelines["flowomni"] is FlowOmniPipeline
    assert (CosyVoicePipeline.label, CosyVoicePipeline.streaming, CosyVoicePipeline.cfg) == ("CosyVoice-style", True, True)
    # Flow-Omni's CFG is per instance (a model trained with condition dropout): the class says it can.
    assert (FlowOmniPipeline.label, FlowOmniPipeline.streaming, FlowOmniPipeline.cfg) == ("Flow-Omni", True, True)
    for cls in pipelines.values():
        assert cls.modes == ("zero_shot", "cross_lingual", "sft")
        assert (cls.min_prompt_seconds, cls.max_prompt_seconds) == (0.5, 30.0)


def test_one_check_refuses_what_a_pipeline_cannot_do():
    CosyVoicePipeline.check_options("zero_shot", streaming=True, cfg_strength=0.7)
    FlowOmniPipeline.check_options("sft", streaming=True, cfg_strength=0.0)

    class Whole(TTSPipeline):  # not registered: a pipeline that neither streams nor guides
        label = "Whole"

    with pytest.raises(BadConfigError, match="streaming is available with the CosyVoice-style or Flow-Omni model "
                                             "only; Whole synthesizes whole utterances"):
        Whole.check_options("zero_shot", streaming=True)
    with pytest.raises(BadConfigError, match="Whole has no classifier-free guidance"):
        Whole.check_options("zero_shot", cfg_strength=0.0)
    with pytest.raises(BadConfigError, match=r"unknown mode 'clone' \(choose from zero_shot, cross_lingual, sft\)"):
        CosyVoicePipeline.check_options("clone")


def test_manifest_round_trip_stores_relative_paths(tmp_path):
    (tmp_path / "exp" / "s3" / "model").mkdir(parents=True)
    spec = {"model": "cosyvoice", "llm": str(tmp_path / "exp" / "tts" / "llm" / "model"),
            "tokenizer": str(tmp_path / "exp" / "s3" / "model"), "speakers": str(tmp_path / "dump" / "spk")}
    path = write_manifest(tmp_path / "exp" / "tts" / "cosyvoice.yaml", spec)
    assert path.read_text() == "model: cosyvoice\nllm: llm/model\ntokenizer: ../s3/model\nspeakers: ../../dump/spk\n"
    assert [p.name for p in path.parent.iterdir()] == ["cosyvoice.yaml"]  # no temp file left behind
    back = read_manifest(path)
    assert dict(back) == {"model": "cosyvoice", "llm": str((tmp_path / "exp" / "tts" / "llm" / "model").resolve()),
                          "tokenizer": str((tmp_path / "exp" / "s3" / "model").resolve()),
                          "speakers": str((tmp_path / "dump" / "spk").resolve())}
    assert back.path == path


def test_bad_manifests_give_one_line_errors_naming_the_file(tmp_path, exp):
    with pytest.raises(BadConfigError, match="manifest not found"):
        read_manifest(tmp_path / "missing.yaml")
    no_model = tmp_path / "no_model.yaml"
    no_model.write_text("llm: a\n")
    with pytest.raises(BadConfigError, match="lacks `model:`"):
        read_manifest(no_model)
    spec = yaml.safe_load((exp / "tts" / "flowomni.yaml").read_text())
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**spec, "vocodr": spec["vocoder"]}))
    with pytest.raises(BadConfigError, match=r"typo.yaml: unknown config key 'manifest.vocodr' \(allowed: "):
        FlowOmniPipeline.check_manifest(read_manifest(typo))
    del spec["vocoder"]
    typo.write_text(yaml.safe_dump(spec))
    with pytest.raises(BadConfigError, match="flowomni manifest lacks vocoder"):
        FlowOmniPipeline.check_manifest(read_manifest(typo))
    with pytest.raises(BadConfigError, match="manifest is for 'flowomni', not cosyvoice"):
        CosyVoicePipeline.check_manifest(read_manifest(exp / "tts" / "flowomni.yaml"))


def test_load_reads_the_manifest_once_and_builds_the_pipeline(exp, monkeypatch):
    import voxtok.tts.manifest as manifest_module

    reads = []
    real_read = manifest_module.read_manifest
    monkeypatch.setattr(manifest_module, "read_manifest", lambda path: reads.append(path) or real_read(path))
    pipe = load(exp / "tts" / "cosyvoice.yaml")
    assert isinstance(pipe, CosyVoicePipeline) and pipe.registry_name == "cosyvoice" and len(reads) == 1
    assert pipe.speakers.ids() == ["spk1"] and pipe.sample_rate == pipe.vocoder.sample_rate
    flowomni = load(exp / "tts" / "flowomni.yaml", kind="pipeline")
    assert isinstance(flowomni, FlowOmniPipeline) and len(reads) == 2
    assert flowomni.cfg and sum(c.numel() for c in flowomni.stream("hi", None, "sft", "spk1", n_steps=2)) > 0


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxtok.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_manifest_cli_writes_what_the_recipe_wrote_with_printf(tmp_path):
    """run.sh's former printf lines, for exp/mini and dump/mini, give exactly these files."""
    tts, spk = "exp/mini/tts", "dump/mini/spk/train"
    done = _cli("tts", "manifest", "--model", "cosyvoice", "-o", f"{tts}/cosyvoice.yaml", f"llm={tts}/llm/model",
                f"flow={tts}/flow/model", f"vocoder={tts}/vocoder/model", "tokenizer=exp/mini/s3/model",
                f"speakers={spk}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / tts / "cosyvoice.yaml").read_text() == (
        "model: cosyvoice\nllm: llm/model\nflow: flow/model\nvocoder: vocoder/model\ntokenizer: ../s3/model\n"
        "speakers: ../../../dump/mini/spk/train\n")
    done = _cli("tts", "manifest", "--model", "flowomni", "-o", f"{tts}/flowomni.yaml", f"flowomni={tts}/flowomni/model",
                f"vocoder={tts}/vocoder/model", f"speakers={spk}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / tts / "flowomni.yaml").read_text() == (
        "model: flowomni\nflowomni: flowomni/model\nvocoder: vocoder/model\nspeakers: ../../../dump/mini/spk/train\n")


def test_manifest_cli_refuses_parts_the_pipeline_does_not_have(tmp_path, monkeypatch, capsys):
    from voxtok.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["tts", "manifest", "--model", "flowomni", "-o", "m.yaml", "flowomni=a", "vocoder=b", "llm=c"]) == 2
    assert "unknown config key 'manifest.llm'" in capsys.readouterr().err
    assert main(["tts", "manifest", "--model", "flowomni", "-o", "m.yaml", "vocoder"]) == 2
    assert "KEY=PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tts", "manifest", "--model", "nope", "-o", "m.yaml", "flowomni=a"])
    assert "choose from 'cosyvoice', 'flowomni'" in capsys.readouterr().err
    assert not (tmp_path / "m.yaml").exists()


def test_cli_reads_pipeline_names_from_the_registry_without_slowing_voxtok_help():
    code = ("import sys; from voxtok.cli import build_parser; p = build_parser(); t = 'torch' in sys.modules; "
            "a = p.parse_args(['tts', 'speakers', '--model', 'flowomni']); print(t, a.model)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "flowomni"], done.stderr
    help_text = " ".join(_cli("tts", "synth", "--help").stdout.split())
    assert "--model MODEL registered TTS pipeline: cosyvoice, flowomni" in help_text


def test_demo_reads_the_capabilities(exp, tmp_path):
    from voxtok.demo import DemoBackend, pipeline_class, tts_models

    assert tts_models() == {"cosyvoice": "CosyVoice-style", "flowomni": "Flow-Omni"}
    assert pipeline_class("Flow-Omni") is FlowOmniPipeline
    backend = DemoBackend(exp, work_dir=tmp_path / "out")
    outcome = backend.clone("hello", None, None, "flowomni", "sft", speaker="spk1", n_steps=2, streaming=True)
    assert outcome.ok and "first audio chunk after" in outcome.message
    outcome = backend.clone("hello", None, None, "flowomni", "sft", speaker="spk1", n_steps=2, cfg_strength=0.7)
    assert outcome.ok and "does not apply" not in outcome.message  # the tiny config trains with cond_dropout
    assert backend.pipeline("cosyvoice").registry_name == "cosyvoice"
    assert backend.stored_voices("flowomni") == ["spk1"]


def test_crossfade_of_the_same_audio_keeps_its_level():
    import torch

    from voxtok.tts.pipeline import crossfade

    x = torch.randn(1, 64)
    assert torch.allclose(crossfade(x, x), x, atol=1e-6)  # equal gain: no swell at the seam
    tail, head = torch.ones(32), torch.zeros(32)
    mixed = crossfade(tail, head)
    assert mixed[0] > 0.99 and mixed[-1] < 0.01 and bool((mixed[1:] <= mixed[:-1]).all())
