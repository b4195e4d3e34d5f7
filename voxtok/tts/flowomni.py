"""Flow-Omni-style TTS: a causal LM over text tokens and continuous mel frames, with a per-step
flow-matching MLP head (MAR / VibeVoice AdaLN-MLP) and a parallel state stream that decides when
speech starts and stops.

Sequence layout (one row per utterance; a "step" is r = frames_per_step mel frames):

    [spk]      prompt_text + text    [start]   prompt steps ...   generated steps ...
    optional   text embeddings       learned   Linear(r * n_mels -> d) of the fed-back frames

The hidden state at the start marker predicts step 0 and the hidden state at step s predicts
step s + 1 (flow head); from every hidden state the state head predicts what comes next:

    position                    state target
    spk / text                  pad          (the audio stream is silent while text is read)
    start marker                start        (the next output is the first step)
    step s < S - 1              generating
    last step S - 1             stop         (nothing follows the last step)
    right padding               ignored

An utterance of T frames has S = ceil(T / r) steps. When T is not a multiple of r the last step
is zero-padded and its padded frames are masked out of the flow loss, so generated speech is
S * r frames long and the last step's trailing frames (at most r - 1) are unsupervised.
Training uses no prompt (the whole utterance is the target, as in CosyVoice's LLM); at inference
a prompt's transcript is prepended to the text and its frames precede the generated ones.

Mels are 80-bin CosyVoice log mels (`MelConfig.preset("cosyvoice")`), normalised inside the model
with `mel_mean` / `mel_std` so that the flow starts from unit Gaussian noise.

Config (the `model:` block of configs/tts/flowomni_*.yaml; DEFAULTS below; unknown keys are an
error):
    text_vocab_size       rows of the text embedding (the frontend's vocab_size)
    mel                   MelConfig preset name or fields ("cosyvoice"); mel_mean, mel_std
    frames_per_step       r >= 1
    backbone              `voxtok.tts.llm.build_causal_backbone` options (Qwen2 / Llama shaped), or
                          init_from: a local Hugging Face Qwen2 folder whose sizes, decoder weights
                          and token table (= the text embedding) start the model
                          (voxtok/tts/hf_init.py; the stored config keeps its sizes, not the path)
    use_spk_emb, spk_dim  speaker embedding -> Linear -> one prefix token (switch + size)
    head                  width (>= r * n_mels), depth, mlp_ratio, time_freq_dim of the FlowHead
    cfm                   sigma_min, noise_draws (noise samples per step in training),
                          cond_dropout (probability that a step's LM hidden state is replaced by a
                          learned null condition in training; > 0 gives the model CFG)
    loss                  state_weight, cfm_weight: loss = state_weight * CE + cfm_weight * CFM
    inference             n_steps, t_schedule (linear | cosine), temperature, stop_threshold,
                          cfg_strength (classifier-free guidance w, 0 = off; see FlowHead.sample)
    streaming             chunk_frames, overlap_frames: `stream_frames` / the pipeline's `stream`
                          defaults (rounded up to whole steps of r frames)
    min/max_frame_text_ratio   generated mel frames per target-text id (stop is ignored before
                          the minimum; generation ends at the maximum)

Streaming: the frames are final once generated (the LM is causal), so `stream_frames` hands them
out chunk by chunk as the KV-cached loop makes them, identical to `synthesize`'s with the same seed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxtok.audio import MelConfig
from voxtok.config import check_keys, merge_strict, require_mapping
from voxtok.errors import BadAudioError, BadConfigError, BadTextError
from voxtok.nn.decoding import StepOutput, decode_with_kv_cache
from voxtok.nn.masks import length_mask
from voxtok.nn.modes import eval_mode
from voxtok.nn.positions import sinusoids
from voxtok.nn.sampling import item_generators
from voxtok.registry import SavesPretrained, register
from voxtok.tts.hf_init import load_qwen2_weights, resolve_init_from
from voxtok.tts.llm import BACKBONE_KEYS, _as_items, _pad, build_causal_backbone, pack_segments

STATE_START, STATE_PAD, STATE_GENERATING, STATE_STOP = range(4)
STATE_NAMES = ("start", "pad", "generating", "stop")
IGNORE_INDEX = -100

DEFAULTS: dict[str, Any] = {
    "text_vocab_size": 256,
    "mel": "cosyvoice",
    "mel_mean": -5.5,
    "mel_std": 2.5,
    "frames_per_step": 1,
    "backbone": {"kind": "qwen2", "hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_kv_heads": 2,
                 "intermediate_size": 4864, "max_positions": 32768, "rope_theta": 1000000.0},
    "use_spk_emb": True,
    "spk_dim": 256,
    "head": {"width": 1024, "depth": 3, "mlp_ratio": 1.0, "time_freq_dim": 256},
    # cond_dropout 0: no null condition, so checkpoints saved before CFG existed load strictly.
    "cfm": {"sigma_min": 1e-6, "noise_draws": 4, "cond_dropout": 0.0},
    "loss": {"state_weight": 1.0, "cfm_weight": 1.0},
    "inference": {"n_steps": 10, "t_schedule": "cosine", "temperature": 1.0, "stop_threshold": 0.5,
                  "cfg_strength": 0.0},
    # CosyVoice's streaming sizes in time: 25-token chunks (0.5 s = 43 frames at 86 Hz), a 5-token
    # (0.1 s) look-ahead for the non-causal vocoder.
    "streaming": {"chunk_frames": 44, "overlap_frames": 8},
    "min_frame_text_ratio": 1.0,
    "max_frame_text_ratio": 20.0,
}


def merge_config(config: Mapping[str, Any] | None, where: str = "flowomni") -> dict[str, Any]:
    """DEFAULTS overlaid with `config`; head / cfm / loss / inference / streaming merge key by key, the backbone
    block is taken whole (a partial backbone would silently inherit Qwen2-0.5B sizes), a null value
    means the default. An unknown key at any depth is a BadConfigError naming it under `where`."""
    config = require_mapping(config, where)
    check_keys(config, DEFAULTS, where)  # before nulls are dropped: a misspelt null key is an error too
    merged = merge_strict(DEFAULTS, {k: v for k, v in config.items() if v is not None}, where,
                          replace_whole=("backbone",))
    check_keys(merged["backbone"], (*BACKBONE_KEYS, "init_from"), f"{where}.backbone")
    return merged


# ----------------------------------------------------------------------------- flow head


class AdaLNBlock(nn.Module):
    """Residual MLP block with adaptive LayerNorm: x [N, w], c [N, w] -> [N, w].

    shift/scale/gate come from `c`; the modulation layer starts at zero, so gate = 0 and the block
    is the identity at initialisation (the residual path carries everything).
    """

    def __init__(self, width: int, mlp_ratio: float = 1.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        h = self.norm(x) * (1 + scale) + shift
        return x + gate * self.mlp(h)


class FlowHead(nn.Module):
    """AdaLN-MLP velocity field v(x_t, t | cond) for one step of r mel frames.

    x_t [N, dim], t [N] in [0, 1], cond [N, cond_dim] (an LM hidden state) -> velocity [N, dim].
    Condition = Linear(cond) + MLP(sinusoid(t)); it modulates every block. Both the block
    modulations and the output projection start at zero, so a fresh head predicts v = 0.
    OT-CFM path: x_t = (1 - (1 - sigma_min) t) x0 + t x1, target u = x1 - (1 - sigma_min) x0.
    """

    def __init__(self, dim: int, cond_dim: int, width: int = 256, depth: int = 3, mlp_ratio: float = 1.0,
                 time_freq_dim: int = 256, sigma_min: float = 1e-6):
        super().__init__()
        if dim <= 0 or cond_dim <= 0 or width <= 0 or depth < 0:
            raise BadConfigError(f"flow head needs positive dims (dim {dim}, cond {cond_dim}, width {width}) "
                                 f"and depth >= 0 (got {depth})")
        if not 0.0 <= sigma_min < 1.0:
            raise BadConfigError(f"flow head sigma_min must be in [0, 1), got {sigma_min}")
        self.dim, self.sigma_min, self.time_freq_dim = dim, float(sigma_min), time_freq_dim
        self.input_proj = nn.Linear(dim, width)
        self.cond_proj = nn.Linear(cond_dim, width)
        self.time_mlp = nn.Sequential(nn.Linear(time_freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList([AdaLNBlock(width, mlp_ratio) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.output_proj = nn.Linear(width, dim)
        for layer in (self.final_modulation[1], self.output_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def trunk(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features before the final layer: ([N, width], condition [N, width])."""
        # DiT / MAR time-step layout: [cos | sin], t in [0, 1] scaled by 1000 so that the lowest
        # frequencies still separate nearby times (see voxtok.nn.positions).
        table = sinusoids(t, self.time_freq_dim, layout="cos_sin", log_first=True, scale=1000.0)
        c = self.cond_proj(cond) + self.time_mlp(table.to(cond.dtype))
        h = self.input_proj(x_t)
        for block in self.blocks:
            h = block(h, c)
        return h, c

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h, c = self.trunk(x_t, t, cond)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.output_proj(self.final_norm(h) * (1 + scale) + shift)

    def loss(self, x1: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
             noise_draws: int = 1) -> torch.Tensor:
        """OT-CFM loss: targets x1 [N, dim], cond [N, cond_dim], mask [N, dim] (1 = counts) -> scalar.

        Each target is paired with `noise_draws` independent (x0, t) draws: the LM hidden state is
        computed once, the cheap head runs `noise_draws` times, which cuts the loss variance.
        """
        if noise_draws < 1:
            raise BadConfigError(f"noise_draws must be >= 1, got {noise_draws}")
        if x1.shape[0] == 0:
            return x1.sum() * 0.0
        x1 = x1.repeat(noise_draws, 1)
        cond = cond.repeat(noise_draws, 1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device, dtype=x1.dtype)
        tt = t[:, None]
        x_t = (1 - (1 - self.sigma_min) * tt) * x0 + tt * x1
        target = x1 - (1 - self.sigma_min) * x0
        err = (self(x_t, t, cond) - target).pow(2)
        if mask is None:
            return err.mean()
        mask = mask.to(err.dtype).repeat(noise_draws, 1)
        return (err * mask).sum() / mask.sum().clamp(min=1.0)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, x0: torch.Tensor, n_steps: int = 10, schedule: str = "linear",
               uncond: torch.Tensor | None = None, cfg_strength: float = 0.0) -> torch.Tensor:
        """Euler-integrate the flow from noise x0 [N, dim] to data given cond [N, cond_dim] -> [N, dim].

        Classifier-free guidance with uncond [cond_dim] (the null condition the head was trained
        with) and cfg_strength w > 0: v = (1 + w) v(x | cond) - w v(x | uncond), CosyVoice's form
        (MAR's v_u + s (v_c - v_u) with s = 1 + w): w = 0 is the plain conditional flow, so a
        strength means the same for both VoxTok pipelines (the CLI's --cfg, the demo's slider).
        Both halves run in one head batch; with w = 0 only the conditional one runs.
        """
        if cfg_strength and uncond is None:
            raise BadConfigError("classifier-free guidance needs the null condition the head was trained with")
        grid = time_grid(n_steps, schedule, x0.device, x0.dtype)
        x = x0
        for i in range(n_steps):
            t = grid[i].expand(x.shape[0])
            if cfg_strength:
                null = uncond.to(cond.dtype).expand_as(cond)
                both = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
                v_cond, v_uncond = both.chunk(2)
                v = v_cond + cfg_strength * (v_cond - v_uncond)
            else:
                v = self(x, t, cond)
            x = x + (grid[i + 1] - grid[i]) * v
        return x


