"""Published tokenizers through their official packages: EnCodec, DAC, SpeechTokenizer, SNAC.

Each loads a checkpoint the user has on disk (nothing is downloaded) with the package's own model
class, refuses a checkpoint that does not fit it with a one-line BadConfigError, and exposes the
codes as [Q, T'] int64 for the token statistics, probes and LM of the benchmark.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from voxtok.bench.systems import (System, SystemContext, SystemSpec, fit_length, n_q_option, require_file,
                                  require_package)
from voxtok.config import read_data_file
from voxtok.errors import BadConfigError
from voxtok.registry import file_hash


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _load_weights(model: torch.nn.Module, state: Any, path: Path, what: str) -> None:
    """Load a state dict strictly: a checkpoint of another model is an error, never random weights."""
    if not isinstance(state, dict):
        raise BadConfigError(f"not a {what} checkpoint (no state dict inside)", path)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as err:
        raise BadConfigError(f"not a {what} checkpoint ({_first_line(err)})", path) from None


def _torch_load(path: Path, what: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise BadConfigError(f"cannot read the {what} checkpoint ({_first_line(err)})", path) from None


class EncodecSystem(System):
    """Meta's EnCodec (package `encodec`) from a local state-dict file; option bw in kbit/s."""

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None):
        encodec = require_package("encodec", "encodec", "encodec")
        super().__init__(spec)
        path = require_file(spec.path, "EnCodec checkpoint file")
        variant = spec.options.get("variant", "48khz" if "48khz" in path.name else "24khz")
        builders = {"24khz": encodec.EncodecModel.encodec_model_24khz,
                    "48khz": encodec.EncodecModel.encodec_model_48khz}
        if variant not in builders:
            raise BadConfigError(f"EnCodec variant must be 24khz or 48khz, got '{variant}'")
        model = builders[variant](pretrained=False)
        _load_weights(model, _torch_load(path, "EnCodec"), path, f"EnCodec {variant}")
        try:
            self.bandwidth = float(spec.options.get("bw", 6))
        except ValueError:
            raise BadConfigError(f"bw must be a number (kbit/s) in '{spec.text}'") from None
        if self.bandwidth not in model.target_bandwidths:
            raise BadConfigError(f"EnCodec {variant} bandwidths are {model.target_bandwidths} kbit/s, "
                                 f"not {self.bandwidth:g}")
        model.set_target_bandwidth(self.bandwidth)
        self.model = model.to(device).eval()
        self.device = device
        self.variant = variant
        self.sample_rate = model.sample_rate
        self.frame_rate = model.frame_rate
        self.codebook_size = model.quantizer.bins
        self.n_q = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, self.bandwidth)
        self._hash = file_hash(path)

    def fingerprint(self) -> str:
        return f"encodec:{self.variant}:{self._hash}:bw={self.bandwidth:g}"

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        x = wav.reshape(1, 1, -1).to(self.device).expand(1, self.model.channels, -1)
        with torch.inference_mode():
            frames = self.model.encode(x)
        codes = torch.cat([c[0] for c, _ in frames], dim=-1).cpu()
        # The 48 kHz model codes one-second segments, each with its loudness scale.
        side = [(c.shape[-1], None if s is None else s.cpu()) for c, s in frames]
        return codes, side

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        frames, start = [], 0
        for length, scale in side:
            chunk = codes[:, start:start + length][None].to(self.device)
            frames.append((chunk, None if scale is None else scale.to(self.device)))
            start += length
        with torch.inference_mode():
            wav = self.model.decode(frames)[0].mean(0).cpu()
        return fit_length(wav, num_samples)

    def bits(self, codes: torch.Tensor, side: Any) -> float:
        # EnCodec's own .ecdc writer stores each segment's scale as a 32-bit float.
        scales = sum(1 for _, s in side if s is not None)
        return codes.numel() * math.log2(self.codebook_size) + 32.0 * scales


class DACSystem(System):
    """Descript Audio Codec (package `descript-audio-codec`) from a local weights file; option n_q.

    The file is DAC's own non-packaged format {"state_dict", "metadata": {"kwargs": model args}}, as
    `DAC.save(path, package=False)` writes it and the releases ship. `DAC.load` would ignore
    mismatched keys; here they are an error.
    """

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None):
        import inspect

        dac = require_package("dac", "descript-audio-codec", "dac")
        super().__init__(spec)
        path = require_file(spec.path, "DAC weights file")
        saved = _torch_load(path, "DAC")
        if not isinstance(saved, dict) or "state_dict" not in saved or "kwargs" not in saved.get("metadata", {}):
            raise BadConfigError("not a DAC weights file (expected state_dict and metadata.kwargs inside)", path)
        accepted = set(inspect.signature(dac.DAC).parameters)
        kwargs = {k: v for k, v in saved["metadata"]["kwargs"].items() if k in accepted}
        try:
            model = dac.DAC(**kwargs)
        except (TypeError, ValueError) as err:
            raise BadConfigError(f"DAC cannot be built from the file's arguments ({_first_line(err)})", path) from None
        _load_weights(model, saved["state_dict"], path, "DAC")
        self.model = model.to(device).eval()
        self.device = device
        self.n_q = n_q_option(spec, int(model.n_codebooks))
        self.sample_rate = int(model.sample_rate)
        self.frame_rate = self.sample_rate / model.hop_length
        self.codebook_size = int(model.codebook_size)
        self._hash = file_hash(path)

    def fingerprint(self) -> str:
        return f"dac:{self._hash}:n_q={self.n_q}"

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        with torch.inference_mode():
            x = self.model.preprocess(wav.reshape(1, 1, -1).to(self.device), self.sample_rate)
            _, codes, *_ = self.model.encode(x, n_quantizers=self.n_q)
        return codes[0, : self.n_q].cpu().long(), None

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        with torch.inference_mode():
            z = self.model.quantizer.from_codes(codes[None].to(self.device))[0]
            wav = self.model.decode(z).reshape(-1).float().cpu()
        return fit_length(wav, num_samples)


