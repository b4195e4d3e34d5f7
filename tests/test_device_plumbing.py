"""--device / --dtype on the inference CLIs (tts synth / speakers, asr transcribe), the demo and the recipe
stages: the CPU path runs in bfloat16 with finite float32 outputs, and a GPU this machine lacks is a
one-line error (exit 2 for the CLIs) raised before any model loads and before anything is written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from hydra import compose, initialize_config_dir

from voxtok import cli
from voxtok.audio import save_audio
from voxtok.device import precision
from voxtok.errors import BadConfigError
from voxtok.recipes import CONFIG_DIR
from voxtok.registry import build

sys.path.insert(0, str(Path(__file__).parent))
from tts_fixtures import save_cosyvoice_exp, tiny_tts_parts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")


def one_line_gpu_error(text: str) -> None:
    """The CLI's stderr is exactly one line saying that the GPU is missing."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0], text


def codec_config(name: str) -> tuple[str, dict]:
    full = yaml.safe_load((CONFIG_DIR / "codec" / f"{name}.yaml").read_text())
    model = full["model"]
    for teacher in (model.get("distill") or {}).values():  # DM-Codec: the teacher width comes from its stores
        if isinstance(teacher, dict) and teacher.get("dim") is None:
            teacher["dim"] = 32
    return full["name"], model


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    """A recipe exp dir with a tiny random-weight CosyVoice-style pipeline (tts/cosyvoice.yaml, s3/model)."""
    root = tmp_path_factory.mktemp("device")
    save_cosyvoice_exp(tiny_tts_parts(root / "spk"), root / "exp")
    return root / "exp"


@pytest.fixture(scope="module")
def prompt_wav(exp, speech) -> Path:
    return save_audio(exp.parent / "prompt.wav", speech[:16000], 16000)


