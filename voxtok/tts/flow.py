"""Conditional flow-matching decoder (CosyVoice "flow"): speech tokens -> log-mel frames.

    tokens [B, N] -> Embedding -> Conformer encoder (non-causal) -> Linear(-> n_mels)
      -> length regulator (linear interpolation to the mel frame count + convs) = mu [B, n_mels, T]
    speaker embedding [B, spk_dim] -> L2-normalise -> Linear(-> n_mels) = spk
    prompt mel: the first frames of the mel given, zeros elsewhere = cond [B, n_mels, T]
    estimator (1-D U-Net with transformer blocks, or a DiT): v(x_t, t | mu, spk, cond)

Training (OT-CFM, Lipman et al.; sigma_min 1e-6): x0 ~ N(0, I), x1 = target mel, t ~ U(0, 1),
x_t = (1 - (1 - sigma_min) t) x0 + t x1, target velocity u = x1 - (1 - sigma_min) x0, masked MSE
over valid frames (with `loss_on_prompt: false`, not on the prompt frames, whose target is the
condition itself; CosyVoice's own code keeps them in the loss, the default here).
As in CosyVoice, half the utterances get a random prefix (up to 30 %) of their own mel as the
prompt condition, and with probability 0.2 mu, spk and cond are dropped together (classifier-free
guidance). Inference: Euler steps over the cosine schedule t_k = 1 - cos(pi/2 * k/n), guided
velocity (1 + w) v(cond) - w v(uncond), both evaluated in one batch (the unconditional half
gets zeros for mu, spk and cond, the same x, t and mask); t advances as in CosyVoice's
`ConditionalCFM.solve_euler` (t += dt, dt re-aimed at the next grid point); the prompt frames
are cut. `noise=` replaces the seeded draw with given noise (parity with the reference's draw).

Config (the `model:` block of configs/tts/flow_*.yaml; an unknown key at any depth is an error):
    vocab_size: speech-token vocabulary (the tokenizer's codebook size)
    token_rate: speech tokens per second
    mel: a MelConfig preset name ("cosyvoice") or a mapping of MelConfig fields
    spk_dim: speaker embedding size (256: resemblyzer d-vectors)
    embed_dim: token embedding size
    encoder: {kind: conformer|transformer, dim, heads, ff_dim, layers, dropout, attn_dropout, conv_kernel,
              layer_norm_eps (of the norms inside the blocks; CosyVoice's checkpoints: 1e-12)}
    length_regulator: {n_convs, groups, edge_tokens (> 0: at inference the first and last
                       edge_tokens tokens of a longer target are interpolated on their own, as
                       CosyVoice v1 does with 20; 0: one segment)}
    estimator: {kind: unet|dit, ...}  (see voxtok/tts/flow_estimators.py)
    cfm: {sigma_min, train_t_scheduler: uniform|cosine, cfg_dropout, prompt_prob, prompt_max_ratio,
          loss_on_prompt}
    inference: {n_steps, cfg_strength, temperature}
    streaming: {chunk_tokens, overlap_tokens, context_tokens}
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.audio import MelConfig
from voxtok.config import merge_strict
from voxtok.errors import BadConfigError, VoxTokError
from voxtok.nn.masks import length_mask
from voxtok.nn.modes import eval_mode
from voxtok.nn.sampling import item_seeds
from voxtok.registry import SavesPretrained, register
from voxtok.tts.conformer import ConformerEncoder
from voxtok.tts.flow_estimators import MaskedGroupNorm, build_estimator, estimator_kwargs

DEFAULTS: dict[str, Any] = {
    "vocab_size": 4096,
    "token_rate": 50,
    "mel": "cosyvoice",
    "spk_dim": 256,
    "embed_dim": 512,
    "encoder": {"kind": "conformer", "dim": 512, "heads": 8, "ff_dim": 2048, "layers": 6, "dropout": 0.1,
                "attn_dropout": 0.1, "conv_kernel": 0, "layer_norm_eps": 1e-5},
    "length_regulator": {"n_convs": 4, "groups": 1, "edge_tokens": 0},
    "estimator": {"kind": "unet", "channels": [256, 256], "n_blocks": 4, "num_mid_blocks": 12, "heads": 8,
                  "head_dim": 64, "dropout": 0.0},
    "cfm": {"sigma_min": 1e-6, "train_t_scheduler": "uniform", "cfg_dropout": 0.2, "prompt_prob": 0.5,
            "prompt_max_ratio": 0.3, "loss_on_prompt": True},
    "inference": {"n_steps": 10, "cfg_strength": 0.7, "temperature": 1.0},
    "streaming": {"chunk_tokens": 25, "overlap_tokens": 5, "context_tokens": 25},
}
# Noise is drawn in fixed blocks of frames, each from its own generator, so the noise of a frame
# depends only on (seed, frame index): chunked decoding sees the same noise as a full decode.
NOISE_BLOCK = 32
_TARGET_STREAM, _PROMPT_STREAM = 0, 1


def merge_config(config: Mapping[str, Any] | None, where: str = "flow") -> dict[str, Any]:
    """DEFAULTS overlaid with `config`, nested blocks key by key; an unknown key at any depth is a
    BadConfigError naming it under `where`. The estimator block is taken whole (its keys depend on
    its kind) and checked against that kind's constructor."""
    merged = merge_strict(DEFAULTS, config, where, replace_whole=("estimator",))
    estimator_kwargs(merged["estimator"], f"{where}.estimator")
    return merged