def _config_and_weights(spec: SystemSpec, weight_names: tuple[str, ...], what: str) -> tuple[dict, Path, Path]:
    """(config.json contents, its path, the weights file) of a release folder, or of a weights file
    with config.json beside it."""
    path = Path(spec.path)
    folder = path if path.is_dir() else path.parent
    config_path = require_file(folder / "config.json", f"{what} config.json")
    if path.is_file():
        weights = path
    else:
        found = [folder / n for n in weight_names if (folder / n).is_file()]
        found += sorted(p for p in folder.glob("*.pt") if p not in found)
        if not found:
            raise BadConfigError(f"{what} folder has no weights file ({' or '.join(weight_names)})", folder)
        weights = found[0]
    config = read_data_file(config_path, "config.json", "json")
    if not isinstance(config, dict):
        raise BadConfigError("config.json must hold an object", config_path)
    return config, config_path, weights


class SpeechTokenizerSystem(System):
    """SpeechTokenizer (package `speechtokenizer`) from its release folder (config.json +
    SpeechTokenizer.pt); option n_q (RVQ-1 holds the HuBERT-distilled content)."""

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None):
        package = require_package("speechtokenizer", "speechtokenizer", "speechtokenizer")
        super().__init__(spec)
        config, _, weights = _config_and_weights(spec, ("SpeechTokenizer.pt",), "SpeechTokenizer")
        needed = ("n_filters", "strides", "dimension", "codebook_size", "n_q", "sample_rate")
        missing = [k for k in needed if k not in config]
        if missing:
            raise BadConfigError(f"not a SpeechTokenizer config.json (lacks '{missing[0]}')", weights.parent)
        model = package.SpeechTokenizer(config)
        _load_weights(model, _torch_load(weights, "SpeechTokenizer"), weights, "SpeechTokenizer")
        self.model = model.to(device).eval()
        self.device = device
        self.n_q = n_q_option(spec, int(config["n_q"]))
        self.sample_rate = int(config["sample_rate"])
        self.frame_rate = self.sample_rate / int(model.downsample_rate)
        self.codebook_size = int(config["codebook_size"])
        self._hash = file_hash(weights)

    def fingerprint(self) -> str:
        return f"speechtokenizer:{self._hash}:n_q={self.n_q}"

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        with torch.inference_mode():
            codes = self.model.encode(wav.reshape(1, 1, -1).to(self.device), n_q=self.n_q)  # [n_q, 1, T']
        return codes[:, 0].cpu().long(), None

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        with torch.inference_mode():
            wav = self.model.decode(codes[:, None].to(self.device)).reshape(-1).float().cpu()
        return fit_length(wav, num_samples)


class SnacSystem(System):
    """SNAC (package `snac`) from a local folder (config.json + pytorch_model.bin).

    SNAC's codebooks run at different rates (vq_strides, e.g. 4, 2, 1): codebook i has s_0 / s_i
    codes per coarsest frame. They are laid out as rows of one [Q, T'] array at the coarsest rate,
    codebook i taking s_0 / s_i rows (frame f, row j of codebook i = its code f * (s_0 / s_i) + j),
    so Q = sum of s_0 / s_i (7 for the 24 kHz speech model) and no code is lost or added.
    """

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None):
        snac = require_package("snac", "snac", "snac")
        super().__init__(spec)
        config, _, weights = _config_and_weights(spec, ("pytorch_model.bin",), "SNAC")
        try:
            model = snac.SNAC(**config)
        except TypeError as err:
            raise BadConfigError(f"not a SNAC config.json ({_first_line(err)})", weights.parent) from None
        _load_weights(model, _torch_load(weights, "SNAC"), weights, "SNAC")
        strides = [int(s) for s in model.vq_strides]
        if any(strides[0] % s for s in strides):
            raise BadConfigError(f"SNAC vq_strides {strides} do not divide the coarsest stride", weights.parent)
        self.rows = [strides[0] // s for s in strides]
        self.model = model.to(device).eval()
        self.device = device
        self.n_q = sum(self.rows)
        self.sample_rate = int(model.sampling_rate)
        self.frame_rate = self.sample_rate / (int(model.hop_length) * strides[0])
        self.codebook_size = int(model.codebook_size)
        self._hash = file_hash(weights)

    def fingerprint(self) -> str:
        return f"snac:{self._hash}"

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        with torch.inference_mode():
            levels = self.model.encode(wav.reshape(1, 1, -1).to(self.device))  # list of [1, T0 * rows_i]
        frames = levels[0].shape[-1]
        parts = [codes[0].reshape(frames, rows).t() for codes, rows in zip(levels, self.rows)]
        return torch.cat(parts).cpu().long(), None

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        levels, start = [], 0
        for rows in self.rows:
            levels.append(codes[start:start + rows].t().reshape(1, -1).to(self.device))
            start += rows
        with torch.inference_mode():
            wav = self.model.decode(levels).reshape(-1).float().cpu()
        return fit_length(wav, num_samples)
