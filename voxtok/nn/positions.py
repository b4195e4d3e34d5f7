"""Sinusoidal position / time tables and rotary-embedding tables.

One function, `sinusoids`, serves every layout VoxTok's models reproduce; the switches are the
ways the published models differ (which is why they are switches and not copies):

| model (paper / code)                              | layout        | endpoint | log_first | scale |
|---------------------------------------------------|---------------|----------|-----------|-------|
| Transformer (Vaswani et al. 2017), ESPnet/WeNet   | "interleaved" | False    | False     | 1     |
|   absolute and relative positions (`rel_pos`:      |               |          |           |       |
|   positions T-1 .. -(T-1)): conformer.py, llm.py   |               |          |           |       |
| Whisper / CosyVoice S3 tokenizer: codecs/s3.py    | "sin_cos"     | True     | True      | 1     |
| Matcha-TTS / CosyVoice flow decoder time step:     | "sin_cos"     | True     | False     | 1000  |
|   tts/flow_estimators.py                          |               |          |           |       |
| DiT / MAR time step: tts/flowomni.py              | "cos_sin"     | False    | True      | 1000  |

`log_first` only changes the order of two float32 operations, hence the last bit of some
frequencies; it exists so that every model keeps bit-identical positions (and checkpoints
trained with them compute what they computed before).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LAYOUTS = ("interleaved", "sin_cos", "cos_sin")


def sinusoid_frequencies(half: int, *, max_period: float = 10000.0, endpoint: bool = False,
                         log_first: bool = False, device: torch.device | None = None) -> torch.Tensor:
    """Geometric angular frequencies [half] (float32), from 1 down towards 1 / max_period.

    endpoint: True -> exponent i / (half - 1), the last frequency is exactly 1 / max_period
    (Whisper, Matcha); False -> exponent i / half (Vaswani, DiT).
    log_first: True computes (-log(max_period) * i) / denominator (DiT's rounding), False
    i * (-log(max_period) / denominator) (Vaswani's, Whisper's and Matcha's rounding).
    """
    steps = torch.arange(half, device=device, dtype=torch.float32)
    denominator = max(half - 1, 1) if endpoint else half
    if log_first:
        return torch.exp(-math.log(max_period) * steps / denominator)
    return torch.exp(steps * -(math.log(max_period) / denominator))


def sinusoids(positions: torch.Tensor, dim: int, *, layout: str = "interleaved", max_period: float = 10000.0,
              endpoint: bool = False, log_first: bool = False, scale: float = 1.0) -> torch.Tensor:
    """Sinusoidal encodings of positions or times [N] (any sign, integer or float) -> [N, dim] float32.

    angle[n, i] = scale * positions[n] * frequency[i] (see `sinusoid_frequencies`), then
    layout "interleaved": sin in the even columns, cos in the odd ones; "sin_cos": [sin | cos];
    "cos_sin": [cos | sin]. An odd `dim` gets a last column of zeros. The module docstring says
    which model uses which switches.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"sinusoid layout must be one of {LAYOUTS}, got {layout!r}")
    half = dim // 2
    freqs = sinusoid_frequencies(half, max_period=max_period, endpoint=endpoint, log_first=log_first,
                                 device=positions.device)
    scaled = positions.float().reshape(-1)
    if scale != 1.0:
        scaled = scaled * scale
    angles = scaled[:, None] * freqs[None, :]
    if layout == "interleaved":
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(angles.shape[0], 2 * half)
    elif layout == "sin_cos":
        table = torch.cat([angles.sin(), angles.cos()], dim=-1)
    else:
        table = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return F.pad(table, (0, dim - 2 * half))


def rotary_tables(frames: int, head_dim: int, base: float = 10000.0,
                  device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [frames, head_dim] for rotate-half rotary embeddings (RoFormer / LLaMA layout)."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.arange(frames, device=device).float()[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, Dh] by the tables cos / sin [T, Dh] (rotate-half pairing) -> same shape."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[None, :, None].to(x.dtype) + turned * sin[None, :, None].to(x.dtype)
