"""Train the mel vocoder (GAN) on a Kaldi data dir; resumes from exp_dir/checkpoints/last.ckpt.

Example:
    python -m voxtok.recipes.train_vocoder tts=vocoder_tiny train_dir=data/train valid_dir=data/dev \
        exp_dir=exp/mini/vocoder trainer.max_steps=2000 trainer.max_time=00:00:15:00

The vocoder is exported to exp_dir/model (config.yaml + model.safetensors), loadable with
`voxtok.tts.vocoder.MelVocoder.from_pretrained`. Audio is resampled to the vocoder's mel rate.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from voxtok.codecs.gan_loaders import make_loaders
from voxtok.codecs.gan_trainer import GANModule
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main
from voxtok.training.lightning import check_trainer_config, fit_and_export


def train(cfg: DictConfig) -> Path:
    """Train (or resume) and export the vocoder; returns the exported model folder."""
    from voxtok.tts.vocoder import MelVocoder

    plain = OmegaConf.to_container(cfg, resolve=True)
    tcfg, vcfg = plain["trainer"], plain["tts"]
    if vcfg.get("name") != "mel_vocoder":
        raise BadConfigError(f"tts={vcfg.get('name')} is not a vocoder config "
                             "(choose tts=vocoder_tiny or tts=vocoder_paper)")
    tcfg = check_trainer_config(tcfg)
    L.seed_everything(int(tcfg["seed"]), workers=True, verbose=False)
    vocoder = MelVocoder(vcfg["model"], where="tts.model")
    module = GANModule(vocoder, vcfg, max_steps=int(tcfg["max_steps"]), sample_rate=vocoder.sample_rate, where="tts")
    train_loader, valid_loader = make_loaders(plain, vocoder.sample_rate, section="tts")
    return fit_and_export(module, train_loader, valid_loader, tcfg, plain["exp_dir"], vcfg["name"],
                          export=module.generator.save_pretrained)


@recipe_main("train_vocoder")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
