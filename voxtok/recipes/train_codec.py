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

from voxtok.registry import build
from voxtok.codecs.distill_data import resolve_teacher_dims
from voxtok.codecs.gan_loaders import make_loaders
from voxtok.codecs.gan_trainer import GANModule
from voxtok.training.lightning import check_trainer_config, fit_and_export
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main


def train(cfg: DictConfig) -> Path:
    """Train (or resume) and export the codec; returns the exported model folder."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    tcfg, ccfg = check_trainer_config(plain["trainer"]), plain["codec"]
    L.seed_everything(int(tcfg["seed"]), workers=True, verbose=False)
    teachers_dir = plain.get("teachers_dir")
    if teachers_dir:
        resolve_teacher_dims(ccfg["model"], teachers_dir)
    codec = build("codec", ccfg["name"], ccfg["model"])
    streams = sorted(getattr(codec, "teacher_streams", ()) or ())
    if streams and not teachers_dir:
        raise BadConfigError(f"codec config {ccfg['name']} distils from teacher features {streams}: set teachers_dir")
    module = GANModule(codec, ccfg, max_steps=int(tcfg["max_steps"]), sample_rate=codec.sample_rate, where="codec")
    train_loader, valid_loader = make_loaders(plain, codec.sample_rate, codec)
    return fit_and_export(module, train_loader, valid_loader, tcfg, plain["exp_dir"], ccfg["name"],
                          export=codec.save_pretrained)


@recipe_main("train_codec")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
