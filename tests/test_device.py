"""The shared --device / --dtype plumbing (voxtok/device.py): names resolve, an absent GPU is a one-line
error before any model loads, and reduced precision runs through autocast on CPU."""

from __future__ import annotations

import argparse

import pytest
import torch

from voxtok.device import add_device_options, place, precision, resolve_device, resolve_dtype, worker_devices
from voxtok.errors import BadConfigError


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_a_missing_gpu_is_a_one_line_error(name):
    with pytest.raises(BadConfigError, match="no CUDA GPU") as err:
        resolve_device(name)
    assert "\n" not in str(err.value)
    with pytest.raises(BadConfigError, match="no CUDA GPU"):
        worker_devices(ngpu=2)


@pytest.mark.parametrize("name", ["tpu0", "gpu", "cuda:x"])
def test_unknown_device_names_are_refused(name):
    with pytest.raises(BadConfigError, match="device"):
        resolve_device(name)


def test_dtypes_and_their_aliases():
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(BadConfigError, match="unknown dtype"):
        resolve_dtype("int8")


def test_bfloat16_autocast_runs_on_cpu_and_float32_is_untouched():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with precision("cpu", torch.bfloat16):
        assert layer(x).dtype is torch.bfloat16
    with precision("cpu", torch.float32):
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_place_moves_once_and_sets_eval():
    model = place(torch.nn.Dropout(0.5).train(), "cpu")
    assert not model.training


def test_cpu_workers_and_cli_options():
    assert worker_devices(0, 3) == ["cpu"] * 3
    assert worker_devices(0, 0) == ["cpu"]
    parser = argparse.ArgumentParser()
    add_device_options(parser)
    args = parser.parse_args(["--dtype", "bfloat16"])
    assert (args.device, args.dtype) == ("cpu", "bfloat16")