class LengthRegulator(nn.Module):
    """Token features -> mel-rate features: per-segment linear interpolation, then convs.

    Each item's valid tokens are split into segments (e.g. prompt tokens, target tokens) and every
    segment is interpolated on its own to its frame count, so the prompt/target boundary stays
    where the prompt mel ends. The convs (k3 -> GroupNorm -> Mish, `n_convs` times, then 1x1)
    smooth the result; their norms only see valid frames.

    Shapes: h [B, N, C]; seg_tokens / seg_frames: per item a list of segment sizes (sums <= N
    and <= frames) -> [B, C, frames] (zeros past each item's frame total).
    """

    def __init__(self, channels: int, n_convs: int = 4, groups: int = 1):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 3, padding=1) for _ in range(n_convs))
        self.norms = nn.ModuleList(MaskedGroupNorm(groups, channels) for _ in range(n_convs))
        self.out = nn.Conv1d(channels, channels, 1)

    @staticmethod
    def interpolate(h: torch.Tensor, seg_tokens: Sequence[Sequence[int]], seg_frames: Sequence[Sequence[int]],
                    frames: int) -> torch.Tensor:
        """Only the interpolation: h [B, N, C] -> [B, C, frames]."""
        out = h.new_zeros(h.shape[0], h.shape[2], frames)
        for b, (toks, frs) in enumerate(zip(seg_tokens, seg_frames)):
            tok0 = fr0 = 0
            for n_tok, n_fr in zip(toks, frs):
                if n_fr > 0:
                    if n_tok <= 0:
                        raise VoxTokError(f"cannot make {n_fr} mel frames from 0 tokens")
                    seg = h[b, tok0:tok0 + n_tok].transpose(0, 1)[None]  # [1, C, n_tok]
                    out[b, :, fr0:fr0 + n_fr] = F.interpolate(seg, size=n_fr, mode="linear", align_corners=False)[0]
                tok0, fr0 = tok0 + n_tok, fr0 + n_fr
        return out

    def forward(self, h, seg_tokens, seg_frames, frames: int) -> torch.Tensor:
        x = self.interpolate(h, seg_tokens, seg_frames, frames)
        totals = torch.tensor([sum(f) for f in seg_frames], device=h.device)
        mask = length_mask(totals, frames)[:, None].to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = F.mish(norm(conv(x * mask), mask))
        return self.out(x * mask) * mask


@dataclass
class _Plan:
    """One item of a generation batch, on its own frame axis [prompt | target region].

    tokens [n] with segment sizes seg_tokens; seg_frames the frames of each segment; cond
    [n_mels, c] fills frames [0, c); noise [n_mels, total]; frames [out0, out1) are returned.
    """

    tokens: torch.Tensor
    seg_tokens: list[int]
    seg_frames: list[int]
    cond: torch.Tensor
    noise: torch.Tensor
    out0: int
    out1: int


