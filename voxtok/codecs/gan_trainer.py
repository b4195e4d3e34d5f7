"""GAN training for waveform generators (codecs, vocoders) with Lightning manual optimisation.

The generator is any nn.Module with `training_forward(wav [B, 1, T], lengths [B]) ->
GeneratorOutput` (reconstruction + unweighted auxiliary losses) and `loss_names` (the names of
those losses, which `loss.aux` may weight); batch entries other than utts / wav / lengths (e.g.
teacher features for distillation) reach it as keyword arguments. The discriminators, the
adversarial / feature-matching / mel / waveform / STOI losses and two AdamW optimisers with warmup +
cosine schedules are set by the `discriminators`, `loss` and `optim` config blocks
(codecs/gan_config.py reads them). Adversarial and feature-matching terms are pooled over all
sub-discriminators, or weighed per discriminator family with `loss.families` (WavTokenizer's
reference weighting; see gan_config.py). Discriminators built with `num_embeddings` are conditioned
on the generator's `bandwidth_id` (the AdaLN id WavTokenizer decodes with; 0 when it has none), or,
when the generator has `train_bandwidth_ids` N > 0, on an id drawn uniformly from 0..N-1 at every
training step, which conditions the generator's forward (its `bandwidth_id` batch entry) too, as the
reference WavTokenizer trains. Validation uses the fixed id.

Lightning counts every optimiser step in `global_step`; both optimisers step once per batch, so
global_step = 2 x generator updates. Configs and logs speak of generator updates.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from voxtok.codecs.gan_config import POOLED, read_gan_config
from voxtok.codecs.modules.discriminators import build_discriminators
from voxtok.codecs.modules.losses import (
    MultiResolutionMelLoss, family_discriminator_loss, family_generator_losses, waveform_l1_loss,
)
from voxtok.codecs.modules.stoi_loss import StoiLoss
from voxtok.errors import BadConfigError
from voxtok.training.optim import build_optimizer, build_scheduler

# Lightning warns that manual-optimisation checkpoints hold post-step weights: that is what we want.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")


class GANModule(L.LightningModule):
    """Trains `generator` against discriminators built from `cfg["discriminators"]`.

    `cfg` is the codec/vocoder config (blocks: discriminators, loss, optim; name, model and data
    are the recipe's), read strictly by `read_gan_config`, whose messages name keys under `where`
    (e.g. "codec"); `max_steps` is the number of generator updates the cosine schedule spans.
    """

    optimizer_steps_per_update = 2  # generator + discriminator (Lightning counts both)

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
        self.families = gan.loss_families()
        self.train_bandwidth_ids = int(getattr(generator, "train_bandwidth_ids", 0) or 0)
        self.bandwidth_id = self._conditioning_id(generator)
        self.mel_weight = gan.mel.weight
        self.mel_loss = MultiResolutionMelLoss(sample_rate=sample_rate, base=gan.mel.base, **gan.mel.options)
        self.fm_weight = gan.feature_matching
        self.adv_weight = gan.adversarial_weight
        self.wav_weight = gan.waveform_l1
        self.stoi_weight = gan.stoi
        self.stoi_loss = StoiLoss(sample_rate) if self.stoi_weight else None
        self.aux_weights = gan.aux
        self.disc_start = gan.disc_start_step
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _conditioning_id(self, generator: torch.nn.Module) -> int | None:
        """The bandwidth id conditioned discriminators judge with (None when none is conditioned)."""
        tables = self.discriminator.conditioning
        if not tables:
            return None
        bandwidth_id = int(getattr(generator, "bandwidth_id", 0) or 0)
        small = {name: n for name, n in tables.items() if bandwidth_id >= n}
        if small:
            raise BadConfigError(f"the generator's bandwidth_id {bandwidth_id} is outside the discriminators' "
                                 f"num_embeddings {small}")
        small = {name: n for name, n in tables.items() if self.train_bandwidth_ids > n}
        if small:
            raise BadConfigError(f"the generator draws training bandwidth ids 0..{self.train_bandwidth_ids - 1} "
                                 f"(train_bandwidth_ids), more than the discriminators' num_embeddings {small}")
        return bandwidth_id

    def draw_bandwidth_id(self) -> torch.Tensor | None:
        """This training step's bandwidth id, [1] drawn uniformly from 0..train_bandwidth_ids - 1 (one
        id for the whole batch, as the reference WavTokenizer draws), or None: the fixed id is used."""
        if not self.train_bandwidth_ids:
            return None
        return torch.randint(self.train_bandwidth_ids, (1,), device=self.device)

    def discriminate(self, wav: torch.Tensor, bandwidth_id: torch.Tensor | None = None):
        """(logits, features) of the discriminators for wav [B, 1, T] (see discriminators.py), the
        conditioned ones judging with `bandwidth_id` (default: the generator's fixed id)."""
        if self.bandwidth_id is None:  # no discriminator is conditioned
            return self.discriminator(wav)
        return self.discriminator(wav, self.bandwidth_id if bandwidth_id is None else bandwidth_id)

    def by_family(self, values: list) -> dict[str, list]:
        """A per-sub-discriminator list -> family name -> its part ({"all": values} when pooled)."""
        return {POOLED: list(values)} if POOLED in self.families else self.discriminator.split(values)

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
    def generator_forward(self, batch: dict, bandwidth_id: torch.Tensor | None = None):
        """The generator's training forward on a batch; extra entries go as keyword arguments, and a
        drawn `bandwidth_id` (see `draw_bandwidth_id`) as one more."""
        extra = {k: v for k, v in batch.items() if k not in ("utts", "wav", "lengths")}
        if bandwidth_id is not None:
            extra["bandwidth_id"] = bandwidth_id
        return self.generator.training_forward(batch["wav"], batch["lengths"], step=int(self.updates), **extra)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        wav, lengths = batch["wav"], batch["lengths"]
        bandwidth_id = self.draw_bandwidth_id()
        out = self.generator_forward(batch, bandwidth_id)
        recon = out.recon
        adversarial = int(self.updates) >= self.disc_start
        logs: dict[str, float] = {}

        d_loss = None
        if adversarial:
            real_logits, _ = self.discriminate(wav, bandwidth_id)
            fake_logits, _ = self.discriminate(recon.detach(), bandwidth_id)
            d_loss, parts = family_discriminator_loss(self.families, self.by_family(real_logits),
                                                      self.by_family(fake_logits))
            logs["train/d_loss"] = float(d_loss.detach())
            if len(parts) > 1:
                logs.update({f"train/d_loss_{name}": float(v.detach()) for name, v in parts.items()})
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
            with torch.no_grad():  # feature matching detaches the real side: no graph needed
                _, real_feats = self.discriminate(wav, bandwidth_id)
            fake_logits, fake_feats = self.discriminate(recon, bandwidth_id)
            adv, fm, parts = family_generator_losses(self.families, self.by_family(fake_logits),
                                                     self.by_family(real_feats), self.by_family(fake_feats))
            g_loss = g_loss + self.adv_weight * adv + self.fm_weight * fm
            logs.update({"train/g_adv": float(adv.detach()), "train/fm": float(fm.detach())})
            if len(parts) > 1:
                for name, (adv_part, fm_part) in parts.items():
                    logs[f"train/g_adv_{name}"] = float(adv_part.detach())
                    logs[f"train/fm_{name}"] = float(fm_part.detach())
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
