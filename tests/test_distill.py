"""Distillation losses (known answers, masking, no broadcasting), the teacher dataset (frame-aligned
crops) and the training recipe with teacher stores (one GAN step per ablation config)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from voxtok.registry import load
from voxtok.codecs.distill import (
    TeacherShapeError, d_axis_loss, global_loss, t_axis_loss, windowed_token_loss,
)
from voxtok.codecs.distill_data import (
    TeacherClipDataset, collate_teacher_batch, resolve_teacher_dims,
)
from voxtok.data.shards import ShardWriter
from voxtok.errors import BadConfigError, BadDataDirError
from voxtok.recipes import CONFIG_DIR
from voxtok.recipes.train_codec import train
from codec_fixtures import make_data_dir, scalars

FLOOR = math.log1p(math.exp(-1.0))  # -log sigmoid(1): every loss's value at a perfect match


def full(b, t):
    return torch.full((b,), t, dtype=torch.long)


# ----------------------------------------------------------------------------- losses


def test_d_axis_known_answers_and_masking():
    torch.manual_seed(0)
    teacher = torch.randn(3, 20, 8)
    lengths = torch.tensor([20, 15, 9])
    assert d_axis_loss(teacher.clone(), teacher, lengths).item() == pytest.approx(FLOOR, abs=1e-6)
    # scale-invariant per feature, and -1 correlation gives -log sigmoid(-1)
    assert d_axis_loss(3.0 * teacher, teacher, lengths).item() == pytest.approx(FLOOR, abs=1e-6)
    assert d_axis_loss(-teacher, teacher, lengths).item() == pytest.approx(math.log1p(math.e), abs=1e-6)
    shuffled = d_axis_loss(teacher[[1, 2, 0]], teacher, lengths).item()
    assert shuffled > FLOOR + 0.2
    # frames past each length do not count
    noisy = teacher.clone()
    noisy[1, 15:] = 100.0
    noisy[2, 9:] = -7.0
    assert d_axis_loss(noisy, teacher, lengths).item() == pytest.approx(FLOOR, abs=1e-6)
    assert d_axis_loss(noisy, teacher, full(3, 20)).item() > FLOOR + 0.01


def test_d_axis_is_the_cosine_along_time():
    # one utterance, two features: d0 follows the teacher, d1 is its negative
    teacher = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]])
    student = teacher * torch.tensor([1.0, -1.0])
    expected = (FLOOR + math.log1p(math.e)) / 2
    assert d_axis_loss(student, teacher, full(1, 3)).item() == pytest.approx(expected, abs=1e-6)


def test_t_axis_known_answers():
    torch.manual_seed(1)
    teacher = torch.randn(2, 10, 4)
    lengths = torch.tensor([10, 6])
    assert t_axis_loss(teacher.clone(), teacher, lengths).item() == pytest.approx(FLOOR, abs=1e-6)
    assert t_axis_loss(teacher.clone(), teacher, lengths, lambda_sim=2.0).item() == pytest.approx(2 * FLOOR, abs=1e-6)
    # an opposite student: L1 = 2 mean|T|, cosine -1
    expected = 2 * teacher[0].abs().mean().item() * 10 / 16 + 2 * teacher[1, :6].abs().mean().item() * 6 / 16
    assert t_axis_loss(-teacher, teacher, lengths).item() == pytest.approx(expected + math.log1p(math.e), rel=1e-5)
    assert t_axis_loss(teacher[[1, 0]], teacher, lengths).item() > FLOOR + 0.3


@pytest.mark.parametrize("loss", [d_axis_loss, t_axis_loss])
def test_frame_losses_never_broadcast_a_teacher(loss):
    student = torch.randn(3, 12, 8)
    with pytest.raises(TeacherShapeError, match="never broadcast"):
        loss(student, torch.randn(1, 12, 8), full(3, 12))
    with pytest.raises(TeacherShapeError):
        loss(student, torch.randn(3, 11, 8), full(3, 12))
    with pytest.raises(TeacherShapeError):
        loss(student, torch.randn(3, 12, 8), full(2, 12))


@pytest.mark.parametrize("kind", ["d_axis", "t_axis"])
def test_global_loss(kind):
    torch.manual_seed(2)
    vectors = torch.randn(3, 16)
    student = vectors[:, None, :].expand(3, 10, 16).clone()
    lengths = torch.tensor([10, 7, 4])
    assert global_loss(student, vectors, lengths, kind).item() == pytest.approx(FLOOR, abs=1e-6)
    assert global_loss(student, vectors[[1, 2, 0]], lengths, kind).item() > FLOOR + 0.1
    with pytest.raises(TeacherShapeError, match="never broadcast"):
        global_loss(student, vectors[:1], lengths, kind)


def test_windowed_token_loss():
    torch.manual_seed(3)
    batch, frames, dim = 2, 20, 16
    tokens = torch.randn(batch, 3, dim)
    spans = torch.tensor([[[0, 4], [4, 9], [9, 15]], [[2, 6], [6, 8], [0, 0]]])
    token_lengths = torch.tensor([3, 2])
    lengths = torch.tensor([20, 10])
    student = torch.randn(batch, frames, dim)
    for b in range(batch):
        for n in range(int(token_lengths[b])):
            start, end = spans[b, n].tolist()
            student[b, start + 1] = tokens[b, n]  # one frame inside the span matches exactly
    args = (token_lengths, lengths)
    assert windowed_token_loss(student, tokens, spans, *args, window=0).item() == pytest.approx(FLOOR, abs=1e-6)
    assert windowed_token_loss(student, tokens[[1, 0]], spans, *args, window=0).item() > FLOOR + 0.2
    # "mean" compares with every frame of the window, so only an all-matching span is minimal
    assert windowed_token_loss(student, tokens, spans, *args, window=0, match="mean").item() > FLOOR + 0.2
    # a span 3 frames off is found with a window of 3 but not of 1
    shifted = spans.clone()
    shifted[0, 2] = torch.tensor([13, 16])  # the matching frame is 10
    assert windowed_token_loss(student, tokens, shifted, *args, window=1).item() > FLOOR + 0.05
    assert windowed_token_loss(student, tokens, shifted, *args, window=3).item() == pytest.approx(FLOOR, abs=1e-6)
    # padded tokens do not count, whatever they hold
    garbage = tokens.clone()
    garbage[1, 2] = 50.0
    assert windowed_token_loss(student, garbage, spans, *args, window=0).item() == pytest.approx(FLOOR, abs=1e-6)
    with pytest.raises(TeacherShapeError):  # one utterance's tokens against a batch of 3
        windowed_token_loss(torch.randn(3, frames, dim), tokens[:1], spans[:1], torch.tensor([3]), full(3, frames))


# ----------------------------------------------------------------------------- teacher data

LM_DIM, SM_DIM = 12, 10


def write_teacher_stores(root: Path, data: Path, sample_rate: int = 16000, hop: int = 320) -> Path:
    """Random teacher stores for every utterance of a data dir; sm row t holds t in column 0, so
    crops can be checked against the frame index."""
    from voxtok.data.dataset import AudioClipDataset

    rng = np.random.default_rng(0)
    audio = AudioClipDataset(data, sample_rate)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"frame_rate": sample_rate / hop, "hop": hop, "sample_rate": sample_rate}
    writers = {name: ShardWriter(root / name, {**meta, "kind": name}, dtype="int32" if name == "lm_spans" else "float16",
                                 expect_ndim=2) for name in ("lm", "lm_tokens", "lm_spans", "lm_cls", "sm")}
    for utt in audio.utts:
        frames = -(-audio.audio(utt).shape[-1] // hop)
        sm = rng.standard_normal((frames - 1, SM_DIM)).astype(np.float32)  # SSL models give a frame less
        sm[:, 0] = np.arange(frames - 1)
        bounds = np.linspace(0, frames, 5).astype(int)
        spans = np.stack([bounds[:-1], bounds[1:]], 1).astype(np.int32)
        tokens = rng.standard_normal((4, LM_DIM)).astype(np.float32)
        lm = np.repeat(tokens, np.diff(bounds), axis=0)
        for name, arr in (("lm", lm), ("lm_tokens", tokens), ("lm_spans", spans),
                          ("lm_cls", rng.standard_normal((1, LM_DIM))), ("sm", sm)):
            writers[name].add(utt, arr)
    for w in writers.values():
        w.close()
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    data = make_data_dir(root)
    return data, write_teacher_stores(root / "teachers", data)


def test_teacher_crops_are_frame_aligned(corpus):
    data, teachers = corpus
    streams = ["lm", "sm", "sm_global", "lm_cls", "lm_mean", "lm_tokens"]
    ds = TeacherClipDataset(data, 16000, 320, teachers, streams, crop_seconds=0.21)
    assert ds.crop == 3200  # rounded down to whole frames
    for index in range(len(ds)):
        item = ds[index]
        full_wav = ds.audio(item["utt"])[0]
        starts = [s for s in range(0, full_wav.shape[-1] - 3200 + 1) if torch.equal(full_wav[s:s + 3200], item["wav"][0])]
        assert starts and starts[0] % 320 == 0
        first = starts[0] // 320
        sm = ds.stores["sm"][item["utt"]]
        valid = item["sm_lengths"]
        assert valid == min(10, sm.shape[0] - first)
        assert torch.equal(item["sm"][:valid, 0], torch.arange(first, first + valid, dtype=torch.float32))
        assert torch.all(item["sm"][valid:] == 0)
        assert torch.allclose(item["sm_global"], torch.from_numpy(sm.astype(np.float32).mean(0)))
        spans = item["lm_spans"]
        assert spans.min() >= 0 and spans.max() <= 10 and torch.all(spans[:, 1] > spans[:, 0])
        # the frame-level LM crop repeats each kept piece over its (shifted) span
        for state, (a, b) in zip(item["lm_tokens"], spans.tolist()):
            assert torch.allclose(item["lm"][a:b], state.expand(b - a, -1))
    batch = collate_teacher_batch([ds[0], ds[1], ds[2]])
    assert batch["wav"].shape == (3, 1, 3200) and batch["sm"].shape == (3, 10, SM_DIM)
    assert batch["lm"].shape == (3, 10, LM_DIM) and batch["lm_cls"].shape == (3, LM_DIM)
    assert batch["lm_tokens"].shape[0] == 3 and batch["lm_spans"].shape[:2] == batch["lm_tokens"].shape[:2]
    assert batch["lm_tokens_lengths"].shape == (3,)


def test_teacher_stores_at_another_frame_rate_or_missing_are_refused(corpus, tmp_path):
    data, teachers = corpus
    with pytest.raises(BadConfigError, match="frames/s"):
        TeacherClipDataset(data, 16000, 240, teachers, ["sm"], crop_seconds=0.2)  # 66.7 Hz codec
    with pytest.raises(BadDataDirError, match="sm.model_dir"):
        TeacherClipDataset(data, 16000, 320, tmp_path, ["sm"])


def test_resolve_teacher_dims(corpus):
    _, teachers = corpus
    cfg = {"distill": {"lm": {"dim": None}, "sm": {"dim": None}}}
    assert resolve_teacher_dims(cfg, teachers)["distill"] == {"lm": {"dim": LM_DIM}, "sm": {"dim": SM_DIM}}
    with pytest.raises(BadConfigError, match="10-dimensional"):
        resolve_teacher_dims({"distill": {"sm": {"dim": 768}}}, teachers)
    with pytest.raises(BadConfigError, match="null"):
        resolve_teacher_dims({"distill": {"sm": {"dim": None}}}, None)


# ----------------------------------------------------------------------------- recipe

SMALL = [
    "codec.model.encoder.n_filters=4", "codec.model.encoder.dimension=16",
    "codec.model.decoder.n_filters=4", "codec.model.decoder.dimension=16",
    "codec.model.quantizer.codebook_size=16", "codec.model.quantizer.warmup_steps=0",
    "codec.discriminators.options.mpd.channels=4", "codec.discriminators.options.mpd.max_channels=8",
    "codec.discriminators.options.mrd.channels=4", "codec.data.crop_seconds=0.2", "codec.data.batch_size=4",
    "codec.optim.disc_start_step=0", "trainer.max_steps=1", "trainer.val_every_n_steps=1000",
    "trainer.log_every_n_steps=1", "trainer.limit_val_batches=1",
]
EXPECTED_LOSSES = {
    "rvq_tiny": set(),
    "dmcodec_lm_tiny": {"distill_lm"},
    "dmcodec_lmsm_tiny": {"distill_lm", "distill_sm"},
    "fusecodec_tiny": {"global_sm", "global_lm", "context_window"},
}


def run_recipe(data, exp, codec, *overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train_codec", overrides=[f"codec={codec}", f"train_dir={data}", f"valid_dir={data}",
                                                f"exp_dir={exp}", f"hydra_dir={exp}/hydra", *SMALL, *overrides])
    return train(cfg)


@pytest.mark.parametrize("codec", sorted(EXPECTED_LOSSES))
def test_ablation_configs_train_a_gan_step_with_teachers(corpus, tmp_path, codec):
    data, teachers = corpus
    exp = tmp_path / "exp"
    out = run_recipe(data, exp, codec, f"teachers_dir={teachers}")
    assert len(scalars(exp, "train/d_loss")) == 1 and len(scalars(exp, "train/g_adv")) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    logged = {tag.split("/")[1] for tag in acc.Tags()["scalars"] if tag.startswith("train/")}
    teacher_terms = {t for t in logged if t.startswith(("distill_", "global_", "context_"))}
    assert teacher_terms == EXPECTED_LOSSES[codec]
    for tag in teacher_terms:
        assert FLOOR - 1e-4 <= scalars(exp, f"train/{tag}")[0] < 2.0
    model = load(out, kind="codec")
    dims = {name: t.dim for name, t in model.targets.items()}
    assert dims == {k: v for k, v in {"lm": LM_DIM, "sm": SM_DIM}.items() if k in dims}  # read from the stores


def test_distilled_config_without_teachers_is_refused(corpus, tmp_path):
    data, _ = corpus
    with pytest.raises(BadConfigError, match="teachers_dir|dim is not set"):
        run_recipe(data, tmp_path / "exp", "dmcodec_lm_tiny")
    with pytest.raises(BadConfigError, match="set teachers_dir"):
        run_recipe(data, tmp_path / "exp2", "dmcodec_lm_tiny", "codec.model.distill.lm.dim=12")
