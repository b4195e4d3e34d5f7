"""GAN training for waveform generators (codecs, vocoders) with Lightning manual optimisation.

The generator is any nn.Module with `training_forward(wav [B, 1, T], lengths [B]) ->
GeneratorOutput` (reconstruction + unweighted auxiliary losses) and `loss_names` (the names of
those losses, which `loss.aux` may weight); batch entries other than utts / wav / lengths (e.g.
teacher features for distillation) reach it as keyword arguments. The discriminators, the
adversarial / feature-matching / mel / waveform / STOI losses and two AdamW optimisers with warmup +
cosine schedules are set by the `discriminators`, `loss` and `optim` config blocks
(codecs/gan_config.py reads them).

Lightning counts every optimiser step in `global_step`; both optimisers step once per batch, so
global_step = 2 x generator updates. Configs and logs speak of generator updates.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from voxtok.codecs.gan_config import read_gan_config
from voxtok.codecs.modules.discriminators import build_discriminators
from voxtok.codecs.modules.losses import (
    MultiResolutionMelLoss, discriminator_loss, feature_matching_loss, generator_adv_loss, waveform_l1_loss,
)
from voxtok.codecs.modules.stoi_loss import StoiLoss
from voxtok.config import merge_strict
from voxtok.errors import BadConfigError
from voxtok.training.optim import build_optimizer, build_scheduler

OPTIMIZER_STEPS_PER_UPDATE = 2  # generator + discriminator
# The `trainer:` block (configs/trainer/*.yaml); None marks the counts every config must set.
TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true",
    "max_steps": None, "max_time": None, "log_every_n_steps": None, "val_every_n_steps": None,
    "checkpoint_every_n_steps": None, "limit_val_batches": 1.0, "threads": None, "seed": 0,
}
REQUIRED_TRAINER_COUNTS = ("max_steps", "val_every_n_steps", "checkpoint_every_n_steps", "log_every_n_steps")

# Lightning warns that manual-optimisation checkpoints hold post-step weights: that is what we want.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")


class GANModule(L.LightningModule):
    """Trains `generator` against discriminators built from `cfg["discriminators"]`.

    `cfg` is the codec/vocoder config (blocks: discriminators, loss, optim; name, model and data
    are the recipe's), read strictly by `read_gan_config`, whose messages name keys under `where`
    (e.g. "codec"); `max_steps` is the number of generator updates the cosine schedule spans.
    """

    def __init__(self, generator: torch.nn.Module, cfg: dict[str, Any], max_steps: int, sample_rate: int,
                 where: str = ""):
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.loss_names = frozenset(getattr(generator, "loss_names", ()))
        gan = read_gan_config(cfg, self.loss_names, where)
        self.gan = gan
        self.max_updates = max_steps
        self.sample_rate = sample_rate
        self.discriminator = build_discriminators(gan.discriminators, **gan.discriminator_options)
        self.mel_weight = gan.mel.weight
        self.mel_loss = MultiResolutionMelLoss(sample_rate=sample_rate, base=gan.mel.base, **gan.mel.options)
        self.adv_kind = gan.adversarial
        self.fm_weight = gan.feature_matching
        self.adv_weight = gan.adversarial_weight
        self.wav_weight = gan.waveform_l1
        self.stoi_weight = gan.stoi
        self.stoi_loss = StoiLoss(sample_rate) if self.stoi_weight else None
        self.aux_weights = gan.aux
        self.disc_start = gan.disc_start_step
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    # -- optimisers
    def configure_optimizers(self):
        opts = [build_optimizer(part.parameters(), self.gan.optim) for part in (self.generator, self.discriminator)]
        sched = [build_scheduler(opt, self.gan.optim, self.max_updates) for opt in opts]
        return opts, [{"scheduler": s, "interval": "step"} for s in sched]

    def _step(self, opt, sched, loss: torch.Tensor | None) -> None:
        opt.zero_grad(set_to_none=True)
        if loss is not None:
            self.manual_backward(loss)
            self.clip_gradients(opt, gradient_clip_val=self.gan.optim.grad_clip, gradient_clip_algorithm="norm")
        # Stepping with no gradients is a no-op for AdamW but keeps Lightning's step count regular.
        opt.step()
        sched.step()

    # -- training
    def generator_forward(self, batch: dict):
        """The generator's training forward on a batch; extra entries go as keyword arguments."""
        extra = {k: v for k, v in batch.items() if k not in ("utts", "wav", "lengths")}
        return self.generator.training_forward(batch["wav"], batch["lengths"], step=int(self.updates), **extra)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        wav, lengths = batch["wav"], batch["lengths"]
        out = self.generator_forward(batch)
        recon = out.recon
        adversarial = int(self.updates) >= self.disc_start
        logs: dict[str, float] = {}

        d_loss = None
        if adversarial:
            real_logits, _ = self.discriminator(wav)
            fake_logits, _ = self.discriminator(recon.detach())
            d_loss, _ = discriminator_loss(self.adv_kind, real_logits, fake_logits)
            logs["train/d_loss"] = float(d_loss.detach())
        self._step(opt_d, sched_d, d_loss)

        mel = self.mel_loss(recon, wav, lengths)
        g_loss = self.mel_weight * mel
        logs["train/mel"] = float(mel.detach())
        for name, value in out.losses.items():
            if name not in self.loss_names:
                # `loss_names` is what `loss.aux` is checked against: it must list every loss.
                raise BadConfigError(f"{type(self.generator).__name__} produced loss '{name}' missing from its "
                                     f"loss_names {sorted(self.loss_names)}")
            weight = self.aux_weights.get(name, 0.0)  # unweighted losses are logged only
            if weight:
                g_loss = g_loss + weight * value
            logs[f"train/{name}"] = float(value.detach())
        if self.wav_weight:
            wl1 = waveform_l1_loss(recon, wav, lengths)
            g_loss = g_loss + self.wav_weight * wl1
            logs["train/wav_l1"] = float(wl1.detach())
        if self.stoi_loss is not None:
            stoi_term = self.stoi_loss(recon, wav, lengths)
            g_loss = g_loss + self.stoi_weight * stoi_term
            logs["train/stoi_loss"] = float(stoi_term.detach())
        if adversarial:
            _, real_feats = self.discriminator(wav)
            fake_logits, fake_feats = self.discriminator(recon)
            adv, _ = generator_adv_loss(self.adv_kind, fake_logits)
            fm, _ = feature_matching_loss(real_feats, fake_feats)
            g_loss = g_loss + self.adv_weight * adv + self.fm_weight * fm
            logs.update({"train/g_adv": float(adv.detach()), "train/fm": float(fm.detach())})
        self._step(opt_g, sched_g, g_loss)
        self.updates += 1

        logs["train/g_loss"] = float(g_loss.detach())
        logs["train/lr"] = sched_g.get_last_lr()[0]
        logs.update({f"train/{k}": v for k, v in out.stats.items()})
        self.log_dict(logs, prog_bar=False, batch_size=wav.shape[0])
        self.log("mel", float(mel.detach()), prog_bar=True, logger=False, batch_size=wav.shape[0])

    # -- validation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        wav, lengths = batch["wav"], batch["lengths"]
        out = self.generator_forward(batch)
        mel = self.mel_loss(out.recon, wav, lengths)
        self.log("val/mel", mel, prog_bar=True, sync_dist=True, batch_size=wav.shape[0])
        if self.stoi_loss is not None:
            self.log("val/stoi_loss", self.stoi_loss(out.recon, wav, lengths), sync_dist=True,
                     batch_size=wav.shape[0])
        for k, v in out.stats.items():
            self.log(f"val/{k}", v, sync_dist=True, batch_size=wav.shape[0])
        if batch_idx == 0 and self.global_rank == 0 and isinstance(self.logger, TensorBoardLogger):
            n = int(lengths[0])
            tb = self.logger.experiment
            tb.add_audio("val/reconstruction", out.recon[0, 0, :n].float().clamp(-1, 1).cpu(),
                         int(self.updates), self.sample_rate)
            if int(self.updates) <= 1 or not getattr(self, "_logged_reference", False):
                tb.add_audio("val/original", wav[0, 0, :n].cpu(), int(self.updates), self.sample_rate)
                self._logged_reference = True


class ProgressLog(L.Callback):
    """One line every `every` updates with the logged losses: progress bars are invisible in the
    log files recipes write (stdout is not a terminal there)."""

    def __init__(self, every: int):
        self.every = every
        self.start = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        import sys
        import time

        self.start = self.start or time.time()
        updates = int(getattr(module, "updates", trainer.global_step))
        if updates % self.every or not trainer.is_global_zero or sys.stdout.isatty():
            return
        shown = {k.split("/")[-1]: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith(("train/mel", "train/d_loss", "train/perplexity", "val/mel", "train/loss",
                                        "train/distill", "train/global", "train/context"))}
        values = " ".join(f"{k}={v:.3f}" for k, v in sorted(shown.items()))
        print(f"update {updates} {values} ({time.time() - self.start:.0f} s)", flush=True)


def make_strategy(name: str, devices: int):
    """Lightning strategy: DDP that tolerates parameters unused in one of the GAN passes."""
    if name in ("ddp", "ddp_cpu") or (name == "auto" and devices > 1):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True)
    return name


