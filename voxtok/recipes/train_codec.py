"""Train a codec (GAN) on a Kaldi data dir; resumes from exp_dir/checkpoints/last.ckpt.

Example:
    python -m voxtok.recipes.train_codec codec=wavtokenizer_tiny train_dir=data/train \
        valid_dir=data/dev exp_dir=exp/mini/codec trainer.max_steps=2000 trainer.max_time=00:00:20:00

Codecs distilled from teachers (dmcodec, fusecodec) read the teacher features from
`teachers_dir=DIR` (stores written by voxtok.recipes.extract_teachers for train_dir's utterances);
validation runs on audio alone.

The trained codec is exported to exp_dir/model (config.yaml + model.safetensors + metadata.json),
loadable with `voxtok.codecs.base.load_codec`.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from voxtok.codecs.base import build_codec
from voxtok.codecs.distill_data import TeacherClipDataset, collate_teacher_batch, resolve_teacher_dims
from voxtok.codecs.gan_trainer import GANModule, check_trainer_config, fit_and_export
from voxtok.data.dataset import AudioClipDataset, collate_audio
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main


def make_loaders(cfg: dict, sample_rate: int, codec=None, section: str = "codec") -> tuple[DataLoader, DataLoader]:
    """Training crops and fixed validation crops from the data dirs named in `cfg`.

    The crop and batch settings are `cfg[section]["data"]` (section "vocoder" for the vocoder
    recipe). When `codec` needs teacher streams (`codec.teacher_streams`), training crops come
    with the time-aligned teacher features from `cfg["teachers_dir"]`.
    """
    data = cfg[section]["data"]
    streams = sorted(getattr(codec, "teacher_streams", ()) or ())
    speed = float(data.get("speed_perturb", 0.0))
    if streams:
        if speed:
            # The teacher features were extracted from the unperturbed audio: they would no
            # longer line up with a sped-up crop.
            raise BadConfigError(f"{section}.data.speed_perturb cannot be used with teacher streams {streams}")
        train = TeacherClipDataset(cfg["train_dir"], sample_rate, codec.hop_length, cfg["teachers_dir"], streams,
                                   data["crop_seconds"], random_crop=True)
        collate_train = collate_teacher_batch
    else:
        train = AudioClipDataset(cfg["train_dir"], sample_rate, data["crop_seconds"], random_crop=True,
                                 speed_perturb=speed)
        collate_train = collate_audio
    valid = AudioClipDataset(cfg["valid_dir"], sample_rate, data.get("valid_crop_seconds", 3.0), random_crop=False)
    workers = int(data.get("num_workers", 0))
    kw = dict(num_workers=workers, persistent_workers=workers > 0)
    return (DataLoader(train, batch_size=int(data["batch_size"]), shuffle=True, drop_last=True,
                       collate_fn=collate_train, **kw),
            DataLoader(valid, batch_size=int(data["batch_size"]), shuffle=False, collate_fn=collate_audio, **kw))


def train(cfg: DictConfig) -> Path:
    """Train (or resume) and export the codec; returns the exported model folder."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    tcfg, ccfg = plain["trainer"], plain["codec"]
    check_trainer_config(tcfg)
    L.seed_everything(int(tcfg.get("seed", 0)), workers=True, verbose=False)
    teachers_dir = plain.get("teachers_dir")
    if teachers_dir:
        resolve_teacher_dims(ccfg["model"], teachers_dir)
    codec = build_codec(ccfg["name"], ccfg["model"])
    streams = sorted(getattr(codec, "teacher_streams", ()) or ())
    if streams and not teachers_dir:
        raise BadConfigError(f"codec config {ccfg['name']} distils from teacher features {streams}: set teachers_dir")
    module = GANModule(codec, ccfg, max_steps=int(tcfg["max_steps"]), sample_rate=codec.sample_rate)
    train_loader, valid_loader = make_loaders(plain, codec.sample_rate, codec)
    return fit_and_export(module, train_loader, valid_loader, tcfg, plain["exp_dir"], ccfg["name"],
                          export=codec.save_pretrained)


@recipe_main("train_codec")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
