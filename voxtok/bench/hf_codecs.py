"""Audio codecs of the transformers library as benchmark systems: `hf:DIR` and `mimi:DIR`.

DIR is a local folder as `save_pretrained` (or a hub snapshot) leaves it: config.json, the weights
and, usually, preprocessor_config.json (the feature extractor, which prepares the input as the
model expects it). AutoModel builds the class named by config.json; supported classes and their
operating-point option:
    EncodecModel  bw (kbit/s, one of config.target_bandwidths; default 6 or the largest below)
    DacModel      n_q (codebooks, default all)
    MimiModel     n_q (default config.num_quantizers)
    XcodecModel   bw (kbit/s, default the largest)
Weights that do not fit the config are an error here, not a warning: a benchmark of random weights
by mistake would be worthless. Mimi comes through transformers rather than the `moshi` package,
which pins its own torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from voxtok.bench.systems import System, SystemContext, SystemSpec, fit_length, int_option, require_package
from voxtok.errors import BadConfigError
from voxtok.registry import file_hash

# model_type -> the option that picks its operating point
SUPPORTED = {"encodec": "bw", "dac": "n_q", "mimi": "n_q", "xcodec": "bw"}


def weights_digest(folder: Path) -> str:
    """Hash of the weight files (a folder holds one or several shards)."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise BadConfigError("transformers folder has no weights (*.safetensors or *.bin)", folder)
    return "-".join(file_hash(p, 8) for p in files)


def load_hf_model(folder: str | Path, device: str, what: str, allow_unused: bool = False,
                  model_class: str = "AutoModel"):
    """(model in eval mode, feature extractor or None) of a local transformers folder, built by
    `model_class` (default AutoModel: the class config.json names); every weight must be in the
    checkpoint, and every checkpoint tensor must be used unless `allow_unused` (an SSL encoder
    saved with a task head)."""
    transformers = require_package("transformers", "transformers", what)
    transformers.logging.disable_progress_bar()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise BadConfigError(f"not a transformers model folder (no config.json) for {what}", folder)
    try:
        model, info = getattr(transformers, model_class).from_pretrained(str(folder), local_files_only=True,
                                                                         output_loading_info=True)
    except (OSError, ValueError, KeyError) as err:
        raise BadConfigError(f"transformers cannot load it ({' '.join(str(err).split())[:200]})", folder) from None
    checked = ("missing_keys", "mismatched_keys") if allow_unused else ("missing_keys", "unexpected_keys", "mismatched_keys")
    problems = [(k, info.get(k) or []) for k in checked]
    problems = [(k, v) for k, v in problems if v]
    if problems:
        key, names = problems[0]
        raise BadConfigError(f"weights do not fit config.json ({key.replace('_', ' ')}: {sorted(names)[:3]})",
                             folder)
    extractor = None
    if (folder / "preprocessor_config.json").is_file():
        extractor = transformers.AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    return model.to(device).eval(), extractor