def build_trainer(tcfg: dict[str, Any], exp_dir: str | Path, extra_callbacks: list | None = None,
                  monitor: str | None = None, steps_per_update: int = OPTIMIZER_STEPS_PER_UPDATE) -> L.Trainer:
    """A Lightning Trainer from a `configs/trainer/*.yaml` dict; step counts in the config are updates.

    `steps_per_update`: optimiser steps Lightning counts per update (2 for GAN modules, 1 for a
    module with one optimiser). Checkpoints (every `checkpoint_every_n_steps` updates, plus
    last.ckpt) go to `exp_dir/checkpoints`, TensorBoard logs to `exp_dir/tensorboard`.
    """
    exp_dir = Path(exp_dir)
    tcfg = check_trainer_config(tcfg)
    if tcfg["threads"]:
        torch.set_num_threads(int(tcfg["threads"]))
    per = int(steps_per_update)
    checkpoint = ModelCheckpoint(dirpath=exp_dir / "checkpoints", filename="step{step:08d}", auto_insert_metric_name=False,
                                 every_n_train_steps=int(tcfg["checkpoint_every_n_steps"]) * per,
                                 save_last=True, save_top_k=-1 if monitor is None else 2, monitor=monitor)
    devices = int(tcfg["devices"])
    return L.Trainer(
        accelerator=tcfg["accelerator"], devices=devices, num_nodes=int(tcfg["num_nodes"]),
        strategy=make_strategy(tcfg["strategy"], devices), precision=tcfg["precision"],
        max_steps=int(tcfg["max_steps"]) * per, max_time=tcfg["max_time"], max_epochs=-1,
        val_check_interval=int(tcfg["val_every_n_steps"]), check_val_every_n_epoch=None,
        limit_val_batches=tcfg["limit_val_batches"], log_every_n_steps=int(tcfg["log_every_n_steps"]),
        logger=TensorBoardLogger(str(exp_dir), name="tensorboard", version=""),
        callbacks=[checkpoint, ProgressLog(int(tcfg["log_every_n_steps"]) * 10), *(extra_callbacks or [])],
        default_root_dir=str(exp_dir),
        enable_progress_bar=os.environ.get("VOXTOK_PROGRESS", "1") != "0", num_sanity_val_steps=0,
    )


