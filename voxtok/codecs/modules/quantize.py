"""Quantizers that turn continuous latents [B, D, T] into integer codes [B, Q, T].

One family with switches rather than copies:

* `VectorQuantizer` -- one codebook; EMA or gradient-trained; k-means initialisation on the first
  training batch; dead-code re-seeding from the batch; optional in/out projections when the
  codebook lives in a smaller space than the model.
* `ResidualVQ` -- a stack of `VectorQuantizer`s, each coding what the previous ones left over,
  with optional SoundStream-style quantizer dropout.
* `FSQ` -- finite scalar quantization: no codebook to learn, an implicit grid of prod(levels) codes.

All of them return a `QuantizerOutput` and share one interface: `forward(x, n_q=None, mask=None)`,
`encode(x, n_q=None, mask=None) -> codes [B, Q, T]`, `decode(codes [B, Q, T]) -> [B, D, T]`, `usage`,
`reset_usage`. Q = 1 for the one-codebook quantizers, so a codec never reshapes their codes.

Distributed training: a training-mode forward of `VectorQuantizer` / `ResidualVQ` is a collective
when torch.distributed is initialised (every rank must call it, as with any DDP forward). Cluster
counts and sums are all-reduced, so every rank applies the same EMA update; k-means seeds and
dead-code replacements are pooled from all ranks and broadcast from rank 0. The codebooks therefore
stay bit-identical across ranks without relying on DDP's buffer broadcast. Eval-mode forwards,
`encode` and `decode` never communicate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.config import kwargs_for
from voxtok.errors import BadConfigError, VoxTokError

__all__ = [
    "QuantizerOutput",
    "VectorQuantizer",
    "ResidualVQ",
    "FSQ",
    "QUANTIZERS",
    "build_quantizer",
]


@dataclass
class QuantizerOutput:
    """What every quantizer's forward returns.

    Attributes:
        quantized: [B, D, T] quantized latent; carries a straight-through gradient to the input.
        codes: [B, Q, T] int64 code indices (Q = 1 for `VectorQuantizer` and `FSQ`).
        commit_loss: scalar, UNWEIGHTED commitment MSE between each layer's input (in codebook
            space) and its detached code vector, averaged over valid frames and channels and
            summed over layers. Trainers apply their own weight (e.g. 1000 in WavTokenizer).
        codebook_loss: scalar, MSE pulling learnable (non-EMA) codebooks towards the detached
            inputs, summed over layers; zero for EMA codebooks and FSQ.
        loss: scalar, sum over layers of `commitment_weight * commit_loss + codebook_loss`:
            the quantizer's own auxiliary loss, for trainers that don't weight the parts themselves.
        layer_outputs: one [B, D, T] quantized tensor per layer (each with its straight-through
            gradient); layer_outputs[0] is the RVQ-1 output that semantic distillation targets.
        perplexity: [Q] float, exp(entropy) of each layer's code histogram over the valid frames
            of this batch (1 = one code used, codebook_size = uniform use).
        batch_usage: [Q] float, fraction of each layer's codebook hit at least once in this batch.
    """

    quantized: Tensor
    codes: Tensor
    commit_loss: Tensor
    codebook_loss: Tensor
    loss: Tensor
    layer_outputs: list[Tensor] = field(default_factory=list)
    perplexity: Tensor | None = None
    batch_usage: Tensor | None = None


# ----------------------------------------------------------------------------------------------
# distributed helpers: all of them are no-ops in a single process


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum `tensor` in place over all ranks."""
    if _world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _broadcast_(tensor: Tensor) -> Tensor:
    """Overwrite `tensor` in place with rank 0's copy."""
    if _world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def _sample_rows(vectors: Tensor, n: int) -> Tensor | None:
    """Draw n rows from `vectors` [N, D] -> [n, D], pooled over all ranks, identical on each.

    Rows are drawn without replacement when there are enough. Returns None on every rank when no
    rank has any row (e.g. a fully padded batch), so callers skip the update consistently.
    """
    count, width = vectors.shape
    if count >= n:
        local = vectors[torch.randperm(count, device=vectors.device)[:n]]
    elif count > 0:
        local = vectors[torch.randint(count, (n,), device=vectors.device)]
    else:
        local = vectors.new_zeros(n, width)
    world = _world_size()
    if world == 1:
        return local if count > 0 else None
    # Each rank contributes n candidates; rank 0 picks n of the pooled ones and broadcasts them,
    # so one rank with a short batch cannot leave many codes seeded with duplicates.
    has_rows = torch.tensor([float(count > 0)], device=vectors.device)
    candidates = [torch.empty_like(local) for _ in range(world)]
    flags = [torch.empty_like(has_rows) for _ in range(world)]
    dist.all_gather(candidates, local.contiguous())
    dist.all_gather(flags, has_rows)
    pooled = [c for c, f in zip(candidates, flags) if f.item() > 0]
    if not pooled:
        return None
    pool = torch.cat(pooled)
    chosen = pool[torch.randperm(pool.shape[0], device=pool.device)[:n]].contiguous()
    return _broadcast_(chosen)


