"""Non-intrusive quality predictors (no reference needed): DNSMOS and UTMOS.

- DNSMOS (Reddy et al. 2022), through the `speechmos` package, whose ONNX models ship in its wheel
  (nothing is downloaded): P.835 SIG (speech), BAK (background), OVRL (overall), each 1..5, and the
  P.808 overall MOS. The package's own scoring code runs on 9.01 s windows hopped by 1 s (shorter
  clips are repeated to fill one window, as the package does) at 16 kHz; here its ONNX sessions
  are opened with the process's thread budget instead of every core.
- UTMOS (Saeki et al. 2022, the UTMOS22 strong learner) from a checkpoint the user gives: the
  TorchScript file of UTMOS-PyTorch (`utmos_scripted.pt`: forward(wav [B, T] at 16 kHz) -> MOS [B]),
  loaded with torch.jit alone. Without one, asking for utmos is a one-line error.

Each scorer takes the degraded signal [T] at `sr` and returns {column: value}; a clip that cannot
be scored gives NaN and counts as a metric failure (`voxtok.bench.failures.metric_failures`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from voxtok.audio import resample
from voxtok.bench.failures import failed, is_silent
from voxtok.errors import BadConfigError

DNSMOS_COLUMNS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
RATE = 16000


def _at_16k(wav, sr: int) -> np.ndarray:
    return resample(torch.as_tensor(np.asarray(wav), dtype=torch.float32), sr, RATE).reshape(-1).numpy()


@functools.lru_cache(maxsize=1)
def _dnsmos_model(threads: int):
    """The package's DNSMOS scorer with its two ONNX sessions limited to `threads` threads."""
    try:
        import onnxruntime as ort
        from speechmos import dnsmos
    except ImportError:
        raise BadConfigError("DNSMOS needs the speechmos and onnxruntime packages (the voxtok `published` "
                             "extra), which are not installed") from None

    class LimitedDNSMOS(dnsmos.DNSMOS):
        def __init__(self, primary: str, p808: str):  # the parent opens sessions on every core
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            providers = ["CPUExecutionProvider"]
            self.primary_model_path = primary
            self.onnx_sess = ort.InferenceSession(primary, options, providers=providers)
            self.p808_onnx_sess = ort.InferenceSession(p808, options, providers=providers)

    models = Path(dnsmos.__file__).parent / "dnsmos_models"
    return LimitedDNSMOS(str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx"))


def dnsmos_scores(deg, sr: int, settings=None) -> dict[str, float]:
    """DNSMOS P.835 SIG / BAK / OVRL and P.808 MOS of a mono signal [T] at `sr`."""

    wav = np.clip(_at_16k(deg, sr), -1.0, 1.0).astype(np.float32)
    if is_silent(wav):
        return {c: failed(c, "the signal is silent") for c in DNSMOS_COLUMNS}
    scores = _dnsmos_model(max(1, torch.get_num_threads()))(wav, RATE, False)
    return dict(zip(DNSMOS_COLUMNS, (float(scores[k]) for k in ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos"))))


def check_utmos(checkpoint: str | None) -> None:
    """One-line BadConfigError unless `checkpoint` is a readable UTMOS TorchScript file."""
    if not checkpoint:
        raise BadConfigError("UTMOS needs a local checkpoint: set utmos_checkpoint (--utmos) to the TorchScript "
                             "utmos_scripted.pt of UTMOS-PyTorch; nothing is downloaded")
    if not Path(checkpoint).is_file():
        raise BadConfigError("UTMOS checkpoint not found", checkpoint)
    _utmos_model(str(checkpoint))


@functools.lru_cache(maxsize=2)
def _utmos_model(checkpoint: str):
    try:
        return torch.jit.load(checkpoint, map_location="cpu").eval()
    except (RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or ["unreadable"])[0][:160]
        raise BadConfigError(f"not a TorchScript UTMOS model ({first})", checkpoint) from None


def utmos_score(deg, sr: int, settings) -> dict[str, float]:
    """UTMOS (1..5) of a mono signal [T] at `sr` with the checkpoint named in `settings`."""

    check_utmos(settings.utmos_checkpoint)
    wav = _at_16k(deg, sr)
    if is_silent(wav):
        return {"utmos": failed("utmos", "the signal is silent")}
    with torch.inference_mode():
        score = _utmos_model(str(settings.utmos_checkpoint))(torch.from_numpy(wav)[None])
    return {"utmos": float(score.reshape(-1)[0])}


# metric name -> (the columns it writes, scorer(deg, sr, settings) -> {column: value})
QUALITY_METRICS: dict[str, tuple[tuple[str, ...], Callable[..., dict[str, float]]]] = {
    "dnsmos": (DNSMOS_COLUMNS, dnsmos_scores),
    "utmos": (("utmos",), utmos_score),
}
