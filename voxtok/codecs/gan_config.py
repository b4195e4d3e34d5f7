"""The GAN trainer's config blocks (`discriminators`, `loss`, `optim` of a codec or vocoder config),
read strictly: an unknown key at any depth, or a `loss.aux` weight for a loss the generator never
produces (a misspelt weight would otherwise train that loss at 0), is a BadConfigError.

    discriminators: {names: [mpd, mrd, ...], options: {<name>: constructor kwargs}}
    loss: {mel: {weight, preset, log_floor, <MultiResolutionMelLoss kwargs>}, adversarial: hinge|lsgan,
           adversarial_weight, feature_matching, waveform_l1, stoi, aux: {<generator loss>: weight},
           families: {<discriminator name>: {adversarial, weight, reduction, feature_matching_reduction}}}
    optim: `voxtok.training.optim.OptimConfig` keys + disc_start_step (generator updates before
           the discriminators join)

Adversarial and feature-matching terms: without `loss.families` (the default) every
sub-discriminator of every family is pooled into one mean, with `loss.adversarial` as the kind.
With `loss.families`, each discriminator family (a name of `discriminators.names`) is its own term:
    adversarial: hinge | lsgan (default `loss.adversarial`)
    weight: scales the family's discriminator loss, generator adversarial loss and feature matching
        (default 1; Vocos weights its MRD by 0.1)
    reduction, feature_matching_reduction: mean | sum over the family's sub-discriminators (default mean)
and a family left out of `loss.families` takes these defaults. `loss.adversarial_weight` and
`loss.feature_matching` still multiply the generator's totals. WavTokenizer's reference weighting is
configs/codec/wavtokenizer_75_paper.yaml's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from voxtok.audio import MelConfig
from voxtok.codecs.modules.discriminators import DISCRIMINATORS
from voxtok.codecs.modules.losses import REDUCTIONS, FamilyLoss, MultiResolutionMelLoss
from voxtok.config import check_keys, check_weights, kwargs_for, merge_strict, require_mapping
from voxtok.errors import BadConfigError
from voxtok.training.optim import OptimConfig, read_optim_config

# The GAN recipes' defaults: fused AdamW (on 2 CPU cores 700 tiny-WavTokenizer updates took 96 s
# instead of 105 s), HiFi-GAN's betas, a clip high enough to catch only blow-ups.
OPTIM_DEFAULTS = {"betas": (0.8, 0.9), "weight_decay": 0.0, "fused": True, "warmup_steps": 0,
                  "final_lr_ratio": 0.0, "grad_clip": 1e3}
LOSS_DEFAULTS = {"mel": None, "adversarial": "hinge", "adversarial_weight": 1.0, "feature_matching": 1.0,
                 "waveform_l1": 0.0, "stoi": 0.0, "aux": None, "families": None}
ADVERSARIAL_KINDS = ("hinge", "lsgan")
# What all sub-discriminators pooled into one mean are called in logs (no `loss.families`).
POOLED = "all"
# Blocks of a codec / vocoder config besides the GAN's own: the recipes read them.
MODEL_BLOCKS = ("name", "model", "data")


@dataclass
class MelLossConfig:
    """The multi-resolution mel loss: its weight, mel front end and `MultiResolutionMelLoss` kwargs."""

    weight: float
    base: MelConfig
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GANConfig:
    """Everything `GANModule` reads from a codec / vocoder config."""

    discriminators: list[str]
    discriminator_options: dict[str, dict[str, Any]]
    mel: MelLossConfig
    adversarial: str
    adversarial_weight: float
    feature_matching: float
    waveform_l1: float
    stoi: float
    aux: dict[str, float]
    optim: OptimConfig
    disc_start_step: int
    # family name -> how its terms enter the losses; None: every sub-discriminator pooled (one mean)
    families: dict[str, FamilyLoss] | None = None

    @property
    def discriminator_block(self) -> dict[str, Any]:
        """The `discriminators:` block these discriminators were built from ({names, options})."""
        return {"names": list(self.discriminators),
                "options": {name: dict(options) for name, options in self.discriminator_options.items()}}

    def loss_families(self) -> dict[str, FamilyLoss]:
        """Family name -> its FamilyLoss; {POOLED: ...} when the config pools every sub-discriminator."""
        if self.families is None:
            return {POOLED: FamilyLoss(adversarial=self.adversarial)}
        return dict(self.families)


def read_gan_config(cfg: Mapping[str, Any], loss_names: Collection[str], where: str = "") -> GANConfig:
    """Read a codec / vocoder config's GAN blocks; `loss_names`: the losses the generator produces.

    `where` names the config in messages (e.g. "codec": errors say "codec.loss.aux.distil_lm").
    """
    path = (lambda key: f"{where}.{key}" if where else key)
    cfg = require_mapping(cfg, where or "config")
    check_keys(cfg, ("discriminators", "loss", "optim", *MODEL_BLOCKS), where)
    names, options = read_discriminators(cfg.get("discriminators"), path("discriminators"))
    loss = merge_strict(LOSS_DEFAULTS, cfg.get("loss"), path("loss"))
    if loss["adversarial"] not in ADVERSARIAL_KINDS:
        raise BadConfigError(f"config '{path('loss.adversarial')}' must be one of {list(ADVERSARIAL_KINDS)}, "
                             f"got {loss['adversarial']!r}")
    optim = dict(require_mapping(cfg.get("optim"), path("optim")))
    disc_start_step = int(optim.pop("disc_start_step", 0))
    return GANConfig(
        discriminators=names, discriminator_options=options, mel=read_mel_loss(loss["mel"], path("loss.mel")),
        adversarial=str(loss["adversarial"]), adversarial_weight=float(loss["adversarial_weight"]),
        feature_matching=float(loss["feature_matching"]), waveform_l1=float(loss["waveform_l1"]),
        stoi=float(loss["stoi"]), aux=check_weights(loss["aux"], loss_names, path("loss.aux")),
        optim=read_optim_config(optim, OPTIM_DEFAULTS, path("optim")), disc_start_step=disc_start_step,
        families=read_families(loss["families"], names, str(loss["adversarial"]), path("loss.families")))


def read_families(block: Mapping[str, Any] | None, names: list[str], adversarial: str,
                  where: str) -> dict[str, FamilyLoss] | None:
    """`loss.families:` -> discriminator name -> FamilyLoss, for every name in `names` (those the
    block leaves out take the defaults), or None when the block is absent (pooled terms)."""
    if block is None:
        return None
    block = require_mapping(block, where)
    check_keys(block, names, where)
    defaults = {"adversarial": adversarial, "weight": 1.0, "reduction": "mean", "feature_matching_reduction": "mean"}
    families = {}
    for name in names:
        here = f"{where}.{name}"
        family = merge_strict(defaults, block.get(name), here)
        if family["adversarial"] not in ADVERSARIAL_KINDS:
            raise BadConfigError(f"config '{here}.adversarial' must be one of {list(ADVERSARIAL_KINDS)}, "
                                 f"got {family['adversarial']!r}")
        for key in ("reduction", "feature_matching_reduction"):
            if family[key] not in REDUCTIONS:
                raise BadConfigError(f"config '{here}.{key}' must be one of {list(REDUCTIONS)}, got {family[key]!r}")
        try:
            weight = float(family["weight"])
        except (TypeError, ValueError):
            weight = -1.0
        if weight < 0:
            raise BadConfigError(f"config '{here}.weight' must be a number >= 0, got {family['weight']!r}")
        families[name] = FamilyLoss(str(family["adversarial"]), weight, str(family["reduction"]),
                                    str(family["feature_matching_reduction"]))
    return families


def read_discriminators(block: Mapping[str, Any] | None, where: str) -> tuple[list[str], dict[str, dict]]:
    """`discriminators:` -> (names, options by name); options are checked against each constructor."""
    block = require_mapping(block, where)
    check_keys(block, ("names", "options"), where)
    if not block.get("names"):
        raise BadConfigError(f"{where}.names is required (choose from {sorted(DISCRIMINATORS)})")
    names = [block["names"]] if isinstance(block["names"], str) else list(block["names"])
    options = require_mapping(block.get("options"), f"{where}.options")
    check_keys(options, names, f"{where}.options")
    checked = {}
    for name, opts in options.items():
        # An unknown name is left to build_discriminators, which lists the choices.
        cls = DISCRIMINATORS.get(name)
        checked[name] = kwargs_for(cls, opts, f"{where}.options.{name}") if cls else dict(opts or {})
    return names, checked


def read_mel_loss(block: Mapping[str, Any] | None, where: str) -> MelLossConfig:
    """`loss.mel:` -> its weight (required), mel front end (`preset`, default vocos, and `log_floor`:
    how much the loss cares about near-silent bins) and the `MultiResolutionMelLoss` kwargs."""
    options = dict(require_mapping(block, where))
    if options.get("weight") is None:
        raise BadConfigError(f"{where}.weight is required")
    weight = float(options.pop("weight"))
    base = MelConfig.preset(options.pop("preset", "vocos"))
    if "log_floor" in options:
        base = base.with_(log_floor=float(options.pop("log_floor")))
    options = kwargs_for(MultiResolutionMelLoss, options, where, exclude=("sample_rate", "base"))
    return MelLossConfig(weight, base, options)