# ----------------------------------------------------------------------------------------------
# codebook arithmetic


def _nearest(vectors: Tensor, codebook: Tensor) -> Tensor:
    """Index of the closest (Euclidean) codebook row: vectors [N, D], codebook [K, D] -> [N] int64."""
    # ||v||^2 is constant per row, so it does not change the argmin and is left out.
    distance = codebook.pow(2).sum(1)[None, :] - 2 * vectors @ codebook.t()
    return distance.argmin(dim=1)


def _kmeans(vectors: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor] | None:
    """Lloyd's k-means over the rows of all ranks: vectors [N, D] -> (centroids [k, D], counts [k]).

    Each rank assigns its own rows; sums and counts are all-reduced, so every rank computes the
    same centroids. Clusters that end up empty keep their seed (dead-code re-seeding deals with
    them). Returns None when no rank has data.
    """
    centroids = _sample_rows(vectors, k)
    if centroids is None:
        return None
    counts = vectors.new_zeros(k)
    for step in range(iters + 1):
        assign = _nearest(vectors, centroids)
        stats = vectors.new_zeros(k, vectors.shape[1] + 1)
        stats[:, :-1].index_add_(0, assign, vectors)
        stats[:, -1] = torch.bincount(assign, minlength=k).to(vectors.dtype)
        _all_reduce_sum_(stats)
        counts = stats[:, -1]
        if step == iters:  # the last pass only measures the final cluster sizes
            break
        means = stats[:, :-1] / counts.clamp(min=1)[:, None]
        centroids = torch.where(counts[:, None] > 0, means, centroids)
    return centroids, counts


def _valid_rows(mask: Tensor | None, batch: int, frames: int, device: torch.device) -> Tensor:
    """Flatten a [B, T] validity mask (True = real frame) to [B*T] bool; all True when None."""
    if mask is None:
        return torch.ones(batch * frames, dtype=torch.bool, device=device)
    if mask.shape != (batch, frames):
        raise ValueError(f"mask must be [B, T] = {(batch, frames)}, got {tuple(mask.shape)}")
    return mask.to(device=device, dtype=torch.bool).reshape(-1)


