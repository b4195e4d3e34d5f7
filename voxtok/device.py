"""Where and in which precision inference runs: the `--device` / `--dtype` options every inference
CLI, recipe stage and the demo share.

A device is `cpu`, `cuda` or `cuda:N` (`auto`: the first GPU when there is one, else the CPU); a
device this machine lacks is a one-line BadConfigError, raised before any model is loaded. A dtype is
`float32`, `bfloat16` or `float16`. Weights stay float32 and the reduced precision comes from
autocast: the layers that need float32 (ISTFT heads, quantizer distances, log mels) already switch
autocast off for themselves, so every model "allows" every dtype that autocast supports on the
device. float16 autocast on CPU needs a PyTorch that has it; where not, the error says so.

Worker placement for corpus-scale jobs (`worker_devices`): one worker per GPU with `ngpu`, else
`nj` CPU processes.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Iterator

from voxtok.errors import BadConfigError

if TYPE_CHECKING:
    import torch

# Names only, and torch imported inside the functions: the CLI adds these options while building
# its parser, and `voxtok --help` must not wait for torch.
DTYPES = ("float32", "bfloat16", "float16")
DEVICE_HELP = "cpu, cuda, cuda:N or auto (a GPU when there is one)"
DTYPE_HELP = "float32, or bfloat16 / float16 autocast (weights stay float32)"


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' | 'auto' | None (cpu) -> torch.device, or a one-line BadConfigError
    when this machine has no such device."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BadConfigError(f"unknown device '{name}' (expected {DEVICE_HELP})") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise BadConfigError(f"device '{name}' is not supported (expected {DEVICE_HELP})")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise BadConfigError(f"device '{name}' asked for, but this machine has no CUDA GPU (use --device cpu)")
    index = 0 if device.index is None else device.index
    if index >= count:
        raise BadConfigError(f"device '{name}' asked for, but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def resolve_dtype(name: str | torch.dtype | None, device: torch.device | str = "cpu") -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' | None (float32) -> torch.dtype, checked against what autocast
    supports on `device`; a one-line BadConfigError otherwise."""
    import torch

    if isinstance(name, torch.dtype):
        name = str(name).removeprefix("torch.")
    name = (name or "float32").strip().lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise BadConfigError(f"unknown dtype '{name}' (expected one of {', '.join(DTYPES)})")
    dtype = getattr(torch, name)
    device_type = torch.device(device).type
    if dtype is not torch.float32 and not torch.amp.autocast_mode.is_autocast_available(device_type):
        raise BadConfigError(f"{name} is not available on {device_type} in this PyTorch")
    if dtype is torch.float16 and device_type == "cpu":
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                pass
        except (RuntimeError, AssertionError):
            raise BadConfigError("float16 autocast on CPU needs a newer PyTorch; use bfloat16") from None
    return dtype


@contextlib.contextmanager
def precision(device: torch.device | str, dtype: torch.dtype) -> Iterator[None]:
    """Run the block with autocast to `dtype` on `device` (nothing changes for float32)."""
    import torch

    if dtype is torch.float32:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def place(model, device: torch.device | str):
    """Move `model` (an nn.Module or anything with `.to`) to `device` once and return it in eval mode
    when it has one."""
    import torch

    model = model.to(torch.device(device))
    return model.eval() if hasattr(model, "eval") else model


def worker_devices(ngpu: int = 0, nj: int = 1, device: str | None = None) -> list[str]:
    """Devices of the workers of a corpus-scale job: `ngpu` > 0 -> one worker per GPU
    ['cuda:0', ..., 'cuda:<ngpu-1>'] (checked to exist); else `nj` CPU workers, or `nj` workers on
    `device` when one is named (e.g. 'cuda:1')."""
    if ngpu and ngpu > 0:
        resolve_device(f"cuda:{ngpu - 1}")
        return [f"cuda:{i}" for i in range(ngpu)]
    where = str(resolve_device(device or "cpu"))
    return [where] * max(1, int(nj))


def add_device_options(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    """Add `--device` (default cpu) and, with `dtype`, `--dtype` (default float32) to a CLI parser."""
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)
    if dtype:
        parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help=DTYPE_HELP)
