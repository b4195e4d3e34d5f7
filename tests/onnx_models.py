"""Small torch stand-ins for CosyVoice's released ONNX models, exported in the tests.

They have the released files' inputs and outputs (by position, as CosyVoice feeds them):
    campplus.onnx              fbank [B, F, 80] float32                      -> x-vector [B, 192]
    speech_tokenizer_v1.onnx   feats [1, 128, N] float32, feats_length [1] int32 -> tokens [1, ceil(N / 2)] int32
with random weights, so the tests prove the loading code and the front ends, not the trained models.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class TinyCamPlus(nn.Module):
    """fbank [B, F, 80] -> [B, 192]: a TDNN layer, mean+std statistics pooling and a projection (CAM++'s shape)."""

    def __init__(self, dim: int = 192, channels: int = 32):
        super().__init__()
        self.tdnn = nn.Conv1d(80, channels, 5, padding=2)
        self.proj = nn.Linear(2 * channels, dim)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.tdnn(fbank.transpose(1, 2)))
        stats = torch.cat([x.mean(-1), x.std(-1)], dim=-1)
        return self.proj(stats)


class TinyS3(nn.Module):
    """feats [1, 128, N] + feats_length [1] -> codes [1, ceil(N / 2)]: a stride-2 conv (the v1 stem's rate)
    over the valid frames, then the nearest of 4,096 unit-norm code vectors (v1's cosine VQ)."""

    def __init__(self, codebook_size: int = 4096, dim: int = 16):
        super().__init__()
        self.conv = nn.Conv1d(128, dim, 3, stride=2, padding=1)
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))

    def forward(self, feats: torch.Tensor, feats_length: torch.Tensor) -> torch.Tensor:
        valid = torch.arange(feats.shape[-1])[None] < feats_length[:, None]
        x = self.conv(feats * valid[:, None].to(feats.dtype)).transpose(1, 2)
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        codebook = self.codebook / self.codebook.norm(dim=-1, keepdim=True)
        return (x @ codebook.t()).argmax(-1).to(torch.int32)


def export_onnx(module: nn.Module, example: tuple, path: Path, input_names: list[str], output_names: list[str],
                dynamic_axes: dict) -> Path:
    """Export `module` (eval mode) with the TorchScript exporter, dynamic axes as given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module.eval(), example, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
    return path


def export_campplus(path: Path, seed: int = 0) -> TinyCamPlus:
    """Write a random-weight campplus.onnx stand-in to `path`; returns the torch module."""
    torch.manual_seed(seed)
    module = TinyCamPlus().eval()
    export_onnx(module, (torch.randn(1, 50, 80),), path, ["input"], ["output"],
                {"input": {0: "batch", 1: "frames"}, "output": {0: "batch"}})
    return module


def export_s3(path: Path, seed: int = 0, codebook_size: int = 4096) -> TinyS3:
    """Write a random-weight speech_tokenizer_v1.onnx stand-in to `path`; returns the torch module."""
    torch.manual_seed(seed)
    module = TinyS3(codebook_size).eval()
    export_onnx(module, (torch.randn(1, 128, 60), torch.tensor([60], dtype=torch.int32)), path,
                ["feats", "feats_length"], ["indices"], {"feats": {2: "frames"}, "indices": {1: "tokens"}})
    return module