def _masked_mse(a: Tensor, b: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error over the valid rows: a, b [N, D], valid [N] bool -> scalar."""
    weight = valid.to(a.dtype)[:, None]
    denominator = (weight.sum() * a.shape[1]).clamp(min=1)
    return ((a - b).pow(2) * weight).sum() / denominator


def _check_codes(codes: Tensor, codebook_size: int) -> None:
    """Out-of-range codes would index garbage or trip a CUDA assert; fail with a clear message."""
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise VoxTokError(
            f"codes out of range [0, {codebook_size}): found min {int(codes.min())}, "
            f"max {int(codes.max())}"
        )


def _one_codebook(codes: Tensor) -> Tensor:
    """Codes [B, 1, T] of a one-codebook quantizer -> their only layer [B, T]."""
    if codes.dim() != 3 or codes.shape[1] != 1:
        raise VoxTokError(f"one-codebook codes must be [B, 1, T], got {tuple(codes.shape)}")
    return codes[:, 0]


def _check_one_layer(n_q: int | None) -> None:
    """One-codebook quantizers take n_q for interface symmetry with ResidualVQ: None or 1."""
    if n_q not in (None, 1):
        raise BadConfigError(f"a one-codebook quantizer has n_q = 1, asked for {n_q}")


class _CodeUsage(nn.Module):
    """Running histogram of code use for one codebook (diagnostics only, never in checkpoints)."""

    def __init__(self, codebook_size: int):
        super().__init__()
        self.codebook_size = codebook_size
        # Non-persistent: usage is a property of the data seen by this process, not of the model.
        self.register_buffer("code_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    def _record_usage(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Add valid codes [M] to the running counts; return this batch's (perplexity, usage)."""
        histogram = torch.bincount(codes.detach().reshape(-1), minlength=self.codebook_size)
        self.code_counts += histogram
        total = histogram.sum()
        probs = histogram.float() / total.clamp(min=1)
        entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
        perplexity = torch.where(total > 0, entropy.exp(), torch.zeros_like(entropy))
        usage = (histogram > 0).float().mean()
        return perplexity, usage

    def usage(self) -> Tensor:
        """[Q = 1] fraction of codes used at least once by forward() since the last reset."""
        return (self.code_counts > 0).float().mean().reshape(1)

    def reset_usage(self) -> None:
        """Forget the running code counts."""
        self.code_counts.zero_()


# ----------------------------------------------------------------------------------------------
# vector quantizer


class VectorQuantizer(_CodeUsage):
    """One codebook of `codebook_size` vectors; frames are replaced by their nearest code.

    Args:
        dim: channels D of the input [B, D, T].
        codebook_size: number of codes K.
        codebook_dim: width of the codebook; when it differs from `dim`, Linear layers project
            into and out of the codebook space (the projections are trained by the gradient).
        decay: EMA decay of cluster sizes and sums.
        ema: True -> codebook updated by EMA of assigned frames (a buffer); False -> codebook is
            an nn.Parameter trained by `codebook_loss`.
        kmeans_init: run k-means on the first training batch and start the codebook there.
        kmeans_iters: Lloyd iterations for that initialisation.
        dead_code_threshold: codes whose EMA cluster size (expected frames per global batch)
            drops below this are re-seeded with random frames of the batch; 0 disables.
        epsilon: Laplace smoothing of the EMA cluster sizes (avoids dividing by ~0).
        commitment_weight: weight of the commitment term inside `QuantizerOutput.loss`.

    Without k-means init the EMA cluster sizes start at 1, so with the default threshold every
    code is re-seeded from the first training batch: a data-driven start either way.
    """

    n_q = 1

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        decay: float = 0.99,
        ema: bool = True,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
        epsilon: float = 1e-5,
        commitment_weight: float = 1.0,
    ):
        super().__init__(codebook_size)
        if dim < 1 or codebook_size < 1:
            raise BadConfigError(f"VectorQuantizer needs dim >= 1 and codebook_size >= 1, got {dim}, {codebook_size}")
        if not 0.0 <= decay < 1.0:
            raise BadConfigError(f"VectorQuantizer decay must be in [0, 1), got {decay}")
        self.dim = dim
        self.codebook_dim = codebook_dim or dim
        self.decay = decay
        self.ema = ema
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.epsilon = epsilon
        self.commitment_weight = commitment_weight
        projected = self.codebook_dim != dim
        self.project_in = nn.Linear(dim, self.codebook_dim) if projected else nn.Identity()
        self.project_out = nn.Linear(self.codebook_dim, dim) if projected else nn.Identity()

        initial = torch.randn(codebook_size, self.codebook_dim)
        if ema:
            self.register_buffer("codebook", initial)
            # Sums start consistent with sizes of 1, so codebook == sum / size from the outset.
            self.register_buffer("ema_embed_sum", initial.clone())
        else:
            self.codebook = nn.Parameter(initial)
        # Tracked in both modes: dead-code detection needs it even when gradients move the codes.
        self.register_buffer("ema_cluster_size", torch.ones(codebook_size))
        # Persistent so a loaded checkpoint never re-runs k-means over a trained codebook.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    # -- public API ------------------------------------------------------------------------

    def forward(self, x: Tensor, n_q: int | None = None, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize x [B, D, T]; mask [B, T] bool marks valid frames (None = all valid); n_q None or 1.

        In training mode this also initialises (k-means), updates (EMA) and re-seeds the
        codebook; padded frames never touch those statistics nor the losses. Their codes and
        quantized values are still computed (so shapes stay [B, *, T]) but carry no meaning.
        Returns a `QuantizerOutput` with codes [B, 1, T].
        """
        _check_one_layer(n_q)
        batch, _, frames = x.shape
        latent = self.project_in(x.transpose(1, 2))  # [B, T, Dc]
        valid = _valid_rows(mask, batch, frames, x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            # Distances and EMA sums in float32: bf16 argmins flip between near-equal codes.
            flat = latent.reshape(-1, self.codebook_dim).float()
            if self.training and not bool(self.initialized):
                self._kmeans_init(flat.detach()[valid])
            codebook = self.codebook.float()
            codes = _nearest(flat.detach(), codebook.detach())
            hard = F.embedding(codes, codebook)  # grad reaches a learnable codebook only
            commit_loss = _masked_mse(flat, hard.detach(), valid)
            if self.ema:
                codebook_loss = commit_loss.new_zeros(())
            else:
                codebook_loss = _masked_mse(hard, flat.detach(), valid)
            if self.training:
                self._update(flat.detach()[valid], codes[valid])
            # Straight-through: the value is exactly `hard` (flat - flat == 0 in floating point),
            # so eval output equals decode(encode(x)) bit for bit; the gradient is the identity.
            straight = hard.detach() + (flat - flat.detach())
        quantized = self.project_out(straight.to(latent.dtype).reshape(batch, frames, -1)).transpose(1, 2)
        perplexity, batch_usage = self._record_usage(codes[valid])
        return QuantizerOutput(
            quantized=quantized,
            codes=codes.reshape(batch, 1, frames),
            commit_loss=commit_loss,
            codebook_loss=codebook_loss,
            loss=self.commitment_weight * commit_loss + codebook_loss,
            layer_outputs=[quantized],
            perplexity=perplexity.reshape(1),
            batch_usage=batch_usage.reshape(1),
        )

    def encode(self, x: Tensor, n_q: int | None = None, mask: Tensor | None = None) -> Tensor:
        """x [B, D, T] -> codes [B, 1, T] int64 (n_q None or 1). Never updates statistics.

        `mask` is accepted for interface symmetry only: quantization is per frame, so padding
        cannot change the codes of valid frames.
        """
        _check_one_layer(n_q)
        batch, _, frames = x.shape
        latent = self.project_in(x.transpose(1, 2))
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = latent.reshape(-1, self.codebook_dim).float()
            codes = _nearest(flat, self.codebook.float())
        return codes.reshape(batch, 1, frames)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, 1, T] int64 -> quantized latent [B, D, T]."""
        codes = _one_codebook(codes)
        _check_codes(codes, self.codebook_size)
        with torch.autocast(device_type=codes.device.type, enabled=False):
            vectors = F.embedding(codes, self.codebook.float())  # [B, T, Dc]
        dtype = self.project_out.weight.dtype if isinstance(self.project_out, nn.Linear) else vectors.dtype
        return self.project_out(vectors.to(dtype)).transpose(1, 2)

    @torch.no_grad()
    def init_codebook(self, vectors: Tensor, counts: Tensor | None = None) -> None:
        """Load a codebook [K, codebook_dim] (e.g. from an external k-means) and mark it initialised.

        `counts` [K] are the matching cluster sizes; by default max(dead_code_threshold, 1), so
        the codes are not re-seeded at once. No communication: under DDP pass the same tensors
        on every rank.
        """
        if vectors.shape != (self.codebook_size, self.codebook_dim):
            raise BadConfigError(
                f"init_codebook expects [{self.codebook_size}, {self.codebook_dim}], got {tuple(vectors.shape)}"
            )
        if counts is None:
            counts = torch.full((self.codebook_size,), max(self.dead_code_threshold, 1.0))
        vectors = vectors.to(self.codebook)
        counts = counts.to(self.ema_cluster_size)
        self.codebook.data.copy_(vectors)
        self.ema_cluster_size.copy_(counts)
        if self.ema:
            self.ema_embed_sum.copy_(vectors * counts[:, None])
        self.initialized.fill_(True)

    # -- training-time codebook maintenance --------------------------------------------------

    @torch.no_grad()
    def _kmeans_init(self, vectors: Tensor) -> None:
        """k-means over the valid frames [M, Dc] of all ranks becomes the starting codebook."""
        result = _kmeans(vectors, self.codebook_size, self.kmeans_iters)
        if result is not None:  # a fully padded batch everywhere: try again next batch
            self.init_codebook(*result)

    @torch.no_grad()
    def _update(self, vectors: Tensor, codes: Tensor) -> None:
        """EMA update from valid frames [M, Dc] and their codes [M], then dead-code re-seeding."""
        stats = vectors.new_zeros(self.codebook_size, self.codebook_dim + 1)
        if self.ema:
            stats[:, :-1].index_add_(0, codes, vectors)
        stats[:, -1] = torch.bincount(codes, minlength=self.codebook_size).to(vectors.dtype)
        _all_reduce_sum_(stats)  # one collective for sums and counts of the global batch
        self.ema_cluster_size.mul_(self.decay).add_(stats[:, -1], alpha=1 - self.decay)
        if self.ema:
            self.ema_embed_sum.mul_(self.decay).add_(stats[:, :-1], alpha=1 - self.decay)
            total = self.ema_cluster_size.sum()
            # Laplace smoothing keeps a nearly unused code from dividing its sum by ~0.
            smoothed = (self.ema_cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
            self.codebook.copy_(self.ema_embed_sum / smoothed.clamp(min=self.epsilon)[:, None])
        self._reseed_dead_codes(vectors)

    @torch.no_grad()
    def _reseed_dead_codes(self, vectors: Tensor) -> None:
        """Move codes used less than the threshold onto random valid frames [M, Dc] of the batch."""
        if self.dead_code_threshold <= 0:
            return
        dead = self.ema_cluster_size < self.dead_code_threshold  # identical on all ranks
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        replacement = _sample_rows(vectors, n_dead)
        if replacement is None:
            return
        self.codebook.data[dead] = replacement.to(self.codebook.dtype)
        # Credit the new code with exactly the threshold: it survives only if frames pick it.
        self.ema_cluster_size[dead] = self.dead_code_threshold
        if self.ema:
            self.ema_embed_sum[dead] = replacement * self.dead_code_threshold


# ----------------------------------------------------------------------------------------------
# residual vector quantizer


class ResidualVQ(nn.Module):
    """`n_q` VectorQuantizers in sequence, each quantizing the residual the previous ones left.

    Args mirror `VectorQuantizer` (shared by every layer), plus:
        n_q: number of layers (codebooks).
        quantizer_dropout: in training, when forward() gets no explicit n_q, use a random number
            of layers 1..n_q per batch (SoundStream), so any prefix of codebooks decodes well.
            Under DDP rank 0's draw is broadcast so all ranks run the same collectives.

    The residual passed on is `residual - layer_output` with the straight-through output, as in
    EnCodec/SpeechTokenizer: the summed output then has an identity gradient to the input instead
    of n_q identities, and later layers' commitment terms do not pull on the encoder.
    """

    def __init__(
        self,
        n_q: int,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        decay: float = 0.99,
        ema: bool = True,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
        epsilon: float = 1e-5,
        commitment_weight: float = 1.0,
        quantizer_dropout: bool = False,
    ):
        super().__init__()
        if n_q < 1:
            raise BadConfigError(f"ResidualVQ needs n_q >= 1, got {n_q}")
        self.n_q = n_q
        self.dim = dim
        self.codebook_size = codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            VectorQuantizer(
                dim,
                codebook_size,
                codebook_dim=codebook_dim,
                decay=decay,
                ema=ema,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                dead_code_threshold=dead_code_threshold,
                epsilon=epsilon,
                commitment_weight=commitment_weight,
            )
            for _ in range(n_q)
        )

    def _layer_count(self, n_q: int | None, device: torch.device) -> int:
        if n_q is not None:
            if not 1 <= n_q <= self.n_q:
                raise BadConfigError(f"n_q must be in [1, {self.n_q}], got {n_q}")
            return n_q
        if self.training and self.quantizer_dropout:
            draw = torch.randint(1, self.n_q + 1, (1,), device=device)
            return int(_broadcast_(draw))
        return self.n_q

    def forward(self, x: Tensor, n_q: int | None = None, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize x [B, D, T] with the first n_q layers (all, or a random count under dropout).

        mask [B, T] bool marks valid frames. Returns codes [B, n_used, T]; losses are summed
        over the layers used; layer_outputs holds each layer's [B, D, T] contribution.
        """
        count = self._layer_count(n_q, x.device)
        residual = x
        quantized = torch.zeros_like(x)
        outputs: list[QuantizerOutput] = []
        for layer in self.layers[:count]:
            out = layer(residual, mask=mask)
            residual = residual - out.quantized
            quantized = quantized + out.quantized
            outputs.append(out)
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.cat([o.codes for o in outputs], dim=1),
            commit_loss=torch.stack([o.commit_loss for o in outputs]).sum(),
            codebook_loss=torch.stack([o.codebook_loss for o in outputs]).sum(),
            loss=torch.stack([o.loss for o in outputs]).sum(),
            layer_outputs=[o.quantized for o in outputs],
            perplexity=torch.cat([o.perplexity for o in outputs]),
            batch_usage=torch.cat([o.batch_usage for o in outputs]),
        )

    def encode(self, x: Tensor, n_q: int | None = None, mask: Tensor | None = None) -> Tensor:
        """x [B, D, T] -> codes [B, n_q, T] int64 (all layers when n_q is None). No statistics change.

        `mask` is accepted for interface symmetry; codes of valid frames never depend on padding.
        """
        count = self.n_q if n_q is None else self._layer_count(n_q, x.device)
        residual = x
        codes = []
        for layer in self.layers[:count]:
            layer_codes = layer.encode(residual)  # [B, 1, T]
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return torch.cat(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, Q, T] with 1 <= Q <= n_q -> [B, D, T], the sum of the first Q layers."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_q:
            raise VoxTokError(f"ResidualVQ codes must be [B, 1..{self.n_q}, T], got {tuple(codes.shape)}")
        quantized = None
        for index, layer in enumerate(self.layers[: codes.shape[1]]):
            part = layer.decode(codes[:, index : index + 1])
            # Same accumulation order as forward(), so eval outputs match exactly.
            quantized = torch.zeros_like(part) + part if quantized is None else quantized + part
        return quantized

    def usage(self) -> Tensor:
        """[n_q] fraction of each layer's codes used by forward() since the last reset."""
        return torch.cat([layer.usage() for layer in self.layers])

    def reset_usage(self) -> None:
        """Forget every layer's running code counts."""
        for layer in self.layers:
            layer.reset_usage()


# ----------------------------------------------------------------------------------------------
# finite scalar quantization


class FSQ(_CodeUsage):
    """Finite scalar quantization (Mentzer et al. 2023): round each of len(levels) bounded
    channels to one of levels[i] values; the code is the mixed-radix number of those digits.

    Args:
        levels: values per channel, e.g. (8, 5, 5, 5) -> 1000 codes, (3,) * 8 -> 6561 codes.
        dim: channels D of the input [B, D, T]; Linear layers project D <-> len(levels) when they
            differ (None = len(levels), no projection).
        epsilon: slack so the bounded value's extremes still round inside the grid.

    There is no codebook to learn, so commit_loss and codebook_loss are zero and training-mode
    forwards need no communication.
    """

    n_q = 1

    def __init__(self, levels: Sequence[int] = (8, 8, 8, 6, 5), dim: int | None = None, epsilon: float = 1e-3):
        levels = [int(level) for level in levels]
        if not levels or min(levels) < 2:
            raise BadConfigError(f"FSQ levels must all be >= 2, got {levels}")
        super().__init__(math.prod(levels))
        self.levels = tuple(levels)
        self.latent_dim = len(levels)
        self.dim = dim or self.latent_dim
        self.epsilon = epsilon
        projected = self.dim != self.latent_dim
        self.project_in = nn.Linear(self.dim, self.latent_dim) if projected else nn.Identity()
        self.project_out = nn.Linear(self.latent_dim, self.dim) if projected else nn.Identity()
        level_tensor = torch.tensor(levels)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0)
        # Constants, rebuilt from `levels` at construction: kept out of checkpoints.
        self.register_buffer("_levels", level_tensor, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half_width", level_tensor // 2, persistent=False)

    def _bound(self, z: Tensor) -> Tensor:
        """Squash z [..., d] into (-L/2, L/2) per channel, offset so even L rounds to L values."""
        levels = self._levels.to(z.dtype)
        half = (levels - 1) * (1 + self.epsilon) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def _quantize(self, z: Tensor) -> Tensor:
        """z [..., d] -> grid values in [-1, 1] with a straight-through rounding gradient."""
        bounded = self._bound(z)
        # Value exactly round(bounded) (so decode(codes) matches bit for bit), gradient identity.
        rounded = bounded.round().detach() + (bounded - bounded.detach())
        return rounded / self._half_width.to(z.dtype)

    def grid_to_codes(self, grid: Tensor) -> Tensor:
        """Grid values [B, d, T] (as from `codes_to_grid`) -> codes [B, T] int64."""
        half = self._half_width.to(grid.dtype)
        digits = (grid.transpose(1, 2) * half + half).round().long()
        return (digits * self._basis).sum(-1)

    def codes_to_grid(self, codes: Tensor) -> Tensor:
        """Codes [B, T] int64 -> grid values [B, d, T] in [-1, 1] (before the output projection)."""
        digits = (codes[..., None] // self._basis) % self._levels
        return ((digits - self._half_width).float() / self._half_width.float()).transpose(1, 2)

    def forward(self, x: Tensor, n_q: int | None = None, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize x [B, D, T]; mask [B, T] bool only limits the usage statistics; n_q None or 1.

        Returns a `QuantizerOutput` with codes [B, 1, T] and zero losses.
        """
        _check_one_layer(n_q)
        batch, _, frames = x.shape
        latent = self.project_in(x.transpose(1, 2))
        with torch.autocast(device_type=x.device.type, enabled=False):
            grid = self._quantize(latent.float())  # [B, T, d]
            codes = self.grid_to_codes(grid.detach().transpose(1, 2))
        quantized = self.project_out(grid.to(latent.dtype)).transpose(1, 2)
        valid = _valid_rows(mask, batch, frames, x.device)
        perplexity, batch_usage = self._record_usage(codes.reshape(-1)[valid])
        zero = x.new_zeros((), dtype=torch.float32)
        return QuantizerOutput(
            quantized=quantized,
            codes=codes.reshape(batch, 1, frames),
            commit_loss=zero,
            codebook_loss=zero,
            loss=zero,
            layer_outputs=[quantized],
            perplexity=perplexity.reshape(1),
            batch_usage=batch_usage.reshape(1),
        )

    def encode(self, x: Tensor, n_q: int | None = None, mask: Tensor | None = None) -> Tensor:
        """x [B, D, T] -> codes [B, 1, T] int64 (n_q None or 1; `mask` accepted for interface symmetry)."""
        _check_one_layer(n_q)
        latent = self.project_in(x.transpose(1, 2))
        with torch.autocast(device_type=x.device.type, enabled=False):
            grid = self._quantize(latent.float())
            return self.grid_to_codes(grid.transpose(1, 2))[:, None]

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, 1, T] int64 -> [B, D, T]."""
        codes = _one_codebook(codes)
        _check_codes(codes, self.codebook_size)
        grid = self.codes_to_grid(codes).transpose(1, 2)  # [B, T, d]
        dtype = self.project_out.weight.dtype if isinstance(self.project_out, nn.Linear) else grid.dtype
        return self.project_out(grid.to(dtype)).transpose(1, 2)


# ----------------------------------------------------------------------------------------------

# kind (the `kind:` of a config's quantizer block) -> class
QUANTIZERS = {"vq": VectorQuantizer, "rvq": ResidualVQ, "fsq": FSQ}


def build_quantizer(kind: str, **kwargs) -> VectorQuantizer | ResidualVQ | FSQ:
    """Build a quantizer by kind: "vq" -> VectorQuantizer, "rvq" -> ResidualVQ, "fsq" -> FSQ.

    kwargs go to that class's constructor (e.g. dim, codebook_size, n_q, levels); one that the
    constructor does not take is a BadConfigError naming the allowed ones.
    """
    if kind not in QUANTIZERS:
        raise BadConfigError(f"unknown quantizer kind {kind!r}; choose one of {sorted(QUANTIZERS)}")
    cls = QUANTIZERS[kind]
    return cls(**kwargs_for(cls, kwargs, "quantizer"))