def frame_noise(seed: int, stream: int, first: int, last: int, n_mels: int) -> torch.Tensor:
    """Standard normal noise [n_mels, last - first] for frames [first, last) of one item.

    A frame's noise depends only on (seed, stream, frame index), whatever range is asked for.
    """
    if last <= first:
        return torch.zeros(n_mels, 0)
    blocks = []
    for block in range(first // NOISE_BLOCK, (last - 1) // NOISE_BLOCK + 1):
        key = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + block * 0x94D049BB133111EB) % (2 ** 63)
        blocks.append(torch.randn(n_mels, NOISE_BLOCK, generator=torch.Generator().manual_seed(key)))
    noise = torch.cat(blocks, dim=1)
    start = first - (first // NOISE_BLOCK) * NOISE_BLOCK
    return noise[:, start:start + last - first]


@register("tts", "flow")
class FlowDecoder(SavesPretrained, nn.Module):
    """Speech tokens + speaker embedding (+ prompt) -> log-mel, by conditional flow matching.

    Build with `FlowDecoder(config)` (see the module docstring for the keys; missing keys take
    the CosyVoice-300M values in `DEFAULTS`). Attributes: n_mels, vocab_size, token_rate,
    mel_rate (frames/s), mel_config (the MelConfig the targets must be computed with).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, where: str = "flow"):
        super().__init__()
        cfg = merge_config(config, where)
        self.config = cfg
        self.mel_config = MelConfig.from_spec(cfg["mel"])
        self.n_mels = int(self.mel_config.n_mels)
        self.vocab_size = int(cfg["vocab_size"])
        self.token_rate = float(cfg["token_rate"])
        self.spk_dim = int(cfg["spk_dim"])
        if self.vocab_size < 1 or self.token_rate <= 0 or self.spk_dim < 1:
            raise BadConfigError("flow vocab_size, token_rate and spk_dim must be positive")
        self.mel_rate = self.mel_config.sample_rate / self.mel_config.hop_length
        self.cfm = dict(cfg["cfm"])
        if self.cfm["train_t_scheduler"] not in ("uniform", "cosine"):
            raise BadConfigError(f"cfm.train_t_scheduler must be uniform or cosine, "
                                 f"got '{self.cfm['train_t_scheduler']}'")
        self.inference_defaults = dict(cfg["inference"])
        self.streaming = dict(cfg["streaming"])

        self.input_embedding = nn.Embedding(self.vocab_size, int(cfg["embed_dim"]))
        enc = dict(cfg["encoder"])
        # conformer: relative-position attention (CosyVoice); transformer: absolute sinusoids.
        positions = {"conformer": "rel", "transformer": "abs"}
        kind = enc.pop("kind")
        if kind not in positions:
            raise BadConfigError(f"flow encoder kind must be conformer or transformer, got '{kind}'")
        enc["pos"] = positions[kind]
        self.encoder = ConformerEncoder(int(cfg["embed_dim"]), **enc)  # merge_config checked the keys
        self.encoder_proj = nn.Linear(self.encoder.dim, self.n_mels)
        regulator = dict(cfg["length_regulator"])
        self.edge_tokens = int(regulator.pop("edge_tokens"))
        if self.edge_tokens < 0:
            raise BadConfigError(f"length_regulator.edge_tokens must be >= 0, got {self.edge_tokens}")
        self.length_regulator = LengthRegulator(self.n_mels, **regulator)
        self.spk_embed_affine_layer = nn.Linear(self.spk_dim, self.n_mels)
        self.estimator = build_estimator(cfg["estimator"], self.n_mels, f"{where}.estimator")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "flow") -> "FlowDecoder":
        """Build from a `model:` config block (missing keys take DEFAULTS); `where` names it in messages."""
        return cls(config, where)

    def to_config(self) -> dict[str, Any]:
        """The full config (defaults filled in) that rebuilds this model."""
        return copy.deepcopy(self.config)

    # ------------------------------------------------------------------ shared pieces

    def frames_for_tokens(self, n_tokens):
        """Mel frames for n tokens (int or int64 tensor): floor(n * mel_rate / token_rate).

        The same grid serves whole utterances and chunks: chunk [a, b) covers frames
        [frames_for_tokens(a), frames_for_tokens(b)), so chunks tile an utterance exactly.
        """
        ratio = self.mel_rate / self.token_rate
        if isinstance(n_tokens, torch.Tensor):
            return torch.floor(n_tokens.double() * ratio + 1e-6).long()
        return int(math.floor(int(n_tokens) * ratio + 1e-6))

    def encode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N] (padding ignored) -> encoder features projected to mels [B, N, n_mels]."""
        mask = length_mask(lengths, tokens.shape[1])[..., None]
        h = self.input_embedding(tokens.clamp(0, self.vocab_size - 1)) * mask
        return self.encoder_proj(self.encoder(h, lengths))

    def speaker(self, spk_emb: torch.Tensor) -> torch.Tensor:
        """Speaker embedding [B, spk_dim] -> L2-normalised, projected [B, n_mels]."""
        return self.spk_embed_affine_layer(F.normalize(spk_emb.float(), dim=1))

    def _check_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor | None, what: str) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            raise VoxTokError(f"{what} must be an int64 tensor [B, N], got {getattr(tokens, 'shape', type(tokens))}")
        if lengths is None:
            lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
        lengths = lengths.to(tokens.device).long().reshape(-1)
        if lengths.shape[0] != tokens.shape[0] or bool((lengths < 0).any()) or bool((lengths > tokens.shape[1]).any()):
            raise VoxTokError(f"{what} lengths {lengths.tolist()} do not fit a tensor of shape {tuple(tokens.shape)}")
        valid = length_mask(lengths, tokens.shape[1])
        if bool(((tokens < 0) | (tokens >= self.vocab_size))[valid].any()):
            bad = tokens[valid & ((tokens < 0) | (tokens >= self.vocab_size))][0].item()
            raise VoxTokError(f"{what} contain id {bad} outside the vocabulary [0, {self.vocab_size})")
        return lengths

    def target_segments(self, n_tokens: int, n_frames: int) -> tuple[list[int], list[int]]:
        """(token counts, frame counts) of the length regulator's segments for a target span at inference.

        One segment, unless `edge_tokens` E > 0 and the span has more than 2E tokens: then
        [E, n - 2E, E] tokens on [F(E), n_frames - 2F(E), F(E)] frames. CosyVoice v1 interpolates
        the head and tail apart (E = 20, its streaming overlap), so their frames do not depend on
        the span's length; a converted model must do the same to compute what it computes.
        """
        edge = self.edge_tokens
        if edge <= 0 or n_tokens <= 2 * edge:
            return [n_tokens], [n_frames]
        edge_frames = self.frames_for_tokens(edge)
        if n_frames - 2 * edge_frames < 0:
            return [n_tokens], [n_frames]
        return [edge, n_tokens - 2 * edge, edge], [edge_frames, n_frames - 2 * edge_frames, edge_frames]

    def _check_mel(self, mel: torch.Tensor, batch: int, what: str) -> None:
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or mel.shape[0] != batch or mel.shape[1] != self.n_mels:
            raise VoxTokError(f"{what} must be [{batch}, {self.n_mels}, T], got {tuple(getattr(mel, 'shape', ()))}")
        if not bool(torch.isfinite(mel).all()):
            raise VoxTokError(f"{what} contains NaN or Inf")

    def _check_spk(self, spk_emb: torch.Tensor, batch: int) -> None:
        if not isinstance(spk_emb, torch.Tensor) or tuple(spk_emb.shape) != (batch, self.spk_dim):
            shape = tuple(getattr(spk_emb, "shape", ()))
            raise VoxTokError(f"speaker embedding must be [{batch}, {self.spk_dim}], got {shape}")

    # ------------------------------------------------------------------ training

    def forward_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """OT-CFM loss of one batch (see module docstring).

        batch: speech_tokens [B, N] int64, token_lengths [B], mel [B, n_mels, T] (log-mel from
        `mel_config`), mel_lengths [B], spk_emb [B, spk_dim].
        Returns (scalar loss, {"loss", "prompt_frames", "cfg_dropped"} floats); prompt_frames is
        the fraction of valid frames given as prompt, cfg_dropped the fraction of unconditioned items.
        """
        missing = [k for k in ("speech_tokens", "mel", "spk_emb") if k not in batch]
        if missing:
            raise VoxTokError(f"flow training batch lacks {missing} (has {sorted(batch)})")
        tokens, mel, spk_emb = batch["speech_tokens"], batch["mel"], batch["spk_emb"]
        token_lengths = self._check_tokens(tokens, batch.get("token_lengths"), "speech tokens")
        self._check_mel(mel, tokens.shape[0], "mel")
        b, frames = mel.shape[0], mel.shape[2]
        self._check_spk(spk_emb, b)
        mel_lengths = batch.get("mel_lengths")
        mel_lengths = torch.full((b,), frames) if mel_lengths is None else mel_lengths
        mel_lengths = mel_lengths.to(mel.device).long().reshape(-1)
        if bool((mel_lengths > frames).any()) or bool((mel_lengths < 1).any()) or bool((token_lengths < 1).any()):
            raise VoxTokError(f"mel lengths {mel_lengths.tolist()} / token lengths {token_lengths.tolist()} are empty "
                              f"or exceed the padded size")
        device = mel.device

        h = self.encode_tokens(tokens, token_lengths)
        mu = self.length_regulator(h, [[int(n)] for n in token_lengths], [[int(n)] for n in mel_lengths], frames)
        spk = self.speaker(spk_emb)
        valid = length_mask(mel_lengths, frames)  # [B, T]
        x1 = mel * valid[:, None]

        # Prompt condition: a random prefix of the target itself, for a random half of the batch.
        use_prompt = torch.rand(b, device=device) < float(self.cfm["prompt_prob"])
        max_prompt = torch.floor(mel_lengths.double() * float(self.cfm["prompt_max_ratio"])).long()
        prompt_len = (torch.rand(b, device=device).double() * (max_prompt + 1).double()).long() * use_prompt
        in_prompt = length_mask(prompt_len, frames)
        cond = x1 * in_prompt[:, None]

        t = torch.rand(b, device=device)
        if self.cfm["train_t_scheduler"] == "cosine":
            t = 1 - torch.cos(t * 0.5 * math.pi)
        x0 = torch.randn_like(x1)
        sigma_min = float(self.cfm["sigma_min"])
        tt = t[:, None, None]
        y = (1 - (1 - sigma_min) * tt) * x0 + tt * x1
        u = x1 - (1 - sigma_min) * x0

        keep = (torch.rand(b, device=device) >= float(self.cfm["cfg_dropout"])).to(mel.dtype)
        mask = valid[:, None].to(mel.dtype)
        pred = self.estimator(y * mask, mask, mu * keep[:, None, None], t, spk * keep[:, None],
                              cond * keep[:, None, None])

        weight = valid & ~in_prompt if not self.cfm["loss_on_prompt"] else valid
        weight = weight[:, None].to(mel.dtype)
        loss = (((pred - u) ** 2) * weight).sum() / (weight.sum() * self.n_mels).clamp_min(1.0)
        stats = {"loss": float(loss.detach()),
                 "prompt_frames": float(prompt_len.sum()) / float(mel_lengths.sum()),
                 "cfg_dropped": float(1 - keep.mean())}
        return loss, stats

    # ------------------------------------------------------------------ sampling

    def guided_velocity(self, x, mask, mu, t, spk, cond, cfg_strength: float) -> torch.Tensor:
        """(1 + w) v(x | mu, spk, cond) - w v(x | 0, 0, 0), both halves in one estimator batch.

        Shapes: x/mu/cond [B, n_mels, T], mask [B, 1, T], t [B], spk [B, n_mels] -> [B, n_mels, T].
        With w == 0 only the conditional half is evaluated.
        """
        if cfg_strength == 0:
            return self.estimator(x, mask, mu, t, spk, cond)
        both = self.estimator(torch.cat([x, x]), torch.cat([mask, mask]), torch.cat([mu, torch.zeros_like(mu)]),
                              torch.cat([t, t]), torch.cat([spk, torch.zeros_like(spk)]),
                              torch.cat([cond, torch.zeros_like(cond)]))
        v_cond, v_uncond = both.chunk(2)
        return (1 + cfg_strength) * v_cond - cfg_strength * v_uncond

    def solve(self, noise, mask, mu, spk, cond, n_steps: int, cfg_strength: float) -> torch.Tensor:
        """Euler integration from t=0 (noise [B, n_mels, T]) to t=1 on t_k = 1 - cos(pi/2 * k/n) -> mel."""
        t_span = 1 - torch.cos(torch.linspace(0, 1, n_steps + 1, device=noise.device) * 0.5 * math.pi)
        x = noise * mask
        t = t_span[0]
        for k in range(n_steps):
            # CosyVoice's stepping: t accumulates dt and each dt aims at the next grid point, so t
            # can differ from t_span[k] in the last bit; doing the same keeps converted models exact.
            dt = t_span[k + 1] - t
            x = x + dt * self.guided_velocity(x, mask, mu, t.expand(x.shape[0]), spk, cond, cfg_strength)
            t = t + dt
        return x * mask

    def _settings(self, n_steps, cfg_strength, temperature) -> tuple[int, float, float]:
        d = self.inference_defaults
        n_steps = int(d["n_steps"] if n_steps is None else n_steps)
        cfg_strength = float(d["cfg_strength"] if cfg_strength is None else cfg_strength)
        temperature = float(d["temperature"] if temperature is None else temperature)
        if n_steps < 1 or cfg_strength < 0 or temperature < 0:
            raise VoxTokError(f"need n_steps >= 1, cfg_strength >= 0, temperature >= 0 "
                              f"(got {n_steps}, {cfg_strength}, {temperature})")
        return n_steps, cfg_strength, temperature

    def _prompts(self, batch, prompt_tokens, prompt_token_lengths, prompt_mel, prompt_mel_lengths):
        """Per-item (prompt token row, prompt mel [n_mels, Tp]) or empties when no prompt is given."""
        if (prompt_tokens is None) != (prompt_mel is None):
            raise VoxTokError("give both prompt_tokens and prompt_mel, or neither")
        if prompt_tokens is None:
            return [(torch.zeros(0, dtype=torch.long), torch.zeros(self.n_mels, 0))] * batch
        if prompt_tokens.shape[0] != batch:
            raise VoxTokError(f"prompt_tokens batch {prompt_tokens.shape[0]} != tokens batch {batch}")
        p_lengths = self._check_tokens(prompt_tokens, prompt_token_lengths, "prompt tokens")
        self._check_mel(prompt_mel, batch, "prompt mel")
        m_lengths = (torch.full((batch,), prompt_mel.shape[-1]) if prompt_mel_lengths is None
                     else prompt_mel_lengths.reshape(-1).long())
        if bool((m_lengths > prompt_mel.shape[-1]).any()) or bool(((m_lengths > 0) != (p_lengths > 0)).any()):
            raise VoxTokError("prompt mel lengths must fit the prompt mel and be non-zero exactly where "
                              "the prompt has tokens")
        return [(prompt_tokens[i, : int(p_lengths[i])].cpu(), prompt_mel[i, :, : int(m_lengths[i])].float().cpu())
                for i in range(batch)]

    def _decode_plans(self, plans: list[_Plan | None], spk: torch.Tensor, n_steps: int,
                      cfg_strength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the ODE for the non-empty plans; -> (mel [B, n_mels, T_out] zero-padded, lengths [B])."""
        device = spk.device
        lengths = torch.tensor([0 if p is None else p.out1 - p.out0 for p in plans], dtype=torch.long)
        idx = [i for i, p in enumerate(plans) if p is not None and p.out1 > p.out0]
        out = torch.zeros(len(plans), self.n_mels, int(lengths.max()) if len(plans) else 0, device=device)
        if not idx:
            return out, lengths.to(device)
        live = [plans[i] for i in idx]
        n_tok = torch.tensor([p.tokens.numel() for p in live], dtype=torch.long, device=device)
        n_fr = torch.tensor([sum(p.seg_frames) for p in live], dtype=torch.long, device=device)
        tokens = torch.zeros(len(live), int(n_tok.max()), dtype=torch.long, device=device)
        frames = int(n_fr.max())
        cond = torch.zeros(len(live), self.n_mels, frames, device=device)
        noise = torch.zeros(len(live), self.n_mels, frames, device=device)
        for j, p in enumerate(live):
            tokens[j, : p.tokens.numel()] = p.tokens.to(device)
            cond[j, :, : p.cond.shape[-1]] = p.cond.to(device)
            noise[j, :, : p.noise.shape[-1]] = p.noise.to(device)
        h = self.encode_tokens(tokens, n_tok)
        mu = self.length_regulator(h, [p.seg_tokens for p in live], [p.seg_frames for p in live], frames)
        mask = length_mask(n_fr, frames)[:, None].float()
        mel = self.solve(noise, mask, mu, spk[idx], cond, n_steps, cfg_strength)
        for j, (i, p) in enumerate(zip(idx, live)):
            out[i, :, : p.out1 - p.out0] = mel[j, :, p.out0:p.out1]
        return out, lengths.to(device)

    def synthesize(self, tokens: torch.Tensor, token_lengths: torch.Tensor | None, spk_emb: torch.Tensor,
                   prompt_tokens: torch.Tensor | None = None, prompt_mel: torch.Tensor | None = None,
                   n_steps: int | None = None, cfg_strength: float | None = None, temperature: float | None = None,
                   seed: int | Sequence[int] | None = None, *, prompt_token_lengths: torch.Tensor | None = None,
                   prompt_mel_lengths: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate the mel of whole utterances.

        Args:
            tokens: [B, N] speech tokens; token_lengths: [B] (None = all N).
            spk_emb: [B, spk_dim] speaker embeddings.
            prompt_tokens: [B, Np] tokens of a reference utterance and prompt_mel [B, n_mels, Tp]
                its log-mel (with optional prompt_token_lengths / prompt_mel_lengths); the output
                continues the prompt's voice and the prompt frames are cut from it.
            n_steps, cfg_strength, temperature: override the config's `inference` block.
            seed: int (item i uses seed + i, so batch item i equals a single call with seed + i),
                a per-item sequence, or None (fresh seeds).
            noise: instead of the seeded draw, standard normal noise [B, n_mels, >= Tp_i + T_i] over
                each item's whole frame axis (its Tp_i prompt frames, then its T_i output frames),
                scaled by `temperature` like the drawn one; e.g. the noise a reference run drew.
        Returns:
            (mel [B, n_mels, T] zero-padded, mel_lengths [B]) with
            mel_lengths = frames_for_tokens(token_lengths).
        Runs in eval mode without gradients (the module's mode is restored afterwards).
        """
        lengths = self._check_tokens(tokens, token_lengths, "speech tokens")
        return self.synthesize_chunk(tokens, lengths, spk_emb, 0, tokens.shape[1], prompt_tokens, prompt_mel,
                                     n_steps=n_steps, cfg_strength=cfg_strength, temperature=temperature, seed=seed,
                                     context_tokens=0, overlap_tokens=0, prompt_token_lengths=prompt_token_lengths,
                                     prompt_mel_lengths=prompt_mel_lengths, noise=noise)

    def synthesize_chunk(self, tokens: torch.Tensor, token_lengths: torch.Tensor | None, spk_emb: torch.Tensor,
                         start: int, end: int, prompt_tokens: torch.Tensor | None = None,
                         prompt_mel: torch.Tensor | None = None, prev_mel: torch.Tensor | None = None, *,
                         context_tokens: int | None = None, overlap_tokens: int | None = None,
                         n_steps: int | None = None, cfg_strength: float | None = None,
                         temperature: float | None = None, seed: int | Sequence[int] | None = None,
                         prompt_token_lengths: torch.Tensor | None = None,
                         prompt_mel_lengths: torch.Tensor | None = None,
                         noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate the mel of token chunk [start, end) for streaming.

        Contract (F(n) = frames_for_tokens(n), L_i = token_lengths[i]; tokens holds every token
        known so far, it may grow between calls):
        - The encoder sees the prompt tokens, `context_tokens` tokens before `start` and
          `overlap_tokens` tokens after `end` (clipped to [0, L_i)); attention is non-causal.
        - Returned frames: [F(start), F(min(end + overlap_tokens, L_i))) of the utterance's mel,
          i.e. the chunk plus an overlap tail. The next chunk starts at `end`, so its first
          F(end + overlap) - F(end) frames cover the same span again: the caller cross-fades
          the two over those frames ((F(end + overlap) - F(end)) * hop samples of audio) and
          keeps the rest. Chunks [0, c), [c, 2c), ... so combined give exactly F(L_i) frames,
          the length of `synthesize`. Items with start >= L_i return 0 frames.
        - prev_mel [B, n_mels, Tprev]: the mel already emitted for frames before F(start) (its
          last frames matter); it conditions the context frames like a prompt, which keeps the
          chunk continuous with what was played. None: no condition on the context.
        - With the same seed, frame f of the utterance gets the same noise in every chunk and in a
          full `synthesize`, so overlapping chunks agree wherever their conditions agree.
        - `noise` (as in `synthesize`, over the whole utterance's frame axis): the chunk takes the
          prompt's columns and those of its own frames.
        Other arguments as in `synthesize`; `context_tokens` / `overlap_tokens` default to the
        config's `streaming` block. Returns (mel [B, n_mels, T] zero-padded, lengths [B]).
        """
        lengths = self._check_tokens(tokens, token_lengths, "speech tokens")
        batch = tokens.shape[0]
        self._check_spk(spk_emb, batch)
        if not (0 <= start < end):
            raise VoxTokError(f"chunk [{start}, {end}) is empty or negative")
        context = int(self.streaming["context_tokens"] if context_tokens is None else context_tokens)
        overlap = int(self.streaming["overlap_tokens"] if overlap_tokens is None else overlap_tokens)
        if context < 0 or overlap < 0:
            raise VoxTokError("context_tokens and overlap_tokens must be >= 0")
        if prev_mel is not None:
            self._check_mel(prev_mel, batch, "prev_mel")
        n_steps, cfg_strength, temperature = self._settings(n_steps, cfg_strength, temperature)
        prompts = self._prompts(batch, prompt_tokens, prompt_token_lengths, prompt_mel, prompt_mel_lengths)
        seeds = item_seeds(seed, batch)
        plans: list[_Plan | None] = []
        for i in range(batch):
            n = int(lengths[i])
            if start >= n:
                plans.append(None)
                continue
            s0, e1 = max(0, start - context), min(n, end + overlap)
            p_tok, p_mel = prompts[i]
            n_prompt = p_mel.shape[-1]
            f0, f_start, f1 = self.frames_for_tokens(s0), self.frames_for_tokens(start), self.frames_for_tokens(e1)
            cond = p_mel
            if prev_mel is not None and f_start > f0:
                tail = prev_mel[i, :, max(0, prev_mel.shape[-1] - (f_start - f0)):].float().cpu()
                lead = torch.zeros(self.n_mels, (f_start - f0) - tail.shape[-1])
                cond = torch.cat([p_mel, lead, tail], dim=1)
            if noise is None:
                item_noise = torch.cat([frame_noise(seeds[i], _PROMPT_STREAM, 0, n_prompt, self.n_mels),
                                        frame_noise(seeds[i], _TARGET_STREAM, f0, f1, self.n_mels)], dim=1)
            else:
                item_noise = self._given_noise(noise, i, batch, n_prompt, self.frames_for_tokens(n), f0, f1)
            seg_tokens, seg_frames = self.target_segments(e1 - s0, f1 - f0)
            plans.append(_Plan(tokens=torch.cat([p_tok, tokens[i, s0:e1].cpu()]),
                               seg_tokens=[p_tok.numel(), *seg_tokens], seg_frames=[n_prompt, *seg_frames],
                               cond=cond, noise=item_noise * temperature, out0=n_prompt + f_start - f0,
                               out1=n_prompt + f1 - f0))
        with eval_mode(self), torch.no_grad():
            return self._decode_plans(plans, self.speaker(spk_emb.to(next(self.parameters()).device)),
                                      n_steps, cfg_strength)

    def _given_noise(self, noise: torch.Tensor, i: int, batch: int, n_prompt: int, n_frames: int, f0: int,
                     f1: int) -> torch.Tensor:
        """Item i's columns of caller-given noise: its prompt frames, then output frames [f0, f1) -> [n_mels, *]."""
        if (not isinstance(noise, torch.Tensor) or noise.dim() != 3 or noise.shape[0] != batch
                or noise.shape[1] != self.n_mels or noise.shape[2] < n_prompt + n_frames):
            raise VoxTokError(f"noise must be [{batch}, {self.n_mels}, >= {n_prompt + n_frames}] (prompt frames + "
                              f"output frames of item {i}), got {tuple(getattr(noise, 'shape', ()))}")
        item = noise[i].detach().float().cpu()
        return torch.cat([item[:, :n_prompt], item[:, n_prompt + f0:n_prompt + f1]], dim=1)

    def chunk_bounds(self, n_tokens: int, chunk_tokens: int | None = None) -> list[tuple[int, int]]:
        """[(start, end), ...] chunks of `chunk_tokens` (config default) tiling n_tokens tokens."""
        size = int(self.streaming["chunk_tokens"] if chunk_tokens is None else chunk_tokens)
        if size < 1:
            raise VoxTokError(f"chunk_tokens must be >= 1, got {size}")
        return [(s, min(s + size, n_tokens)) for s in range(0, n_tokens, size)]
