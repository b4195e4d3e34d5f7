"""The systems a benchmark compares, behind one small interface, and the spec strings that name them.

Spec syntax (`parse_spec`): KIND[:PATH][@KEY=VALUE[,KEY=VALUE...]] (options may also be chained
as @KEY=VALUE@KEY=VALUE). Every kind, its package and options: `KINDS` below and
`voxtok bench run --help`. In short:
    identity, codec2_700c codec2_1200 codec2_3200 opus_6k opus_12k
                                   the original audio; classical codecs through their CLI tools
    vtk:DIR@n_q=1                  a VoxTok checkpoint folder (also `voxtok convert` output)
    encodec:FILE@bw=6  dac:FILE@n_q=8  speechtokenizer:DIR@n_q=2  snac:DIR
                                   published checkpoints through their official packages
    hf:DIR@n_q=8 (or @bw=6)  mimi:DIR@n_q=8
                                   a transformers audio-codec folder (EnCodec, DAC, Mimi, X-codec)
    ssl_kmeans:DIR@layer=6@k=500   DASB's discrete SSL units: a transformers HuBERT / WavLM /
                                   wav2vec2 folder + k-means fitted on the training split
Every spec also takes name=LABEL (the row name in the report).

A system takes mono audio at its `input_rate` and returns a `RoundTrip`: the reconstruction (None
for a tokenizer without a decoder), the codes (None for a codec without tokens) and the payload
bits it actually produced, with encode and decode times. Bitrates are always those bits over
the input's duration, never a nominal figure.
"""

from __future__ import annotations

import importlib
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from voxtok.errors import BadConfigError

_SPEC = re.compile(r"^(?P<kind>[A-Za-z0-9_]+)(?::(?P<path>.+?))?(?P<opts>(?:@[A-Za-z_]+=[^@]*)+)?$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+=-]+")


@dataclass(frozen=True)
class Kind:
    """A system kind that loads a checkpoint: where its class lives, its options, its package."""

    module: str
    cls: str
    options: frozenset[str]
    package: str
    loads: str


KINDS: dict[str, Kind] = {
    "vtk": Kind("voxtok.bench.systems", "VoxTokSystem", frozenset({"n_q"}), "voxtok",
                "a VoxTok checkpoint folder (save_pretrained or `voxtok convert` output)"),
    "encodec": Kind("voxtok.bench.published", "EncodecSystem", frozenset({"bw", "variant"}), "encodec",
                    "EnCodec 24/48 kHz state-dict file (encodec_24khz-d7cc33bc.th)"),
    "dac": Kind("voxtok.bench.published", "DACSystem", frozenset({"n_q"}), "descript-audio-codec",
                "DAC 16/24/44 kHz weights file (weights_44khz_8kbps_0.0.1.pth)"),
    "speechtokenizer": Kind("voxtok.bench.published", "SpeechTokenizerSystem", frozenset({"n_q"}), "speechtokenizer",
                            "SpeechTokenizer release folder (config.json + SpeechTokenizer.pt)"),
    "snac": Kind("voxtok.bench.published", "SnacSystem", frozenset(), "snac",
                 "SNAC folder (config.json + pytorch_model.bin)"),
    "hf": Kind("voxtok.bench.hf_codecs", "HFCodecSystem", frozenset({"n_q", "bw"}), "transformers",
               "a transformers audio-codec folder: EncodecModel, DacModel, MimiModel, XcodecModel"),
    "mimi": Kind("voxtok.bench.hf_codecs", "MimiSystem", frozenset({"n_q"}), "transformers",
                 "Mimi (kyutai/mimi) transformers folder (config.json + model.safetensors)"),
    "ssl_kmeans": Kind("voxtok.bench.ssl_units", "SSLUnitsSystem", frozenset({"layer", "k", "iters", "max_frames"}),
                       "transformers", "a transformers HuBERT / WavLM / wav2vec2 folder; k-means fitted here"),
}
# Kinds that take a path; everything else must be a bare name.
PATH_KINDS = tuple(KINDS)