def time_grid(n_steps: int, schedule: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """n_steps + 1 ODE times from 0 to 1: 'linear', or 'cosine' (1 - cos(pi/2 u), CosyVoice's
    schedule: small steps near the noise end, where the path bends most)."""
    if int(n_steps) < 1:
        raise BadConfigError(f"the ODE needs n_steps >= 1, got {n_steps}")
    u = torch.linspace(0.0, 1.0, int(n_steps) + 1, device=device, dtype=dtype)
    if schedule == "linear":
        return u
    if schedule == "cosine":
        return 1 - torch.cos(u * math.pi / 2)
    raise BadConfigError(f"unknown ODE time schedule '{schedule}' (choose linear or cosine)")


# ----------------------------------------------------------------------------- sequences


def frames_to_steps(frames: torch.Tensor, lengths: torch.Tensor,
                    r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group frames [B, T, n_mels] into steps of r frames -> (steps [B, S, r*n_mels],
    step_lengths [B] = ceil(lengths / r), frame_mask [B, S, r*n_mels]: 1 on real frames).

    T is zero-padded to S * r; the padded frames of a last, partial step get mask 0.
    """
    batch, total, n_mels = frames.shape
    n_steps = -(-total // r)
    frames = F.pad(frames, (0, 0, 0, n_steps * r - total))
    valid = length_mask(lengths.to(frames.device), n_steps * r).to(frames.dtype)
    frames = frames * valid[..., None]
    mask = valid[..., None].expand(batch, n_steps * r, n_mels).reshape(batch, n_steps, r * n_mels)
    return frames.reshape(batch, n_steps, r * n_mels), (lengths + r - 1) // r, mask


def steps_to_frames(steps: torch.Tensor, r: int, n_mels: int) -> torch.Tensor:
    """Inverse of the grouping: steps [B, S, r*n_mels] -> frames [B, S*r, n_mels]."""
    return steps.reshape(steps.shape[0], steps.shape[1] * r, n_mels)


# ----------------------------------------------------------------------------- the model


@dataclass
class TeacherForcedInputs:
    """One training batch laid out for the backbone (right-padded rows).

    embeds [B, N, width] and their lengths [B]; prefix_lengths [B]: positions before the first
    frame step (the start marker sits at prefix_lengths - 1); steps [B, S, r * n_mels] (model
    space), step_lengths [B], frame_mask [B, S, r * n_mels] (1 on real frames).
    """

    embeds: torch.Tensor
    lengths: torch.Tensor
    prefix_lengths: torch.Tensor
    steps: torch.Tensor
    step_lengths: torch.Tensor
    frame_mask: torch.Tensor

    def cond_index(self) -> torch.Tensor:
        """[B, S] position whose hidden state predicts step s: the start marker for s = 0, step
        s - 1 after that (clamped inside the rows for padded steps)."""
        s = torch.arange(self.steps.shape[1], device=self.embeds.device)[None]
        return (self.prefix_lengths[:, None] - 1 + s).clamp(max=self.embeds.shape[1] - 1)


def _id_items(ids, lengths, what: str) -> list[torch.Tensor]:
    """Per-utterance 1-D id tensors from [L], [B, L] (+ lengths [B], trimming the padding) or a list."""
    if isinstance(ids, torch.Tensor) and ids.dim() == 2 and lengths is not None:
        lengths = torch.as_tensor(lengths).reshape(-1).tolist()
        if len(lengths) != ids.shape[0] or any(not 0 <= int(n) <= ids.shape[1] for n in lengths):
            raise BadTextError(f"{what} lengths {lengths} do not fit ids of shape {list(ids.shape)}")
        ids = [row[:int(n)] for row, n in zip(ids, lengths)]
    items = _as_items(ids, None, what)
    for t in items:
        if t.is_floating_point():
            raise BadTextError(f"{what} must be integer ids, got {t.dtype}")
    return items


def _broadcast(items: list, batch: int, what: str) -> list:
    """One prompt / speaker for the whole batch, or one per utterance."""
    if len(items) == 1 and batch > 1:
        return items * batch
    if len(items) != batch:
        raise BadConfigError(f"{what} has {len(items)} items for a batch of {batch}")
    return items


@register("tts", "flowomni")
class FlowOmniTTS(SavesPretrained, nn.Module):
    """Text (+ prompt, speaker) -> continuous log-mel frames, autoregressively, r frames per step.

    See the module docstring for the sequence layout and the state stream.
    Training: `forward_loss(batch)` on `collate_tts` batches (text_ids, mel, spk_emb).
    Inference: `synthesize(...)` -> (mel [B, n_mels, T], lengths [B]).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, where: str = "flowomni"):
        super().__init__()
        cfg = merge_config(config, where)
        # init_from: sizes and text rows from the Qwen2 folder; self.config keeps them without the path,
        # so a saved model rebuilds without the folder and never reloads the LLM's weights.
        cfg, self.init_from = resolve_init_from(cfg, require_mapping(config, where).get("text_vocab_size"), where)
        self.config = cfg
        self.r = int(cfg["frames_per_step"])
        if self.r <= 0:
            raise BadConfigError(f"frames_per_step (r) must be >= 1, got {cfg['frames_per_step']}")
        self.mel_config = MelConfig.from_spec(cfg["mel"])
        self.n_mels = int(self.mel_config.n_mels)
        self.mel_mean, self.mel_std = float(cfg["mel_mean"]), float(cfg["mel_std"])
        if not self.mel_std > 0:
            raise BadConfigError(f"mel_std must be > 0, got {cfg['mel_std']}")
        # Output padding (and what a vocoder should hear as silence): the preset's log floor.
        self.silence = math.log(self.mel_config.log_floor)
        self.text_vocab_size = int(cfg["text_vocab_size"])
        self.spk_dim = int(cfg["spk_dim"])
        if self.text_vocab_size < 1 or self.spk_dim < 1:
            raise BadConfigError(f"text_vocab_size and spk_dim must be >= 1 "
                                 f"(got {self.text_vocab_size}, {self.spk_dim})")
        if not 0 <= float(cfg["min_frame_text_ratio"]) <= float(cfg["max_frame_text_ratio"]) or \
                float(cfg["max_frame_text_ratio"]) <= 0:
            raise BadConfigError("frame/text ratios must satisfy 0 <= min <= max, max > 0 (got "
                                 f"{cfg['min_frame_text_ratio']}, {cfg['max_frame_text_ratio']})")

        self.backbone = build_causal_backbone(cfg["backbone"])
        width = int(cfg["backbone"]["hidden_size"])
        self.width = width
        self.step_dim = self.r * self.n_mels
        self.text_embedding = nn.Embedding(self.text_vocab_size, width)
        if self.init_from is not None:  # the LLM's token table is the text embedding (Flow-Omni)
            load_qwen2_weights(self.backbone, self.text_embedding, self.init_from)
        self.start_embedding = nn.Parameter(torch.randn(width) * 0.02)
        self.frame_proj = nn.Linear(self.step_dim, width)
        self.use_spk_emb = bool(cfg["use_spk_emb"])
        self.spk_proj = nn.Linear(self.spk_dim, width) if self.use_spk_emb else None
        self.state_head = nn.Linear(width, len(STATE_NAMES))
        head = cfg["head"]
        if int(head["width"]) < self.step_dim:
            # The velocity depends on all of x_t, which a narrower trunk cannot carry: on a toy task
            # a 64-wide head for 160-d steps stalled at ~4x the CFM loss of a 256-wide one.
            raise BadConfigError(f"head.width {head['width']} is below the step size r x n_mels = {self.step_dim}; "
                                 "widen the head or lower frames_per_step")
        self.head = FlowHead(self.step_dim, width, width=int(head["width"]), depth=int(head["depth"]),
                             mlp_ratio=float(head["mlp_ratio"]), time_freq_dim=int(head["time_freq_dim"]),
                             sigma_min=float(cfg["cfm"]["sigma_min"]))
        self.noise_draws = int(cfg["cfm"]["noise_draws"])
        if self.noise_draws < 1:
            raise BadConfigError(f"cfm.noise_draws must be >= 1, got {self.noise_draws}")
        inf = cfg["inference"]
        time_grid(int(inf["n_steps"]), str(inf["t_schedule"]))  # a bad ODE setting fails at build time
        if not 0.0 < float(inf["stop_threshold"]) <= 1.0:
            raise BadConfigError(f"inference.stop_threshold must be in (0, 1], got {inf['stop_threshold']}")
        # Condition dropout trains the unconditional velocity CFG needs; the null condition exists
        # only then, so a checkpoint trained without it (or saved before CFG) loads strictly.
        self.cond_dropout = float(cfg["cfm"]["cond_dropout"])
        if not 0.0 <= self.cond_dropout < 1.0:
            raise BadConfigError(f"cfm.cond_dropout must be in [0, 1), got {cfg['cfm']['cond_dropout']}")
        # Zeros: a fresh null condition carries no information (only cond_proj's bias reaches the head).
        self.null_cond = nn.Parameter(torch.zeros(width)) if self.cond_dropout > 0 else None
        self.check_cfg_strength(inf["cfg_strength"], "inference.cfg_strength")
        for key in ("chunk_frames", "overlap_frames"):
            value = cfg["streaming"][key]
            if not isinstance(value, int) or isinstance(value, bool) or value < (key == "chunk_frames"):
                raise BadConfigError(f"streaming.{key} must be a whole number >= {int(key == 'chunk_frames')}, "
                                     f"got {value!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "flowomni") -> "FlowOmniTTS":
        """Build from the `model:` config block (random weights); `where` names it in messages."""
        return cls(config, where)

    def to_config(self) -> dict[str, Any]:
        """The full config dict (defaults filled in) that `from_config` rebuilds this model from."""
        return copy.deepcopy(self.config)

    @property
    def device(self) -> torch.device:
        return self.frame_proj.weight.device

    @property
    def supports_cfg(self) -> bool:
        """Whether the model was trained with condition dropout, i.e. can use classifier-free guidance."""
        return self.null_cond is not None

    def check_cfg_strength(self, value: float | None, what: str = "cfg_strength") -> float:
        """A CFG strength (None: the config's `inference.cfg_strength`) -> float w >= 0, or a one-line
        BadConfigError: negative or not finite, or w > 0 on a model without a null condition."""
        value = self.config["inference"]["cfg_strength"] if value is None else value
        try:
            strength = float(value)
        except (TypeError, ValueError):
            raise BadConfigError(f"{what} must be a number, got {value!r}") from None
        if not (math.isfinite(strength) and strength >= 0):
            raise BadConfigError(f"{what} must be finite and >= 0 (0 = no guidance), got {value}")
        if strength > 0 and not self.supports_cfg:
            raise BadConfigError(f"{what} {strength:g} needs a Flow-Omni model trained with condition dropout "
                                 "(cfm.cond_dropout > 0); this one has no unconditional flow, so leave CFG unset")
        return strength

    # ------------------------------------------------------------------ shared pieces

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Log mel -> model space (about zero mean, unit spread); any shape."""
        return (mel - self.mel_mean) / self.mel_std

    def denormalize_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> log mel; any shape."""
        return x * self.mel_std + self.mel_mean

    def embed_speaker(self, spk_emb: torch.Tensor) -> torch.Tensor:
        """Speaker embeddings [B, spk_dim] -> prefix tokens [B, 1, width] (L2-normalised first)."""
        if not isinstance(spk_emb, torch.Tensor):
            spk_emb = torch.as_tensor(spk_emb)
        if spk_emb.dim() == 1:
            spk_emb = spk_emb[None]
        if spk_emb.dim() != 2 or spk_emb.shape[-1] != self.spk_dim:
            raise BadConfigError(f"speaker embedding has shape {tuple(spk_emb.shape)}, the model expects "
                                 f"[B, {self.spk_dim}]")
        if not bool(torch.isfinite(spk_emb).all()):
            raise BadConfigError("speaker embedding contains NaN or infinite values")
        spk = F.normalize(spk_emb.float().to(self.device), dim=-1)
        return self.spk_proj(spk.to(self.spk_proj.weight.dtype))[:, None]

    def _check_text(self, ids: torch.Tensor, lengths: torch.Tensor, what: str = "text") -> None:
        if int(lengths.min()) < 1:
            raise BadTextError(f"empty {what}: nothing to synthesize")
        valid = ids[length_mask(lengths, ids.shape[1])]
        if int(valid.min()) < 0 or int(valid.max()) >= self.text_vocab_size:
            raise BadTextError(f"{what} id outside the model's vocabulary of {self.text_vocab_size} "
                               f"(text encoded with another frontend?)")

    def prefix_segments(self, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                        spk_emb: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[spk] [text] [start] as `pack_segments` segments (emb [B, L_k, width], lengths [B]).

        text_ids [B, L] (prompt text already prepended) + text_lengths [B]; spk_emb [B, spk_dim]
        (required when use_spk_emb, ignored otherwise).
        """
        self._check_text(text_ids, text_lengths)
        batch, device = text_ids.shape[0], text_ids.device
        ones = torch.ones(batch, dtype=torch.long, device=device)
        segments = []
        if self.use_spk_emb:
            if spk_emb is None:
                raise BadConfigError("this model conditions on a speaker embedding (use_spk_emb): "
                                     f"pass spk_emb [B, {self.spk_dim}]")
            spk = self.embed_speaker(spk_emb)
            if spk.shape[0] != batch:
                raise BadConfigError(f"{spk.shape[0]} speaker embeddings for a batch of {batch}")
            segments.append((spk, ones))
        safe = text_ids.clamp(0, self.text_vocab_size - 1)  # padding may hold anything
        segments.append((self.text_embedding(safe), text_lengths))
        segments.append((self.start_embedding.expand(batch, 1, -1), ones))
        return segments

    # ------------------------------------------------------------------ training

    def teacher_forced_inputs(self, batch: Mapping[str, Any]) -> TeacherForcedInputs:
        """Backbone inputs for a `collate_tts` batch: [spk] [text] [start] [all frame steps].

        batch: text_ids [B, L] + text_lengths [B], mel [B, n_mels, T] (log mel) + mel_lengths [B],
        spk_emb [B, spk_dim] (when use_spk_emb).
        """
        mel, mel_lengths = batch["mel"], batch["mel_lengths"]
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise BadAudioError(f"mel must be [B, {self.n_mels}, T], got {tuple(mel.shape)}")
        mel_lengths = mel_lengths.to(mel.device)
        if int(mel_lengths.min()) < 1 or int(mel_lengths.max()) > mel.shape[-1]:
            raise BadAudioError(f"mel lengths must be in [1, {mel.shape[-1]}], got {mel_lengths.tolist()}")
        steps, step_lengths, frame_mask = frames_to_steps(self.normalize_mel(mel).transpose(1, 2), mel_lengths, self.r)
        segments = self.prefix_segments(batch["text_ids"], batch["text_lengths"], batch.get("spk_emb"))
        segments.append((self.frame_proj(steps), step_lengths))
        embeds, totals, starts = pack_segments(segments)
        return TeacherForcedInputs(embeds, totals, starts[-1], steps, step_lengths, frame_mask)

    def forward_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint loss on a `collate_tts` batch (keys as in `teacher_forced_inputs`).

        Returns (loss, stats): loss = state_weight * CE(state stream, right padding ignored)
        + cfm_weight * CFM (frames past mel_lengths masked); stats (detached scalars): loss, ce,
        cfm, stop_acc (how often a stop position is classified as stop), and with condition dropout
        cond_dropped (the fraction of frame steps whose head saw the null condition).
        """
        inp = self.teacher_forced_inputs(batch)
        size = inp.embeds.shape[1]
        hidden = self.backbone(inputs_embeds=inp.embeds, attention_mask=length_mask(inp.lengths, size).long(),
                               use_cache=False).last_hidden_state

        n_steps = inp.steps.shape[1]
        cond = hidden.gather(1, inp.cond_index()[..., None].expand(-1, -1, hidden.shape[-1]))
        valid = length_mask(inp.step_lengths, n_steps)
        cond, dropped = self.drop_condition(cond[valid])
        cfm = self.head.loss(inp.steps[valid], cond, inp.frame_mask[valid], self.noise_draws)

        targets = state_targets(inp.prefix_lengths, inp.step_lengths, size)
        logits = self.state_head(hidden).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        weights = self.config["loss"]
        loss = float(weights["state_weight"]) * ce + float(weights["cfm_weight"]) * cfm
        with torch.no_grad():
            stop_acc = (logits.argmax(-1)[targets == STATE_STOP] == STATE_STOP).float().mean()
        stats = {"loss": loss.detach(), "ce": ce.detach(), "cfm": cfm.detach(), "stop_acc": stop_acc}
        if self.supports_cfg:
            stats["cond_dropped"] = dropped.float().mean() if dropped.numel() else loss.new_zeros(()).detach()
        return loss, stats

    def drop_condition(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition dropout for CFG: cond [N, width] (LM hidden states, one per frame step) ->
        (cond with each row replaced by the null condition with probability cfm.cond_dropout,
        dropped [N] bool). Only in training mode: evaluation scores the conditional flow synthesis uses.

        Rows drop independently (per step, not per utterance): the head sees one step at a time,
        and the unconditional velocity it learns is the same frame prior either way, with less variance.
        """
        if self.null_cond is None or not self.training:
            return cond, torch.zeros(cond.shape[0], dtype=torch.bool, device=cond.device)
        dropped = torch.rand(cond.shape[0], device=cond.device) < self.cond_dropout
        null = self.null_cond.to(cond.dtype).expand_as(cond)
        return torch.where(dropped[:, None], null, cond), dropped

    # ------------------------------------------------------------------ inference

    def _prompt_steps(self, prompt_mel, prompt_mel_lengths, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt log mels -> (steps [B, Sp, r * n_mels] in model space, step counts [B]).

        prompt_mel: [n_mels, T], [B or 1, n_mels, T] (+ lengths) or a list of [n_mels, T_b].
        Each prompt is cut to a multiple of r by dropping its FIRST T_b % r frames, so the
        generated speech continues right after the prompt's last frame.
        """
        if isinstance(prompt_mel, torch.Tensor) and prompt_mel.dim() == 3:
            lengths = ([prompt_mel.shape[-1]] * prompt_mel.shape[0] if prompt_mel_lengths is None
                       else torch.as_tensor(prompt_mel_lengths).reshape(-1).tolist())
            if len(lengths) != prompt_mel.shape[0]:
                raise BadAudioError(f"{len(lengths)} prompt mel lengths for {prompt_mel.shape[0]} prompt mels")
            mels = [m[:, :int(n)] for m, n in zip(prompt_mel, lengths)]
        elif isinstance(prompt_mel, torch.Tensor):
            mels = [prompt_mel]
        else:
            mels = [torch.as_tensor(m) for m in prompt_mel]
        mels = _broadcast(mels, batch, "prompt_mel")
        for m in mels:
            if m.dim() != 2 or m.shape[0] != self.n_mels:
                raise BadAudioError(f"prompt mel must be [{self.n_mels}, T] log mels (the '{self.config['mel']}' "
                                    f"front end), got {tuple(m.shape)}")
            if not bool(torch.isfinite(m).all()):
                raise BadAudioError("prompt mel contains NaN or infinite values")
            if m.shape[1] < self.r:
                raise BadAudioError(f"prompt mel has {m.shape[1]} frames, at least r = {self.r} are needed")
        counts = torch.tensor([m.shape[1] // self.r for m in mels], dtype=torch.long, device=self.device)
        steps = self.frame_proj.weight.new_zeros(batch, int(counts.max()), self.step_dim)
        for b, m in enumerate(mels):
            kept = m[:, m.shape[1] - int(counts[b]) * self.r:].to(self.device, self.frame_proj.weight.dtype)
            steps[b, :int(counts[b])] = self.normalize_mel(kept).T.reshape(-1, self.step_dim)
        return steps, counts

    def _settings(self, n_steps, t_schedule, temperature, stop_threshold, cfg_strength,
                  max_frames) -> dict[str, Any]:
        """The sampling options of `synthesize` / `stream_frames` (None: the config's) checked -> a dict."""
        inf = self.config["inference"]
        n_steps = int(inf["n_steps"] if n_steps is None else n_steps)
        schedule = str(t_schedule or inf["t_schedule"])
        time_grid(n_steps, schedule)
        temperature = float(inf["temperature"] if temperature is None else temperature)
        if not (math.isfinite(temperature) and temperature >= 0):
            raise BadConfigError(f"temperature (noise scale) must be finite and >= 0, got {temperature}")
        threshold = float(inf["stop_threshold"] if stop_threshold is None else stop_threshold)
        if max_frames is not None and int(max_frames) < 1:
            raise BadConfigError(f"max_frames must be >= 1, got {max_frames}")
        return dict(n_steps=n_steps, schedule=schedule, temperature=temperature, threshold=threshold,
                    cfg_strength=self.check_cfg_strength(cfg_strength))

    def _prefix(self, text_ids, text_lengths, prompt_text_ids, prompt_text_lengths, prompt_mel, prompt_mel_lengths,
                spk_emb, seed, max_frames) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """Inputs of `synthesize` -> (prefix embeds [B, N, width], lengths [B], min_steps [B], max_steps [B],
        one noise generator per item). Call in eval mode."""
        texts = _id_items(text_ids, text_lengths, "text_ids")
        batch, device = len(texts), self.device
        if batch == 0:
            raise BadTextError("no text to synthesize (empty batch)")
        if any(len(t) == 0 for t in texts):
            raise BadTextError("empty text: nothing to synthesize")
        if prompt_text_ids is not None and prompt_mel is None:
            raise BadAudioError("a prompt text needs its prompt mel (the audio it transcribes)")
        prompts = (_broadcast(_id_items(prompt_text_ids, prompt_text_lengths, "prompt_text_ids"), batch,
                              "prompt_text_ids")
                   if prompt_text_ids is not None else [t[:0] for t in texts])
        if spk_emb is not None:
            spk_emb = torch.as_tensor(spk_emb)
            spk_emb = spk_emb[None] if spk_emb.dim() == 1 else spk_emb
            spk_emb = spk_emb.expand(batch, -1) if spk_emb.dim() == 2 and spk_emb.shape[0] == 1 else spk_emb
        generators = item_generators(seed, batch)

        text_len = torch.tensor([len(t) for t in texts], dtype=torch.long, device=device)
        cap = (torch.full_like(text_len, int(max_frames)) if max_frames is not None
               else torch.ceil(text_len * float(self.config["max_frame_text_ratio"])).long())
        max_steps = ((cap + self.r - 1) // self.r).clamp(min=1)
        min_steps = torch.ceil(text_len * float(self.config["min_frame_text_ratio"]) / self.r).long()
        min_steps = torch.minimum(min_steps.clamp(min=1), max_steps)

        full_text, full_lengths = _pad([torch.cat([p.to(device), t.to(device)]) for p, t in zip(prompts, texts)],
                                       device)
        segments = self.prefix_segments(full_text, full_lengths, spk_emb)
        if prompt_mel is not None:
            prompt_steps, prompt_counts = self._prompt_steps(prompt_mel, prompt_mel_lengths, batch)
            segments.append((self.frame_proj(prompt_steps), prompt_counts))
        embeds, totals, _ = pack_segments(segments)
        return embeds, totals, min_steps, max_steps, generators

    @torch.inference_mode()
    def synthesize(self, text_ids, text_lengths: torch.Tensor | None = None, prompt_text_ids=None,
                   prompt_text_lengths: torch.Tensor | None = None, prompt_mel=None,
                   prompt_mel_lengths: torch.Tensor | None = None,
                   spk_emb: torch.Tensor | None = None, n_steps: int | None = None,
                   temperature: float | None = None, seed: int | Sequence[int] | None = 0,
                   max_frames: int | None = None, t_schedule: str | None = None,
                   stop_threshold: float | None = None,
                   cfg_strength: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log mels for a batch of texts: KV-cached autoregression, an Euler ODE per step.

        text_ids: [L], [B, L] (+ text_lengths [B]) or a list of 1-D id tensors.
        prompt_text_ids (+ prompt_text_lengths): the prompt's transcript, same forms, one for the
            whole batch or one per item; it is prepended to each text. Needs prompt_mel.
        prompt_mel: log mel of the prompt audio (this model's mel front end): [n_mels, T],
            [B or 1, n_mels, T] (+ prompt_mel_lengths [B]) or a list; fed before the generated frames.
        spk_emb: [B or 1, spk_dim] speaker embedding (required when use_spk_emb).
        n_steps, t_schedule, temperature (noise scale; 0 = the deterministic mean path),
        stop_threshold, cfg_strength (classifier-free guidance w >= 0, 0 = off; w > 0 needs a model
            trained with cfm.cond_dropout): override the config's `inference` block.
        seed: int (item b uses seed + b, so a batch reproduces one-by-one synthesis with
            seeds seed, seed + 1, ...), one seed per item, or None (fresh seeds).
        max_frames: cap on generated frames (default max_frame_text_ratio x text length).

        Returns (mel [B, n_mels, T]: generated frames only, prompt excluded, padded with the log
        floor; lengths [B], multiples of r). An item stops at the first step where
        p(stop) >= stop_threshold, but not before min_frame_text_ratio x its text length.
        """
        settings = self._settings(n_steps, t_schedule, temperature, stop_threshold, cfg_strength, max_frames)
        with eval_mode(self):  # no dropout while decoding, even when called from a training loop
            embeds, totals, min_steps, max_steps, generators = self._prefix(
                text_ids, text_lengths, prompt_text_ids, prompt_text_lengths, prompt_mel, prompt_mel_lengths,
                spk_emb, seed, max_frames)
            steps, produced = self._decode(embeds, totals, min_steps, max_steps, generators, **settings)
        frames = self.denormalize_mel(steps_to_frames(steps, self.r, self.n_mels))
        lengths = produced * self.r
        keep = length_mask(lengths, frames.shape[1])[..., None]
        frames = torch.where(keep, frames, torch.full_like(frames, self.silence))
        return frames.transpose(1, 2).contiguous(), lengths

    def chunk_steps(self, frames: int | None, what: str = "chunk_frames") -> int:
        """A chunk size in mel frames (None: the config's streaming.chunk_frames) -> whole steps (>= 1),
        rounded up: frames come r at a time."""
        frames = self.config["streaming"]["chunk_frames"] if frames is None else frames
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise BadConfigError(f"{what} must be a whole number of mel frames >= 1, got {frames!r}")
        return -(-frames // self.r)

    @torch.inference_mode()
    def stream_frames(self, text_ids, prompt_text_ids=None, prompt_mel=None, spk_emb: torch.Tensor | None = None,
                      n_steps: int | None = None, temperature: float | None = None, seed: int | None = 0,
                      max_frames: int | None = None, t_schedule: str | None = None,
                      stop_threshold: float | None = None, cfg_strength: float | None = None,
                      chunk_frames: int | None = None, first_chunk_frames: int | None = None) -> Iterator[torch.Tensor]:
        """One utterance's log mel in chunks [n_mels, F_k] while the KV-cached loop generates it.

        text_ids [L] (or [1, L]), prompt_text_ids [Lp], prompt_mel [n_mels, Tp], spk_emb [spk_dim] or
        [1, spk_dim] and the sampling options as in `synthesize` (one item: seed is its seed).
        The first chunk holds `first_chunk_frames` frames (default: chunk_frames), every later one
        `chunk_frames` (default: the config's streaming.chunk_frames), both rounded up to whole steps
        of r frames; the last holds what is left. The chunks concatenate to exactly `synthesize`'s
        mel[0, :, :lengths[0]] for the same inputs and seed (same noise draws, same decoding).
        """
        settings = self._settings(n_steps, t_schedule, temperature, stop_threshold, cfg_strength, max_frames)
        size = self.chunk_steps(chunk_frames)
        first = self.chunk_steps(first_chunk_frames if first_chunk_frames is not None else chunk_frames,
                                 "first_chunk_frames")
        if isinstance(text_ids, torch.Tensor) and text_ids.dim() == 2:
            if text_ids.shape[0] != 1:
                raise BadTextError(f"stream_frames takes one text, got a batch of {text_ids.shape[0]}")
            text_ids = text_ids[0]
        if not isinstance(text_ids, torch.Tensor) or text_ids.dim() != 1:
            raise BadTextError("stream_frames takes one text: ids [L] or [1, L]")
        if spk_emb is not None and torch.as_tensor(spk_emb).dim() == 2 and torch.as_tensor(spk_emb).shape[0] != 1:
            raise BadConfigError("stream_frames takes one speaker embedding [spk_dim] or [1, spk_dim]")
        with eval_mode(self):
            embeds, totals, min_steps, max_steps, generators = self._prefix(
                text_ids, None, prompt_text_ids, None, prompt_mel, None, spk_emb, seed, max_frames)
            pending: list[torch.Tensor] = []
            target = first
            for out in self._decode_steps(embeds, totals, min_steps, max_steps, generators, **settings):
                pending.append(out.value[0])
                if len(pending) == target:
                    yield self._chunk_mel(pending)
                    pending, target = [], size
            if pending:
                yield self._chunk_mel(pending)

    def _chunk_mel(self, steps: list[torch.Tensor]) -> torch.Tensor:
        """Generated steps (each [r * n_mels], model space) -> log mel [n_mels, len(steps) * r]."""
        return self.denormalize_mel(torch.stack(steps).reshape(-1, self.n_mels)).T.contiguous()

    def _decode(self, embeds: torch.Tensor, totals: torch.Tensor, min_steps: torch.Tensor, max_steps: torch.Tensor,
                generators: list[torch.Generator], n_steps: int, schedule: str, temperature: float,
                threshold: float, cfg_strength: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """KV-cached generation after right-padded prefixes embeds [B, N, width] (lengths totals [B]).

        Returns (steps [B, S, r * n_mels] in model space, steps produced per item [B]).
        """
        batch = embeds.shape[0]
        produced = torch.zeros(batch, dtype=torch.long, device=embeds.device)
        outputs: list[torch.Tensor] = []
        for out in self._decode_steps(embeds, totals, min_steps, max_steps, generators, n_steps, schedule,
                                      temperature, threshold, cfg_strength):
            produced = produced + out.emitted.long()
            outputs.append(out.value)
        steps = torch.stack(outputs, dim=1) if outputs else embeds.new_zeros(batch, 0, self.step_dim)
        return steps, produced

    def _decode_steps(self, embeds: torch.Tensor, totals: torch.Tensor, min_steps: torch.Tensor,
                      max_steps: torch.Tensor, generators: list[torch.Generator], n_steps: int, schedule: str,
                      temperature: float, threshold: float, cfg_strength: float = 0.0) -> Iterator[StepOutput]:
        """The decoding loop of `_decode`, one StepOutput per step (value: steps [B, r * n_mels], model space;
        emitted [B]: which items produced theirs)."""
        device, dtype = embeds.device, embeds.dtype

        def sample_frames(step: int, hidden: torch.Tensor, active: torch.Tensor, may_stop: torch.Tensor) -> StepOutput:
            # The state stream decides before the step: a stop means this step is not produced.
            p_stop = self.state_head(hidden).float().softmax(-1)[:, STATE_STOP]
            stop = active.to(device) & may_stop.to(device) & (p_stop >= threshold)
            emitted = active.to(device) & ~stop
            if not bool(emitted.any()):
                return StepOutput(emitted=emitted, ended=stop, feed=None)
            # Every item draws its noise from its own generator: the batch does not change it.
            noise = torch.stack([torch.randn(self.step_dim, generator=g) for g in generators]).to(device, dtype)
            x = self.head.sample(hidden, noise * temperature, n_steps, schedule, self.null_cond, cfg_strength)
            return StepOutput(emitted=emitted, ended=stop, feed=self.frame_proj(x), value=x)

        return decode_with_kv_cache(self.backbone, embeds, totals, sample_frames, min_steps, max_steps)


def state_targets(prefix_lengths: torch.Tensor, step_lengths: torch.Tensor, size: int) -> torch.Tensor:
    """State-stream targets [B, size] (long) for rows of prefix_lengths[b] prefix positions (the last
    is the start marker) followed by step_lengths[b] frame steps; right padding gets IGNORE_INDEX."""
    pos = torch.arange(size, device=prefix_lengths.device)[None, :]
    start = (prefix_lengths - 1)[:, None]
    last = (prefix_lengths + step_lengths - 1)[:, None]
    targets = torch.full((prefix_lengths.shape[0], size), STATE_PAD, dtype=torch.long, device=pos.device)
    targets = torch.where(pos == start, STATE_START, targets)
    targets = torch.where((pos > start) & (pos < last), STATE_GENERATING, targets)
    targets = torch.where(pos == last, STATE_STOP, targets)
    return torch.where(pos > last, IGNORE_INDEX, targets)
