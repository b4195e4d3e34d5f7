"""Lightning plumbing every VoxTok trainer shares (GAN codecs and vocoders, the CTC tokenizer, TTS).

`build_trainer` turns a `trainer:` config block (configs/trainer/*.yaml, read strictly by
`check_trainer_config`) into a Lightning Trainer whose step counts are model updates;
`fit_and_export` fits a module, resuming from the last checkpoint, and exports the trained model.
Multi-GPU / multi-node runs go through Lightning's DDP (`make_strategy`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from voxtok.config import merge_strict
from voxtok.errors import BadConfigError

# The `trainer:` block (configs/trainer/*.yaml); None marks the counts every config must set.
TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true",
    "max_steps": None, "max_time": None, "log_every_n_steps": None, "val_every_n_steps": None,
    "checkpoint_every_n_steps": None, "limit_val_batches": 1.0, "threads": None, "seed": 0,
}
REQUIRED_TRAINER_COUNTS = ("max_steps", "val_every_n_steps", "checkpoint_every_n_steps", "log_every_n_steps")


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
                  monitor: str | None = None, steps_per_update: int = 1) -> L.Trainer:
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
                   exp_dir: str | Path, name: str, export: Callable[[Path], Any]) -> Path:
    """Fit `module` (resuming from exp_dir's last.ckpt), then `export(exp_dir / "model")` on rank 0.

    Step counts in `tcfg` are updates; a module that steps several optimisers per update (a GAN:
    generator + discriminator) says how many in `optimizer_steps_per_update` (default 1).

    Lightning stops gracefully on SIGTERM/Ctrl-C and returns normally; that becomes a SystemExit
    so a recipe never mistakes it for a finished stage (last.ckpt is there: a re-run resumes).
    Returns the export folder.
    """
    exp_dir = Path(exp_dir)
    trainer = build_trainer(tcfg, exp_dir, steps_per_update=getattr(module, "optimizer_steps_per_update", 1))
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