@dataclass(frozen=True)
class SystemSpec:
    """A parsed spec string: kind, optional path, options (strings) and the display name."""

    text: str
    kind: str
    path: str | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The row name: name=LABEL when given, else derived from the kind, path and n_q/bw."""
        if "name" in self.options:
            return self.options["name"]
        if self.path is None:
            return self.kind
        path = Path(self.path)
        label = path.parent.name if path.name == "model" and path.parent.name else path.stem
        label = label.removeprefix("codec_") or self.kind
        for key, short in (("n_q", "q"), ("bw", "bw"), ("layer", "L"), ("k", "k")):
            if key in self.options:
                label += f"@{short}{self.options[key]}"
        return label if self.kind == "vtk" else f"{self.kind}:{label}"

    @property
    def safe_name(self) -> str:
        """`name` made safe as a folder name."""
        return _SAFE_NAME.sub("_", self.name).strip("_") or "system"

    @property
    def family(self) -> str:
        """Systems of one family differ only in their operating point (same checkpoint or tool)."""
        if self.path is not None:
            return f"{self.kind}:{self.path}"
        return self.kind.split("_")[0]


def parse_spec(text: str) -> SystemSpec:
    """Parse a system spec string (syntax in the module docstring); BadConfigError when malformed."""
    from voxtok.bench.baselines import CLASSICAL_CODECS

    match = _SPEC.match(text.strip())
    if not match:
        raise BadConfigError(f"bad system spec '{text}' (expected KIND[:PATH][@key=value,...])")
    kind, path, opts = match["kind"], match["path"], match["opts"]
    options: dict[str, str] = {}
    for item in (re.split(r"[@,]", opts.lstrip("@")) if opts else []):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise BadConfigError(f"bad option '{item}' in system spec '{text}' (expected key=value)")
        options[key] = value
    known = {"identity", *CLASSICAL_CODECS, *PATH_KINDS}
    if kind not in known:
        raise BadConfigError(f"unknown system '{kind}' in '{text}' (choose from {sorted(known)})")
    if (kind in PATH_KINDS) != (path is not None):
        need = "needs a path (KIND:PATH)" if kind in PATH_KINDS else "takes no path"
        raise BadConfigError(f"system '{kind}' {need}: '{text}'")
    allowed = (KINDS[kind].options if kind in KINDS else frozenset()) | {"name"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BadConfigError(f"system '{kind}' has no option {unknown[0]} (options: {sorted(allowed)})")
    return SystemSpec(text.strip(), kind, path, options)


def int_option(spec: SystemSpec, key: str) -> int | None:
    """The integer value of option `key` (None when absent); BadConfigError when not an integer."""
    if key not in spec.options:
        return None
    try:
        return int(spec.options[key])
    except ValueError:
        raise BadConfigError(f"{key} must be an integer in '{spec.text}'") from None


def n_q_option(spec: SystemSpec, available: int) -> int:
    """Option n_q (default: all `available` codebooks), checked to lie in 1..available."""
    n_q = int_option(spec, "n_q")
    n_q = available if n_q is None else n_q
    if not 1 <= n_q <= available:
        raise BadConfigError(f"n_q={n_q} outside 1..{available} for {spec.path}")
    return n_q


def fit_length(wav: torch.Tensor, num_samples: int) -> torch.Tensor:
    """A decoded signal [..., T'] zero-padded or cut to [..., num_samples] (the input's length)."""
    return torch.nn.functional.pad(wav, (0, max(0, num_samples - wav.shape[-1])))[..., :num_samples]


def require_file(path: str | Path, what: str) -> Path:
    """`path` as a Path when it is a file, else a one-line BadConfigError naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise BadConfigError(f"{what} not found", path)
    return path


