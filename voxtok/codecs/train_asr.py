"""CTC training of a recognizer with a tokenizer inside (the S3 tokenizer) in Lightning.

The model is any nn.Module with
    training_losses(wav [B, 1, T], lengths [B], targets [B, N], target_lengths [B], step) ->
        (unweighted losses by name, stats floats)
    loss_names (the names of those losses),
    transcribe(wav, lengths) -> list[str] and a `vocab` with `normalize(text)`;
the `loss` block of the codec config weights the losses (a weight for a loss the model does not
produce is an error), `optim` sets AdamW with linear warmup + cosine decay and the gradient-norm
clip (`voxtok.training.optim`). Validation logs the CTC loss and the greedy CER / WER.
Train it with `voxtok.training.lightning.fit_and_export`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from voxtok.config import check_keys, check_weights
from voxtok.errors import BadConfigError
from voxtok.training.optim import build_optimizer, build_scheduler, read_optim_config

DEFAULT_LOSS_WEIGHTS = {"ctc": 1.0, "commit": 0.25, "codebook": 1.0}
OPTIM_DEFAULTS = {"betas": (0.9, 0.98), "weight_decay": 0.0, "warmup_steps": 0, "final_lr_ratio": 0.0,
                  "grad_clip": 5.0}
CONFIG_BLOCKS = ("name", "model", "loss", "optim", "data")  # of an S3 codec config


class CTCModule(L.LightningModule):
    """Trains `model` by weighted `training_losses`; one optimiser step per batch.

    `cfg` is the codec config (blocks: optim, loss; name, model and data are the recipe's), read
    strictly; messages name keys under `where` (e.g. "codec"); `max_steps` is the number of
    updates the cosine schedule spans.
    """

    def __init__(self, model: torch.nn.Module, cfg: dict[str, Any], max_steps: int, where: str = ""):
        super().__init__()
        path = (lambda key: f"{where}.{key}" if where else key)
        check_keys(cfg, CONFIG_BLOCKS, where)
        self.model = model
        self.optim = read_optim_config(cfg.get("optim"), OPTIM_DEFAULTS, path("optim"))
        self.max_updates = max_steps
        given = check_weights(cfg.get("loss"), getattr(model, "loss_names", ()), path("loss"))
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **given}
        # Counts updates for the quantizer warm-up and ProgressLog; saved in checkpoints.
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._val_refs: list[str] = []
        self._val_hyps: list[str] = []
        self._val_ctc: list[float] = []

    def configure_optimizers(self):
        opt = build_optimizer(self.model.parameters(), self.optim)
        sched = build_scheduler(opt, self.optim, self.max_updates)
        return [opt], [{"scheduler": sched, "interval": "step"}]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # The clip lives in the model config (it is part of the recipe), not in the trainer config.
        self.clip_gradients(optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm")

    def _weighted(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        unknown = set(losses) - set(self.loss_weights)
        if unknown:
            raise BadConfigError(f"no weight for losses {sorted(unknown)} in the config's loss block")
        return sum(self.loss_weights[name] * value for name, value in losses.items())

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses, stats = self.model.training_losses(batch["wav"], batch["lengths"], batch["targets"],
                                                   batch["target_lengths"], step=int(self.updates))
        loss = self._weighted(losses)
        self.updates += 1
        size = batch["wav"].shape[0]
        logs = {f"train/{name}": float(value.detach()) for name, value in losses.items()}
        logs.update({f"train/{name}": value for name, value in stats.items()})
        logs["train/loss"] = float(loss.detach())
        logs["train/lr"] = self.lr_schedulers().get_last_lr()[0]
        self.log_dict(logs, batch_size=size)
        self.log("ctc", logs["train/ctc"], prog_bar=True, logger=False, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        size = batch["wav"].shape[0]
        losses, _ = self.model.training_losses(batch["wav"], batch["lengths"], batch["targets"], batch["target_lengths"],
                                               step=int(self.updates))
        self.log("val/ctc", losses["ctc"], prog_bar=True, sync_dist=True, batch_size=size)
        self._val_ctc += [float(losses["ctc"])] * size
        hyps = self.model.transcribe(batch["wav"], batch["lengths"])
        self._val_refs += [self.model.vocab.normalize(t) for t in batch["texts"]]
        self._val_hyps += hyps

    def on_validation_epoch_end(self) -> None:
        import jiwer

        if not self._val_refs:
            return
        cer, wer = jiwer.cer(self._val_refs, self._val_hyps), jiwer.wer(self._val_refs, self._val_hyps)
        # Each rank scores its own share; the mean over ranks is close enough for monitoring.
        self.log_dict({"val/cer": cer, "val/wer": wer}, sync_dist=True)
        if self.trainer.is_global_zero:
            print(f"validation after {int(self.updates)} updates: ctc={sum(self._val_ctc) / len(self._val_ctc):.3f} "
                  f"cer={cer:.3f} wer={wer:.3f} | ref: {self._val_refs[0]!r} | hyp: {self._val_hyps[0]!r}", flush=True)
        self._val_refs, self._val_hyps, self._val_ctc = [], [], []

