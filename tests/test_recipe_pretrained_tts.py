"""egs/libritts/run.sh --pretrained_tts DIR (a converted CosyVoice-300M folder), with and without --finetune.

The folder is the reduced random-weight conversion of tests/reduced_release_folder.py. The recipe runs in smoke
mode on the stages that concern the CosyVoice-style TTS (0 data, 1 speakers, 4 tokens, 9-10 fine-tuning,
11 synthesis; the codec, S3, teacher, vocoder and Flow-Omni stages are left out with --skip_stages), so
this checks the hand-over: CAM++ x-vectors from the folder's campplus.onnx, tokens from its S3 tokenizer,
LLM and flow fine-tuned from its weights, a manifest with the corpus's speakers, synthesized audio.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx", reason="exporting the stand-in ONNX models needs the onnx package")
pytest.importorskip("whisper", reason="the whisper_bpe text frontend needs openai-whisper")

from reduced_release_folder import convert_release, make_release  # noqa: E402
from recipe_copy import copy_recipe, recipe_env  # noqa: E402

# The fewest utterances the smoke stages take: 2 training speakers, 1 dev, 2 test, 3 utterances each.
SMALL = ["--smoke", "true", "--nj", "1", "--data_args", "data.num_speakers=5 data.utts_per_speaker=3"]
OTHER_STAGES = "2 3 5 6 7 8"  # codec, S3, teachers, codec eval, vocoder, Flow-Omni


def run_recipe(work, *args: str) -> str:
    """bash run.sh SMALL ARGS in `work` -> its output (asserting success)."""
    # One torch thread per process, as the in-process tests run (tests/conftest.py): on CPUs shared with other
    # jobs, two spin-waiting threads made the synthesis stage 14x slower (0.63 vs 8.8 s for its 2 utterances).
    run = subprocess.run(["bash", "run.sh", *SMALL, *args], cwd=work, env=dict(recipe_env(), OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    return log


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cosyvoice")
    return convert_release(make_release(root / "CosyVoice-300M-SFT"), root / "converted")


@pytest.fixture(scope="module")
def finetuned(converted, tmp_path_factory):
    """The recipe copied as a user starts one (with its conf/), run with --finetune true -> (work dir, log)."""
    work = copy_recipe(tmp_path_factory.mktemp("recipe"))
    log = run_recipe(work, "--tag", "ft", "--pretrained_tts", str(converted), "--finetune", "true",
                     "--stop_stage", "11", "--skip_stages", OTHER_STAGES)
    return work, log


def train_speakers(work) -> list[str]:
    return sorted(line.split()[0] for line in (work / "data" / "train" / "spk2utt").read_text().splitlines())


def differing(a: torch.nn.Module, b: torch.nn.Module, prefix: str = "") -> set[str]:
    """Names of the parameters under `prefix` whose values differ between two models of one architecture."""
    theirs = dict(b.named_parameters())
    return {n for n, p in a.named_parameters() if n.startswith(prefix) and not torch.equal(p, theirs[n])}


@pytest.mark.slow
def test_finetune_trains_the_pretrained_models_on_the_corpus_and_synthesizes(finetuned, converted):
    import voxtok
    from voxtok.registry import read_metadata
    from voxtok.tts.manifest import read_manifest

    work, log = finetuned
    exp = work / "exp" / "ft"
    assert "stage 2 (codec): skipped (--skip_stages)" in log and "codec tokens: left out" in log
    assert "Flow-Omni synthesis: left out" in log
    for name in ("stage1_speakers_campplus", "stage4_tokenize_pretrained", "stage9_llm_finetune",
                 "stage10_flow_finetune", "stage11_synth"):
        assert (exp / name / ".done").is_file(), name
    for part, frozen in (("llm", "text_encoder."), ("flow", "encoder.")):
        init = voxtok.load(converted / "tts" / part / "model")
        tuned = voxtok.load(exp / "tts" / f"{part}_finetune" / "model")
        assert tuned.to_config() == init.to_config()  # the pretrained architecture, not configs/tts/*
        changed = differing(tuned, init)
        assert changed and not any(n.startswith(frozen) for n in changed), sorted(changed)[:5]
        meta = read_metadata(exp / "tts" / f"{part}_finetune" / "model")["extra"]
        assert meta["init_from"] == str(converted / "tts" / part / "model")
        assert meta["tokens"]["checkpoint_hash"] == read_metadata(converted / "s3" / "model")["weights_hash"]
    assert read_metadata(exp / "tts" / "flow_finetune" / "model")["extra"]["prompt_framing"] == "reference"
    assert read_metadata(exp / "tts" / "llm_finetune" / "model")["extra"]["frontend"]["kind"] == "whisper_bpe"

    spec = read_manifest(exp / "tts" / "cosyvoice.yaml")
    assert spec["llm"] == str(exp / "tts" / "llm_finetune" / "model")
    assert spec["vocoder"] == str(converted / "tts" / "vocoder" / "model")
    assert spec["speaker_encoder"] == str(converted / "speaker" / "campplus.onnx")
    pipe = voxtok.load(exp / "tts" / "cosyvoice.yaml")
    assert pipe.speakers.ids() == train_speakers(work) and pipe.speakers.dim == 192  # the corpus's CAM++ voices
    audio = pipe.synthesize("Hello there.", None, "sft", pipe.speakers.ids()[0], n_steps=1, seed=0)
    assert audio.numel() > 0 and bool(torch.isfinite(audio).all())
    synth = exp / "tts" / "synth_cosyvoice"
    wavs = sorted((synth / "wav").glob("*.wav"))
    assert len(wavs) == 2 and len((synth / "data" / "wav.scp").read_text().splitlines()) == 2
    assert len(list((synth / "resynth" / "wav").glob("*.wav"))) == 2  # through the folder's HiFT


@pytest.mark.slow
def test_without_finetune_the_pretrained_models_are_used_as_they_are(finetuned, converted):
    """A second experiment on the same prepared data (data/ and the CAM++ store), stages 9-11 only."""
    import voxtok
    from voxtok.tts.manifest import read_manifest

    work, _ = finetuned
    shutil.copytree(work / "dump" / "ft", work / "dump" / "as_is")
    log = run_recipe(work, "--tag", "as_is", "--pretrained_tts", str(converted), "--stage", "9",
                     "--stop_stage", "11", "--skip_stages", "8")
    exp = work / "exp" / "as_is"
    assert "stage 9: skipped: the CosyVoice-style TTS is --pretrained_tts" in log
    assert not (exp / "tts" / "llm_finetune").exists() and not list(exp.glob("stage9_*"))
    spec = read_manifest(exp / "tts" / "cosyvoice.yaml")
    assert spec["llm"] == str(converted / "tts" / "llm" / "model")
    assert spec["flow"] == str(converted / "tts" / "flow" / "model")
    assert spec["tokenizer"] == str(converted / "s3" / "model")
    assert voxtok.load(exp / "tts" / "cosyvoice.yaml").speakers.ids() == train_speakers(work)
    assert len(list((exp / "tts" / "synth_cosyvoice" / "wav").glob("*.wav"))) == 2


def test_bad_pretrained_options_are_one_line_errors(tmp_path):
    work = copy_recipe(tmp_path)
    for args, message in ((["--finetune", "true"], "--finetune true fine-tunes the folder of --pretrained_tts"),
                          (["--pretrained_tts", str(tmp_path)], "is not a folder of `voxtok convert cosyvoice`"),
                          (["--skip_stages", "2 x"], "--skip_stages takes stage numbers, got 'x'")):
        run = subprocess.run(["bash", "run.sh", "--smoke", "true", *args], cwd=work, env=recipe_env(),
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not (work / "exp").exists()