def require_package(module: str, package: str, kind: str):
    """Import `module`, or a one-line BadConfigError saying which pip package the kind needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BadConfigError(f"{kind} systems need the `{module}` module (pip install {package}, or the "
                             "voxtok `published` extra), which is not installed") from None


@dataclass
class RoundTrip:
    """One utterance through a system.

    recon: [T] float32 at the input rate and length (None without a decoder); codes: [Q, T']
    int64 (None without tokens); bits: payload bits produced; times in seconds (encode/decode
    NaN when a tool does both in one call, as the classical codecs do).
    """

    recon: torch.Tensor | None
    codes: torch.Tensor | None
    bits: float
    encode_seconds: float = math.nan
    decode_seconds: float = math.nan
    total_seconds: float = 0.0


class System:
    """Base class of the benchmark systems.

    `sample_rate` None means the system takes audio at whatever rate the data has.
    Token systems set `has_tokens` and `frame_rate`, `codebook_size`, `n_q`.
    """

    has_tokens = False
    can_decode = True
    sample_rate: int | None = None
    frame_rate: float = 0.0
    codebook_size: int = 0
    n_q: int = 0

    def __init__(self, spec: SystemSpec):
        self.spec = spec
        self.name = spec.name

    def input_rate(self, native_rate: int) -> int:
        """The rate audio must have when given to this system."""
        return self.sample_rate or native_rate

    def fingerprint(self) -> str:
        """A string that changes whenever the system's output could (weights, tool, options)."""
        raise NotImplementedError

    def notes(self) -> str:
        """A short remark for the report (e.g. "no decoder"), or ""."""
        return "" if self.can_decode else "tokens only (no decoder): reconstruction metrics skipped"

    # -- token systems
    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Audio [1, T] at `sample_rate` -> (codes [Q, T'] int64, side info `decode` needs)."""
        raise BadConfigError(f"system '{self.name}' produces no tokens")

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        """Codes [Q, T'] (+ side info) -> audio [T] of `num_samples` samples."""
        raise BadConfigError(f"system '{self.name}' cannot decode")

    def bits(self, codes: torch.Tensor, side: Any) -> float:
        """Payload bits of one utterance's codes: log2(codebook size) per code."""
        return codes.numel() * math.log2(self.codebook_size)

    def encode_many(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Codes [Q, T'_i] of several signals [1, T_i] (batched where the system can)."""
        return [self.encode(w)[0] for w in wavs]

    # -- every system
    def roundtrip(self, wav: torch.Tensor, sample_rate: int) -> RoundTrip:
        """Encode and (when possible) decode one mono signal [1, T] at `sample_rate`."""
        if self.sample_rate and sample_rate != self.sample_rate:
            raise BadConfigError(f"system '{self.name}' takes {self.sample_rate} Hz audio, got {sample_rate} Hz")
        start = time.perf_counter()
        codes, side = self.encode(wav)
        self._sync()
        encoded = time.perf_counter()
        recon = self.decode(codes, side, wav.shape[-1]) if self.can_decode else None
        self._sync()
        done = time.perf_counter()
        return RoundTrip(recon, codes, self.bits(codes, side), encoded - start,
                         done - encoded if self.can_decode else math.nan, done - start)

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()


class IdentitySystem(System):
    """The original audio: the ceiling of every reconstruction metric. Bits: its 16-bit PCM."""

    def fingerprint(self) -> str:
        return "identity:v1"

    def notes(self) -> str:
        return "ground truth (16-bit PCM at the data's rate)"

    def roundtrip(self, wav: torch.Tensor, sample_rate: int) -> RoundTrip:
        return RoundTrip(wav.reshape(-1).float(), None, 16.0 * wav.shape[-1], 0.0, 0.0, 0.0)


class ClassicalSystem(System):
    """Codec2 / Opus through their command-line tools (`voxtok.bench.baselines`)."""

    def __init__(self, spec: SystemSpec):
        from voxtok.bench.baselines import check_tool, get_classical_codec

        super().__init__(spec)
        self.codec = get_classical_codec(spec.kind)
        for tool in self.codec.tools():
            check_tool(tool)

    def fingerprint(self) -> str:
        c = self.codec
        return f"classical:{c.name}:{c.nominal_bitrate}:{c.sample_rate}:{c.delay}:v1"

    def notes(self) -> str:
        return f"{self.codec.tools()[0]} CLI, nominal {self.codec.nominal_bitrate / 1000:g} kbit/s"

    def roundtrip(self, wav: torch.Tensor, sample_rate: int) -> RoundTrip:
        start = time.perf_counter()
        run = self.codec.run_detailed(wav.reshape(-1), sample_rate)
        elapsed = time.perf_counter() - start
        bits = run.bitrate * wav.shape[-1] / sample_rate
        return RoundTrip(torch.from_numpy(run.recon), None, bits, total_seconds=elapsed)


class VoxTokSystem(System):
    """A VoxTok codec checkpoint using its first `n_q` codebooks."""

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu", context: SystemContext | None = None,
                 batch_seconds: float = 60.0, path: str | None = None):
        from voxtok.registry import load

        super().__init__(spec)
        self.device = device
        self.codec = load(path or spec.path, map_location=device, kind="codec").to(device).eval()
        self.n_q = n_q_option(spec, self.codec.n_q)
        self.sample_rate = self.codec.sample_rate
        self.frame_rate = self.codec.frame_rate
        self.codebook_size = self.codec.codebook_size
        self.batch_seconds = batch_seconds
        self.can_decode = self._decodes()

    def _decodes(self) -> bool:
        # A semantic tokenizer has no decoder and says so with a BadConfigError; anything else
        # raised here is a real fault and must surface.
        if not getattr(self.codec, "can_decode", True):
            return False
        try:
            with torch.inference_mode():
                self.codec.decode(torch.zeros(1, self.n_q, 2, dtype=torch.long, device=self.device))
        except (BadConfigError, NotImplementedError):
            return False
        return True

    def fingerprint(self) -> str:
        return f"vtk:{self.codec.codec_name}:{self.codec.checkpoint_hash}:n_q={self.n_q}"

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, Any]:
        with torch.inference_mode():
            codes = self.codec.encode(wav.reshape(1, 1, -1).to(self.device), n_q=self.n_q)
        return codes[0].cpu(), None

    def decode(self, codes: torch.Tensor, side: Any, num_samples: int) -> torch.Tensor:
        with torch.inference_mode():
            wav = self.codec.decode(codes[None].to(self.device), num_samples)
        return wav.reshape(-1).float().cpu()

    def encode_many(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        from voxtok.data.dataset import pad_batch

        order = sorted(range(len(wavs)), key=lambda i: wavs[i].shape[-1])
        out: list[torch.Tensor | None] = [None] * len(wavs)
        budget = int(self.batch_seconds * self.sample_rate)
        start = 0
        while start < len(order):
            # Sorted by length, so the last item of a batch is its longest.
            stop = start + 1
            while stop < len(order) and wavs[order[stop]].shape[-1] * (stop - start + 1) <= budget:
                stop += 1
            batch, lengths = pad_batch([wavs[i].reshape(1, -1) for i in order[start:stop]])
            with torch.inference_mode():
                codes = self.codec.encode(batch.to(self.device), lengths.to(self.device), n_q=self.n_q).cpu()
            valid = self.codec.code_lengths(lengths)
            for row, i in enumerate(order[start:stop]):
                out[i] = codes[row, :, : int(valid[row])].clone()
            start = stop
        return out  # type: ignore[return-value]


@dataclass
class SystemContext:
    """What a system may need besides its spec: the training split (systems fitted on it, such as
    `ssl_kmeans`) and a folder for what they fit (cached across runs)."""

    train_dir: str | None = None
    train_utts: list[str] = field(default_factory=list)
    train_fingerprint: str = ""
    cache_dir: Path | None = None


def build_system(spec: SystemSpec | str, device: str = "cpu", context: SystemContext | None = None) -> System:
    """Instantiate the system a spec names (loads checkpoints, checks tools and packages)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "identity":
        return IdentitySystem(spec)
    if spec.kind not in KINDS:
        return ClassicalSystem(spec)
    kind = KINDS[spec.kind]
    cls = getattr(importlib.import_module(kind.module), kind.cls)
    return cls(spec, device, context or SystemContext())
