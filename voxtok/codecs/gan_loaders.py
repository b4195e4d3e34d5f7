"""Training and validation data loaders for the GAN trainer (codecs and the mel vocoder).

Training crops are random, validation crops fixed (same audio every epoch, so validation losses
compare across epochs). A codec distilled from teachers gets training crops with the time-aligned
teacher features; validation runs on audio alone.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch.utils.data import DataLoader

from voxtok.codecs.distill_data import TeacherClipDataset, collate_teacher_batch
from voxtok.data.dataset import AudioClipDataset, collate_audio
from voxtok.config import dataclass_from_dict
from voxtok.data.options import ClipDataOptions
from voxtok.errors import BadConfigError


def make_loaders(cfg: Mapping[str, Any], sample_rate: int, codec=None,
                 section: str = "codec") -> tuple[DataLoader, DataLoader]:
    """(train, valid) loaders over the data dirs `cfg["train_dir"]` and `cfg["valid_dir"]`.

    The crop and batch settings are `cfg[section]["data"]` (section "tts" for the vocoder recipe;
    `ClipDataOptions`, unknown keys are errors).
    Batches are {"utts", "wav" [B, 1, T], "lengths" [B]} (see `collate_audio`); when `codec` needs
    teacher streams (`codec.teacher_streams`), training batches also carry the teacher crops from
    `cfg["teachers_dir"]` (see `voxtok.codecs.distill_data`).
    """
    data = dataclass_from_dict(ClipDataOptions, cfg[section].get("data"), f"{section}.data")
    streams = sorted(getattr(codec, "teacher_streams", ()) or ())
    speed = float(data.speed_perturb)
    if streams:
        if speed:
            # The teacher features were extracted from the unperturbed audio: they would no
            # longer line up with a sped-up crop.
            raise BadConfigError(f"{section}.data.speed_perturb cannot be used with teacher streams {streams}")
        train = TeacherClipDataset(cfg["train_dir"], sample_rate, codec.hop_length, cfg["teachers_dir"], streams,
                                   data.crop_seconds, random_crop=True)
        collate_train = collate_teacher_batch
    else:
        train = AudioClipDataset(cfg["train_dir"], sample_rate, data.crop_seconds, random_crop=True,
                                 speed_perturb=speed)
        collate_train = collate_audio
    valid = AudioClipDataset(cfg["valid_dir"], sample_rate, data.valid_crop_seconds, random_crop=False)
    workers = int(data.num_workers)
    kw = dict(num_workers=workers, persistent_workers=workers > 0)
    return (DataLoader(train, batch_size=int(data.batch_size), shuffle=True, drop_last=True,
                       collate_fn=collate_train, **kw),
            DataLoader(valid, batch_size=int(data.batch_size), shuffle=False, collate_fn=collate_audio, **kw))