class HFCodecSystem(System):
    """A transformers audio codec (EncodecModel, DacModel, MimiModel, XcodecModel) from a local folder."""

    has_tokens = True
    required_type: str | None = None

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None):
        super().__init__(spec)
        folder = Path(spec.path)
        self.model, self.extractor = load_hf_model(folder, device, spec.kind)
        config = self.model.config
        self.model_type = config.model_type
        if self.required_type and self.model_type != self.required_type:
            raise BadConfigError(f"{spec.kind} needs a {self.required_type} model, this folder holds "
                                 f"'{self.model_type}'", folder)
        if self.model_type not in SUPPORTED:
            raise BadConfigError(f"transformers model '{self.model_type}' is not an audio codec the benchmark "
                                 f"knows (supported: {', '.join(sorted(SUPPORTED))})", folder)
        wrong = {"bw", "n_q"} - {SUPPORTED[self.model_type]}
        for key in wrong & set(spec.options):
            raise BadConfigError(f"{type(self.model).__name__} takes {SUPPORTED[self.model_type]}, not {key}, "
                                 f"in '{spec.text}'")
        self.device = device
        rate = getattr(config, "sampling_rate", None) or getattr(config, "sample_rate")  # Xcodec says sample_rate
        self.sample_rate = int(getattr(self.extractor, "sampling_rate", None) or rate)
        self.channels = int(getattr(self.extractor, "feature_size", None) or getattr(config, "audio_channels", 1))
        self.codebook_size = int(config.codebook_size)
        self.frame_rate = float(config.frame_rate)
        self._pick_operating_point(spec)
        # The number of codebooks at this operating point, as the model itself produces it.
        probe, _ = self.encode(torch.zeros(1, self.sample_rate))
        self.n_q = probe.shape[0]
        self._hash = weights_digest(folder)

    def _pick_operating_point(self, spec: SystemSpec) -> None:
        config = self.model.config
        self.bandwidth, self.n_q_used = None, None
        if SUPPORTED[self.model_type] == "bw":
            allowed = [float(b) for b in config.target_bandwidths]
            default = 6.0 if 6.0 in allowed else max(allowed)
            try:
                self.bandwidth = float(spec.options.get("bw", default))
            except ValueError:
                raise BadConfigError(f"bw must be a number (kbit/s) in '{spec.text}'") from None
            if self.bandwidth not in allowed:
                raise BadConfigError(f"{type(self.model).__name__} bandwidths are {allowed} kbit/s, "
                                     f"not {self.bandwidth:g}")
        else:
            total = int(config.n_codebooks if self.model_type == "dac" else config.num_quantizers)
            n_q = int_option(spec, "n_q")
            self.n_q_used = total if n_q is None else n_q
            if not 1 <= self.n_q_used <= total:
                raise BadConfigError(f"n_q={self.n_q_used} outside 1..{total} for {spec.path}")

    def fingerprint(self) -> str:
        point = f"bw={self.bandwidth:g}" if self.bandwidth is not None else f"n_q={self.n_q_used}"
        return f"hf:{self.model_type}:{self._hash}:{point}"

    def notes(self) -> str:
        return f"transformers {type(self.model).__name__}"

    def _inputs(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Audio [1, T] -> the model's input (the feature extractor's when the folder has one)."""
        mono = wav.reshape(-1).float()
        if self.extractor is None:
            return {"input_values": mono.reshape(1, 1, -1).expand(1, self.channels, -1)}
        audio = mono.numpy() if self.channels == 1 else mono[None].expand(self.channels, -1).numpy()
        features = self.extractor(raw_audio=audio, sampling_rate=self.sample_rate, return_tensors="pt")
        return {k: v for k, v in features.items() if k in ("input_values", "padding_mask")}

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        inputs = {k: v.to(self.device) for k, v in self._inputs(wav).items()}
        x = inputs["input_values"]
        with torch.inference_mode():
            if self.model_type == "encodec":
                out = self.model.encode(x, inputs.get("padding_mask"), bandwidth=self.bandwidth, return_dict=True)
                chunks = out.audio_codes  # [chunks, 1, Q, T]
                codes = torch.cat(list(chunks[:, 0]), dim=-1)
                scales = [None if s is None else s.cpu() for s in out.audio_scales]
                return codes.cpu().long(), (chunks.shape[-1], scales, int(out.last_frame_pad_length or 0))
            if self.model_type == "dac":
                codes = self.model.encode(x, n_quantizers=self.n_q_used, return_dict=True).audio_codes
                return codes[0, : self.n_q_used].cpu().long(), None
            if self.model_type == "mimi":
                codes = self.model.encode(x, inputs.get("padding_mask"), num_quantizers=self.n_q_used).audio_codes
                return codes[0].cpu().long(), None
            codes = self.model.encode(x, bandwidth=self.bandwidth, return_dict=True).audio_codes
        return codes[0].cpu().long(), None

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        codes = codes.to(self.device)
        with torch.inference_mode():
            if self.model_type == "encodec":
                length, scales, pad = side
                chunks = codes.reshape(codes.shape[0], -1, length).transpose(0, 1)[:, None]  # [chunks, 1, Q, T]
                scales = [None if s is None else s.to(self.device) for s in scales]
                wav = self.model.decode(chunks, scales, last_frame_pad_length=pad, return_dict=True).audio_values
            elif self.model_type == "dac":
                wav = self.model.decode(audio_codes=codes[None], return_dict=True).audio_values
            else:
                wav = self.model.decode(codes[None], return_dict=True).audio_values
        wav = wav.reshape(-1, wav.shape[-1]).float().mean(0).cpu()
        return fit_length(wav, num_samples)

    def bits(self, codes: torch.Tensor, side: Any) -> float:
        # EnCodec with normalisation (the 48 kHz model) also sends a 32-bit scale per chunk.
        scales = sum(1 for s in side[1] if s is not None) if self.model_type == "encodec" else 0
        return codes.numel() * math.log2(self.codebook_size) + 32.0 * scales


class MimiSystem(HFCodecSystem):
    """Kyutai's Mimi (12.5 Hz, split RVQ: codebook 0 semantic) through transformers' MimiModel."""

    required_type = "mimi"
