"""Shared test settings."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VOXTOK_PROGRESS", "0")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tests are small: one intra-op thread avoids spin-waiting when CI shares the 2 cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