def no_model_loads(monkeypatch) -> None:
    """Any checkpoint read from here on fails the test: the device check must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the device was checked")

    monkeypatch.setattr("voxtok.registry.load", refuse)


# ----------------------------------------------------------------------------- the speed path: codecs in bfloat16


@pytest.mark.parametrize("name", ["wavtokenizer_tiny", "rvq_tiny", "dmcodec_lm_tiny"])
def test_codec_decode_under_bfloat16_autocast_on_cpu_is_close_to_float32(name):
    kind, config = codec_config(name)
    torch.manual_seed(0)
    codec = build("codec", kind, config).eval()
    wav = 0.1 * torch.randn(1, 1, codec.sample_rate // 2)
    with torch.inference_mode():
        codes = codec.encode(wav)
        reference = codec.decode(codes, wav.shape[-1])
        with precision("cpu", torch.bfloat16):
            fast_codes = codec.encode(wav)
            audio = codec.decode(codes, wav.shape[-1])
    assert audio.dtype is torch.float32 and audio.shape == reference.shape and torch.isfinite(audio).all()
    # bfloat16 keeps 8 bits of mantissa: a percent-level error, nowhere near the signal itself.
    assert float((audio - reference).norm() / reference.norm()) < 0.05
    assert float((fast_codes == codes).float().mean()) > 0.9  # quantizer distances stay float32


def test_s3_tokens_under_bfloat16_autocast_on_cpu(speech):
    kind, config = codec_config("s3_tiny")
    torch.manual_seed(0)
    s3 = build("codec", kind, config).eval()
    wav = torch.from_numpy(speech).reshape(1, 1, -1)
    with torch.inference_mode():
        codes = s3.encode(wav)
        with precision("cpu", torch.bfloat16):
            fast = s3.encode(wav)
            text = s3.transcribe(wav)
    assert float((fast == codes).float().mean()) > 0.9 and isinstance(text[0], str)


# ----------------------------------------------------------------------------- the TTS pipeline


def test_pipeline_moves_once_and_synthesizes_in_bfloat16(exp, prompt_wav):
    from voxtok.audio import load_audio
    from voxtok.registry import load

    pipe = load(exp / "tts" / "cosyvoice.yaml", map_location="cpu", kind="pipeline")
    assert set(pipe.parts()) == {"llm", "flow", "vocoder", "tokenizer"} and pipe.device == torch.device("cpu")
    assert pipe.to("cpu", "bfloat16") is pipe and pipe.dtype is torch.bfloat16
    wav, sr = load_audio(prompt_wav, None)
    prompt = pipe.prepare_prompt(wav, sr, "hello there")
    assert prompt.mel.dtype is torch.float32 and prompt.tokens.dtype is torch.long
    audio = pipe.synthesize("hello world", prompt, "zero_shot", seed=0, n_steps=2)
    assert audio.dtype is torch.float32 and audio.device.type == "cpu" and audio.shape[-1] > 0
    assert torch.isfinite(audio).all()
    chunks = []
    for chunk in pipe.stream("hello world", prompt, "zero_shot", seed=0, n_steps=2):
        assert not torch.is_autocast_enabled("cpu")  # autocast covers the steps, not the consumer
        chunks.append(chunk)
    assert all(c.dtype is torch.float32 for c in chunks) and torch.isfinite(torch.cat(chunks)).all()
    stored = pipe.synthesize("hi", None, "sft", speaker="spk1", seed=0, n_steps=2)
    assert stored.dtype is torch.float32 and torch.isfinite(stored).all()
    pipe.to(dtype="float32")
    assert pipe.dtype is torch.float32 and not any(p.dtype != torch.float32 for p in pipe.llm.parameters())


@NO_GPU
def test_pipeline_to_a_missing_gpu_is_one_line_and_moves_nothing(exp):
    from voxtok.registry import load

    pipe = load(exp / "tts" / "cosyvoice.yaml", kind="pipeline")
    with pytest.raises(BadConfigError, match="no CUDA GPU") as err:
        pipe.to("cuda:1", "bfloat16")
    assert "\n" not in str(err.value) and pipe.dtype is torch.float32 and pipe.device.type == "cpu"
    with pytest.raises(BadConfigError, match="no CUDA GPU"):
        load(exp / "s3" / "model", map_location="cuda")


# ----------------------------------------------------------------------------- the CLIs


def test_tts_cli_runs_on_cpu_in_bfloat16(exp, prompt_wav, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert cli.main(["tts", "synth", "--exp", str(exp), "--text", "hello there", "--prompt-wav", str(prompt_wav),
                     "--prompt-text", "what the reference says", "--steps", "2", "--device", "cpu",
                     "--dtype", "bfloat16", "--stream", "-o", str(out)]) == 0
    audio, sr = sf.read(out)
    assert sr == 22050 and len(audio) > 0 and np.isfinite(audio).all()
    capsys.readouterr()
    assert cli.main(["tts", "speakers", "--exp", str(exp), "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert capsys.readouterr().out.split() == ["spk1"]


def test_asr_cli_runs_on_cpu_in_bfloat16(exp, prompt_wav, capsys):
    assert cli.main(["asr", "transcribe", str(prompt_wav), "--model", str(exp / "s3" / "model"),
                     "--device", "cpu", "--dtype", "bfloat16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prompt\t")


@NO_GPU
@pytest.mark.parametrize("command", ["synth", "speakers", "asr", "bench"])
def test_cli_with_a_missing_gpu_exits_2_in_one_line_before_loading(command, exp, prompt_wav, tmp_path, monkeypatch,
                                                                   capsys):
    no_model_loads(monkeypatch)
    out = tmp_path / "out.wav"
    args = {"synth": ["tts", "synth", "--exp", str(exp), "--text", "hi", "--mode", "sft", "--speaker", "spk1",
                      "-o", str(out)],
            "speakers": ["tts", "speakers", "--exp", str(exp)],
            "asr": ["asr", "transcribe", str(prompt_wav), "--model", str(exp / "s3" / "model")],
            "bench": ["bench", "run", "--data", str(tmp_path), "--systems", f"vtk:{exp / 's3' / 'model'}",
                      "-o", str(tmp_path / "bench")]}[command]
    assert cli.main([*args, "--device", "cuda", "--dtype", "bfloat16"]) == 2
    captured = capsys.readouterr()
    one_line_gpu_error(captured.err)
    assert captured.out == "" and not out.exists() and not (tmp_path / "bench").exists()


def test_cli_refuses_an_unknown_dtype(exp, capsys):
    with pytest.raises(SystemExit):
        cli.main(["tts", "speakers", "--exp", str(exp), "--dtype", "int8"])
    assert "invalid choice: 'int8'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the demo


def demo_app():
    spec = importlib.util.spec_from_file_location("voxtok_demo_app", ROOT / "demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def test_demo_places_its_models_on_the_device(exp, prompt_wav, tmp_path):
    from voxtok.demo import DemoBackend

    args = demo_app().parse_args(["--exp", str(exp), "--device", "cpu", "--dtype", "bfloat16"])
    assert (args.device, args.dtype) == ("cpu", "bfloat16")
    backend = DemoBackend(args.exp, work_dir=tmp_path / "out", device=args.device, dtype=args.dtype)
    pipe = backend.pipeline("cosyvoice")
    assert pipe.device == torch.device("cpu") and pipe.dtype is torch.bfloat16
    outcome = backend.clone("hello", None, None, "cosyvoice", "sft", speaker="spk1", n_steps=2)
    assert outcome.ok, outcome.message
    audio, _ = sf.read(outcome.get("audio"))
    assert np.isfinite(audio).all() and len(audio) > 0
    roundtrip = backend.codec_roundtrip(str(prompt_wav), "s3")  # S3: tokens only, with a warning
    assert roundtrip.warning and Path(roundtrip.get("tokens")).is_file()


@NO_GPU
def test_demo_with_a_missing_gpu_stops_in_one_line(exp, tmp_path, capsys):
    from voxtok.demo import DemoBackend

    with pytest.raises(BadConfigError, match="no CUDA GPU"):
        DemoBackend(exp, work_dir=tmp_path / "out", device="cuda")
    assert not (tmp_path / "out").exists()
    assert demo_app().main(["--exp", str(exp), "--device", "cuda"]) == 2
    one_line_gpu_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------- the recipe stages


def recipe_config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, speech) -> Path:
    """Two transcribed utterances of espeak speech at 16 kHz, one speaker each."""
    root = tmp_path_factory.mktemp("data")
    utts = {"a_u1": speech, "b_u2": speech[::-1].copy()}
    for utt, wav in utts.items():
        save_audio(root / f"{utt}.wav", wav, 16000)
    d = root / "data"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u in utts))
    (d / "text").write_text("a_u1 she sells sea shells\nb_u2 the quick brown fox\n")
    (d / "utt2spk").write_text("a_u1 a\nb_u2 b\n")
    (d / "spk2utt").write_text("a a_u1\nb b_u2\n")
    return d


def test_every_stage_config_has_device_and_dtype_defaulting_to_cpu_float32():
    for name in ("speaker_embeddings", "eval_codec", "eval_s3", "eval_tts"):
        cfg = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
        assert (cfg["device"], cfg["dtype"]) == ("cpu", "float32"), name
    teachers = yaml.safe_load((CONFIG_DIR / "extract_teachers.yaml").read_text())
    assert (teachers["device"], teachers["compute_dtype"]) == ("cpu", "float32")  # `dtype` is the stores' format


def test_eval_codec_runs_in_bfloat16(data_dir, tmp_path):
    from voxtok.recipes.eval_codec import evaluate

    kind, config = codec_config("wavtokenizer_tiny")
    build("codec", kind, config).save_pretrained(tmp_path / "model")
    rows = evaluate(recipe_config("eval_codec", f"model={tmp_path / 'model'}", f"test_dir={data_dir}",
                                  f"out_dir={tmp_path / 'eval'}", "baselines=[]", "max_utts=1", "num_samples=1",
                                  "device=cpu", "dtype=bfloat16"))
    assert len(rows) == 1 and all(np.isfinite(rows[0][k]) for k in ("mel_distance", "stoi", "rtf"))
    saved, _ = sf.read(next((tmp_path / "eval" / "samples" / "wavtokenizer").glob("*.wav")))
    assert np.isfinite(saved).all()


def test_eval_s3_runs_in_bfloat16(exp, data_dir, tmp_path):
    from voxtok.recipes.eval_s3 import evaluate

    summary = evaluate(recipe_config("eval_s3", f"model={exp / 's3' / 'model'}", f"test_dir={data_dir}",
                                     f"out_dir={tmp_path / 'eval'}", "dtype=bfloat16"))
    assert summary["cer"] >= 0 and 0 < summary["usage"] <= 1


def test_speaker_embeddings_run_in_bfloat16_close_to_float32(data_dir, tmp_path):
    from voxtok.tts.speaker import compute_embeddings, load_embeddings

    compute_embeddings(data_dir, tmp_path / "f32", progress=False)
    compute_embeddings(data_dir, tmp_path / "bf16", progress=False, dtype="bfloat16")
    full, fast = load_embeddings(tmp_path / "f32").utt2embedding, load_embeddings(tmp_path / "bf16").utt2embedding
    for utt in ("a_u1", "b_u2"):
        assert fast[utt].dtype == np.float32 and float(full[utt] @ fast[utt]) > 0.99


def test_extract_teachers_run_in_bfloat16_close_to_float32(data_dir, tmp_path):
    from voxtok.data.shards import ShardStore
    from voxtok.recipes.extract_teachers import ExtractSettings, run

    def extract(out: str, *overrides: str):
        cfg = recipe_config("extract_teachers", f"data_dir={data_dir}", f"out_dir={tmp_path / out}", "splits=null",
                            "nj=1", "dtype=float32", *overrides)
        run(cfg)
        return ExtractSettings.from_config(cfg), ShardStore(tmp_path / out / "lm")

    _, full = extract("f32")
    settings, fast = extract("bf16", "compute_dtype=bf16")
    assert (settings.device, settings.compute_dtype, settings.dtype) == ("cpu", "bfloat16", "float32")
    a, b = full["a_u1"], fast["a_u1"]
    assert b.dtype == np.float32 and a.shape == b.shape and np.isfinite(b).all()
    assert float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99


@NO_GPU
def test_recipe_stages_with_a_missing_gpu_stop_before_loading(exp, data_dir, tmp_path, monkeypatch):
    from voxtok.bench.runner import BenchConfig
    from voxtok.recipes import eval_codec, eval_s3, eval_tts, extract_teachers
    from voxtok.tts.speaker import compute_embeddings

    no_model_loads(monkeypatch)
    monkeypatch.setattr(eval_codec, "load", lambda *a, **k: pytest.fail("eval_codec loaded its model"))
    monkeypatch.setattr(eval_s3, "load", lambda *a, **k: pytest.fail("eval_s3 loaded its model"))
    out = tmp_path / "out"
    stages = [
        lambda: eval_codec.evaluate(recipe_config("eval_codec", "model=m", f"test_dir={data_dir}", f"out_dir={out}",
                                                  "device=cuda")),
        lambda: eval_s3.evaluate(recipe_config("eval_s3", "model=m", f"test_dir={data_dir}", f"out_dir={out}",
                                               "device=cuda:0")),
        lambda: eval_tts.score_systems({"test_dir": str(data_dir), "prompts": "p", "systems": {}, "device": "cuda"}),
        lambda: extract_teachers.run(recipe_config("extract_teachers", f"data_dir={data_dir}", f"out_dir={out}",
                                                   "splits=null", "device=cuda")),
        lambda: compute_embeddings(data_dir, out, device="cuda", progress=False),
        lambda: BenchConfig(test_dir=str(data_dir), out_dir=str(out), systems=["identity"], device="cuda").check(),
    ]
    for stage in stages:
        with pytest.raises(BadConfigError, match="no CUDA GPU") as err:
            stage()
        assert "\n" not in str(err.value)
    assert not out.exists()


def test_bench_device_goes_through_the_resolver(tmp_path):
    from voxtok.bench.runner import BenchConfig

    cfg = BenchConfig(test_dir="t", out_dir=str(tmp_path), systems=["identity"], device="auto")
    cfg.check()
    assert cfg.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BadConfigError, match="unknown device"):
        BenchConfig(test_dir="t", out_dir=str(tmp_path), systems=["identity"], device="tpu").check()
