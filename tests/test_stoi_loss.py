"""The differentiable STOI training loss: agrees with the metric, masks padding, and its gradient
raises the metric's STOI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxtok.bench.metrics import stoi
from voxtok.codecs.modules.stoi_loss import StoiLoss, third_octave_matrix

SR = 16000


def _noisy(speech: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (speech + level * np.abs(speech).max() * rng.standard_normal(speech.shape)).astype(np.float32)


def _loss(loss: StoiLoss, pred: np.ndarray, target: np.ndarray) -> float:
    return float(loss(torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None]))


def test_band_matrix_is_fifteen_disjoint_third_octaves():
    bands = third_octave_matrix()
    assert bands.shape == (15, 257)
    assert bands.sum(0).max() == 1  # each FFT bin in at most one band
    widths = bands.sum(1)
    assert (widths[1:] >= widths[:-1]).all() and widths[0] >= 1  # bands widen with frequency


@pytest.mark.parametrize("level", [0.02, 0.1, 0.3])
def test_one_minus_loss_tracks_the_metric(speech, level):
    noisy = _noisy(speech, level)
    ours = 1 - _loss(StoiLoss(SR), noisy, speech)
    assert ours == pytest.approx(stoi(speech, noisy, SR), abs=0.04)


def test_identity_is_zero_and_more_noise_costs_more(speech):
    loss = StoiLoss(SR)
    assert _loss(loss, speech, speech) == pytest.approx(0.0, abs=1e-4)
    assert _loss(loss, _noisy(speech, 0.05), speech) < _loss(loss, _noisy(speech, 0.3), speech)


def test_padding_beyond_lengths_is_ignored(speech):
    loss = StoiLoss(SR)
    clean = torch.from_numpy(speech)[None, None]
    noisy = torch.from_numpy(_noisy(speech, 0.1))[None, None]
    alone = loss(noisy, clean)
    pad = torch.zeros(1, 1, 8000)
    # Garbage after the item's end must not change the value.
    padded = loss(torch.cat([noisy, pad.normal_()], -1), torch.cat([clean, torch.zeros_like(pad)], -1),
                  lengths=torch.tensor([clean.shape[-1]]))
    assert float(padded) == pytest.approx(float(alone), abs=1e-4)


def test_too_short_input_gives_zero_with_a_gradient():
    loss = StoiLoss(SR)
    pred = torch.randn(2, 1, 3000, requires_grad=True)  # < one 30-frame segment at 10 kHz
    value = loss(pred, torch.randn(2, 1, 3000))
    value.backward()
    assert float(value.detach()) == 0.0 and pred.grad is not None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        StoiLoss(SR)(torch.zeros(1, 1, 16000), torch.zeros(1, 1, 15000))


def test_gradient_steps_raise_the_metric(speech):
    """Descending the loss on a noisy signal's samples raises pystoi's STOI of that signal."""
    loss = StoiLoss(SR)
    clean = torch.from_numpy(speech)[None, None]
    start = _noisy(speech, 0.3)
    pred = torch.from_numpy(start)[None, None].clone().requires_grad_(True)
    opt = torch.optim.Adam([pred], lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        loss(pred, clean).backward()
        opt.step()
    after = pred.detach()[0, 0].numpy()
    assert stoi(speech, after, SR) > stoi(speech, start, SR) + 0.05