def fit_and_export(module: L.LightningModule, train_loader, valid_loader, tcfg: dict[str, Any],
                   exp_dir: str | Path, name: str, export: Callable[[Path], Any],
                   steps_per_update: int = OPTIMIZER_STEPS_PER_UPDATE) -> Path:
    """Fit `module` (resuming from exp_dir's last.ckpt), then `export(exp_dir / "model")` on rank 0.

    Lightning stops gracefully on SIGTERM/Ctrl-C and returns normally; that becomes a SystemExit
    so a recipe never mistakes it for a finished stage (last.ckpt is there: a re-run resumes).
    Returns the export folder.
    """
    exp_dir = Path(exp_dir)
    trainer = build_trainer(tcfg, exp_dir, steps_per_update=steps_per_update)
    trainer.fit(module, train_loader, valid_loader, ckpt_path=last_checkpoint(exp_dir))
    updates = int(getattr(module, "updates", trainer.global_step))
    if trainer.interrupted or getattr(trainer, "received_sigterm", False):
        raise SystemExit(f"training interrupted after {updates} updates; re-run to resume")
    out = exp_dir / "model"
    if trainer.is_global_zero:
        export(out)
        print(f"exported {name} after {updates} updates to {out}")
    return out


def last_checkpoint(exp_dir: str | Path) -> str | None:
    """Path of exp_dir/checkpoints/last.ckpt when a previous run left one (for resuming).

    Says on stdout that training resumes, so recipe logs show it.
    """
    path = Path(exp_dir) / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    print(f"resuming from {path}", flush=True)
    return str(path)


def check_trainer_config(tcfg: dict[str, Any]) -> dict[str, Any]:
    """The `trainer:` block with defaults filled in; refuses unknown keys and settings that cannot
    work (the step counts must be >= 1) before any work is done."""
    merged = merge_strict(TRAINER_DEFAULTS, tcfg, "trainer")
    for key in REQUIRED_TRAINER_COUNTS:
        if int(merged[key] or 0) < 1:
            raise BadConfigError(f"trainer.{key} must be >= 1, got {merged[key]}")
    return merged
