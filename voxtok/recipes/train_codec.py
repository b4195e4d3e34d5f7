"""Train a codec (GAN) on a Kaldi data dir; resumes from exp_dir/checkpoints/last.ckpt.

Example:
    python -m voxtok.recipes.train_codec codec=wavtokenizer_tiny train_dir=data/train \
        valid_dir=data/dev exp_dir=exp/mini/codec trainer.max_steps=2000 trainer.max_time=00:00:20:00

Codecs distilled from teachers (dmcodec, fusecodec) read the teacher features from
`teachers_dir=DIR` (stores written by voxtok.recipes.extract_teachers for train_dir's utterances);
validation runs on audio alone.

The trained codec is exported to exp_dir/model (config.yaml + model.safetensors + metadata.json),
loadable with `voxtok.load`, with its discriminators beside it (discriminators.safetensors +
discriminators.yaml, voxtok.codecs.gan_checkpoint) so that training can go on from it.

Fine-tuning: `init_from=DIR` starts from a VoxTok or converted (`voxtok convert ...`) codec folder:
    python -m voxtok.recipes.train_codec codec=wavtokenizer_75_paper init_from=exp/wavtokenizer_75 \
        train_dir=data/train valid_dir=data/dev exp_dir=exp/wt75_finetune trainer=gpu
- the generator is DIR's: its weights, and its model config (the architecture the weights were made
  for), which replaces `codec.model`; `codec.name` must name DIR's codec (else a one-line error);
  a line lists the keys of your `codec.model` that DIR's config overrode;
- the discriminators are DIR's (weights and `discriminators:` block) when DIR has them, else they
  are built from `codec.discriminators` with fresh weights;
- everything else (loss, optim, data, trainer) is your config; update counts start at 0 and the
  quantizer's from-scratch warm-up bypass is off (DIR's codebook is trained).
A re-run with the same exp_dir resumes from its last checkpoint, which supersedes DIR.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from voxtok.atomic import atomic_dir
from voxtok.codecs.distill_data import resolve_teacher_dims
from voxtok.codecs.gan_checkpoint import load_discriminators, save_discriminators
from voxtok.codecs.gan_loaders import make_loaders
from voxtok.codecs.gan_trainer import GANModule
from voxtok.convert.keymap import load_mapped
from voxtok.config import differing_keys
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main
from voxtok.registry import build, load, read_metadata
from voxtok.training.lightning import check_trainer_config, fit_and_export


def train(cfg: DictConfig) -> Path:
    """Train (or resume, or fine-tune from `init_from`) and export the codec with its
    discriminators; returns the exported model folder."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    tcfg, ccfg = check_trainer_config(plain["trainer"]), plain["codec"]
    L.seed_everything(int(tcfg["seed"]), workers=True, verbose=False)
    teachers_dir = plain.get("teachers_dir")
    disc_state = None
    if plain.get("init_from"):
        codec, ccfg, disc_state = start_from(plain["init_from"], ccfg)
        if teachers_dir:  # only checks DIR's teacher widths against the stores
            resolve_teacher_dims(copy.deepcopy(ccfg["model"]), teachers_dir)
    else:
        if teachers_dir:
            resolve_teacher_dims(ccfg["model"], teachers_dir)
        codec = build("codec", ccfg["name"], ccfg["model"])
    streams = sorted(getattr(codec, "teacher_streams", ()) or ())
    if streams and not teachers_dir:
        raise BadConfigError(f"codec config {ccfg['name']} distils from teacher features {streams}: set teachers_dir")
    module = GANModule(codec, ccfg, max_steps=int(tcfg["max_steps"]), sample_rate=codec.sample_rate, where="codec")
    if disc_state is not None:
        load_mapped(module.discriminator, disc_state, plain["init_from"],
                    "the discriminators its discriminators.yaml builds")
    train_loader, valid_loader = make_loaders(plain, codec.sample_rate, codec)
    return fit_and_export(module, train_loader, valid_loader, tcfg, plain["exp_dir"], ccfg["name"],
                          export=lambda out: export_codec(module, out))


def export_codec(module: GANModule, out: str | Path) -> Path:
    """Write the codec folder `out` (replaced atomically) with the module's discriminators beside it."""
    with atomic_dir(out) as tmp:
        module.generator.save_pretrained(tmp)
        save_discriminators(tmp, module.gan.discriminator_block, module.discriminator)
    return Path(out)


def start_from(folder: str | Path, ccfg: dict[str, Any]) -> tuple[Any, dict[str, Any], dict | None]:
    """The codec of checkpoint folder `folder` (train mode) for the codec config `ccfg`, the config
    with `model` (and `discriminators`, when the folder has them) taken from the folder, and the
    folder's discriminator state_dict (None: none saved). See the module docstring."""
    meta = read_metadata(folder)
    if meta["kind"] != "codec" or meta["name"] != ccfg["name"]:
        raise BadConfigError(f"init_from holds a {meta['kind']} '{meta['name']}', but codec.name is "
                             f"'{ccfg['name']}' (choose the codec config of that model)", folder)
    codec = load(folder, kind="codec").train()
    # A trained codebook needs no warm-up: the bypass would train the decoder on unquantized latents.
    codec.quantizer_warmup_steps = 0
    codec.extra = {**codec.extra, "init_from": str(folder)}
    overridden = differing_keys(ccfg.get("model"), codec.to_config(), "codec.model")
    ccfg = {**ccfg, "model": codec.to_config()}
    saved = load_discriminators(folder)
    if saved is not None:
        overridden += differing_keys(ccfg.get("discriminators"), saved[0], "codec.discriminators")
        ccfg["discriminators"] = saved[0]
    print(f"init_from {folder}: generator{' and discriminators' if saved else ''} from there"
          f"{'' if saved else ' (discriminators start afresh)'}"
          + (f"; its config replaced {', '.join(overridden[:8])}{' ...' if len(overridden) > 8 else ''}"
             if overridden else ""), flush=True)
    return codec, ccfg, None if saved is None else saved[1]


@recipe_main("train_codec")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
