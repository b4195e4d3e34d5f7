"""Train a supervised semantic tokenizer (S3: CTC recognizer with a quantizer inside) on Kaldi
data dirs with transcripts; resumes from exp_dir/checkpoints/last.ckpt.

Example:
    python -m voxtok.recipes.train_s3 codec=s3_tiny train_dir=data/train valid_dir=data/dev \
        exp_dir=exp/mini/s3 trainer.max_steps=4000 trainer.max_time=00:00:20:00

The trained tokenizer is exported to exp_dir/model (config.yaml with the character vocabulary +
model.safetensors + metadata.json), loadable with `voxtok.codecs.base.load_codec`.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from voxtok.registry import build
from voxtok.training.lightning import check_trainer_config, fit_and_export
from voxtok.codecs.train_asr import CTCModule
from voxtok.data.dataset import TranscribedAudioDataset, collate_transcribed
from voxtok.config import dataclass_from_dict
from voxtok.data.options import TranscribedDataOptions
from voxtok.errors import BadConfigError
from voxtok.recipes import recipe_main


def make_loaders(cfg: dict, model) -> tuple[DataLoader, DataLoader]:
    """Shuffled training utterances and fixed validation utterances with character targets."""
    data = dataclass_from_dict(TranscribedDataOptions, cfg["codec"].get("data"), "codec.data")
    max_seconds = data.max_seconds
    train = TranscribedAudioDataset(cfg["train_dir"], model.sample_rate, model.vocab, max_seconds=max_seconds)
    valid = TranscribedAudioDataset(cfg["valid_dir"], model.sample_rate, model.vocab, max_seconds=max_seconds)
    if train.skipped:
        print(f"left out {len(train.skipped)} training utterance(s) longer than {max_seconds} s")
    batch_size = int(data.batch_size)
    if len(train) < batch_size:
        raise BadConfigError(f"{cfg['train_dir']} has {len(train)} usable utterances, fewer than one batch of {batch_size}")
    workers = int(data.num_workers)
    kw = dict(collate_fn=collate_transcribed, num_workers=workers, persistent_workers=workers > 0)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, **kw),
            DataLoader(valid, batch_size=batch_size, shuffle=False, **kw))


def train(cfg: DictConfig) -> Path:
    """Train (or resume) and export the tokenizer; returns the exported model folder."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    tcfg, ccfg = check_trainer_config(plain["trainer"]), plain["codec"]
    L.seed_everything(int(tcfg["seed"]), workers=True, verbose=False)
    model = build("codec", ccfg["name"], ccfg["model"])
    if not hasattr(model, "training_losses"):
        raise BadConfigError(f"codec '{ccfg['name']}' is not a CTC-trained tokenizer (use train_codec)")
    module = CTCModule(model, ccfg, max_steps=int(tcfg["max_steps"]), where="codec")
    train_loader, valid_loader = make_loaders(plain, model)
    return fit_and_export(module, train_loader, valid_loader, tcfg, plain["exp_dir"], ccfg["name"],
                          export=model.save_pretrained)


@recipe_main("train_s3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
