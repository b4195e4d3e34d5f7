"""The systems a benchmark compares, behind one small interface, and the spec strings that name them.

Spec syntax (`parse_spec`): KIND[:PATH][@KEY=VALUE[,KEY=VALUE...]]
    identity                       the original audio (ground truth; bitrate = its 16-bit PCM)
    codec2_700c codec2_1200 codec2_3200 opus_6k opus_12k
                                   classical codecs through their command-line tools
    vtk:exp/mini/codec_wavtokenizer/model@n_q=1
                                   a VoxTok checkpoint (`save_pretrained` folder) with its first
                                   n_q codebooks (default all)
    encodec:ckpt/encodec_24khz-d7cc33bc.th@bw=6
                                   EnCodec from a local state-dict file; bw in kbit/s (default 6);
                                   the 48 kHz model when the file name says 48khz or variant=48khz
    dac:ckpt/weights_44khz_8kbps.pth@n_q=8
                                   Descript Audio Codec from a local file (needs the `dac` package)
Every spec also takes name=LABEL (the row name in the report).

A system takes mono audio at its `input_rate` and returns a `RoundTrip`: the reconstruction (None
for a tokenizer without a decoder), the codes (None for a codec without tokens) and the payload
bits it actually produced, with encode and decode times. Bitrates are always those bits over
the input's duration, never a nominal figure.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from voxtok.errors import BadConfigError

_SPEC = re.compile(r"^(?P<kind>[A-Za-z0-9_]+)(?::(?P<path>.+?))?(?:@(?P<opts>[A-Za-z_]+=[^@]*))?$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+=-]+")
# Kinds that take a path; everything else must be a bare name.
PATH_KINDS = ("vtk", "encodec", "dac")


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
        for key, short in (("n_q", "q"), ("bw", "bw")):
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
    for item in (opts.split(",") if opts else []):
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
    allowed = {"vtk": {"n_q"}, "encodec": {"bw", "variant"}, "dac": {"n_q"}}.get(kind, set()) | {"name"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BadConfigError(f"system '{kind}' has no option {unknown[0]} (options: {sorted(allowed)})")
    return SystemSpec(text.strip(), kind, path, options)


def _int_option(spec: SystemSpec, key: str) -> int | None:
    if key not in spec.options:
        return None
    try:
        return int(spec.options[key])
    except ValueError:
        raise BadConfigError(f"{key} must be an integer in '{spec.text}'") from None


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
        return "" if self.can_decode else "tokens only (no decoder)"

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

    def __init__(self, spec: SystemSpec, device: str = "cpu", batch_seconds: float = 60.0):
        from voxtok.registry import load

        super().__init__(spec)
        self.device = device
        self.codec = load(spec.path, map_location=device, kind="codec").to(device).eval()
        n_q = _int_option(spec, "n_q")
        self.n_q = self.codec.n_q if n_q is None else n_q
        if not 1 <= self.n_q <= self.codec.n_q:
            raise BadConfigError(f"n_q={self.n_q} outside 1..{self.codec.n_q} for {spec.path}")
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


class EncodecSystem(System):
    """Meta's EnCodec (the `encodec` package) with weights from a local state-dict file."""

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu"):
        from encodec import EncodecModel

        super().__init__(spec)
        path = Path(spec.path)
        if not path.is_file():
            raise BadConfigError("EnCodec checkpoint file not found", path)
        variant = spec.options.get("variant", "48khz" if "48khz" in path.name else "24khz")
        builders = {"24khz": EncodecModel.encodec_model_24khz, "48khz": EncodecModel.encodec_model_48khz}
        if variant not in builders:
            raise BadConfigError(f"EnCodec variant must be 24khz or 48khz, got '{variant}'")
        model = builders[variant](pretrained=False)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()[0]
            raise BadConfigError(f"not an EnCodec {variant} state dict ({first})", path) from None
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
        self._hash = _file_digest(path)

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
        return torch.nn.functional.pad(wav, (0, max(0, num_samples - wav.shape[-1])))[:num_samples]

    def bits(self, codes: torch.Tensor, side: Any) -> float:
        # EnCodec's own .ecdc writer stores each segment's scale as a 32-bit float.
        scales = sum(1 for _, s in side if s is not None)
        return codes.numel() * math.log2(self.codebook_size) + 32.0 * scales


class DACSystem(System):
    """Descript Audio Codec from a local weights file (needs `pip install descript-audio-codec`)."""

    has_tokens = True

    def __init__(self, spec: SystemSpec, device: str = "cpu"):
        super().__init__(spec)
        try:
            import dac
        except ImportError:
            raise BadConfigError("DAC systems need the `dac` package (pip install descript-audio-codec), "
                                 "which is not installed") from None
        path = Path(spec.path)
        if not path.is_file():
            raise BadConfigError("DAC weights file not found", path)
        self.model = dac.DAC.load(str(path)).to(device).eval()
        self.device = device
        n_q = _int_option(spec, "n_q")
        self.n_q = self.model.n_codebooks if n_q is None else n_q
        if not 1 <= self.n_q <= self.model.n_codebooks:
            raise BadConfigError(f"n_q={self.n_q} outside 1..{self.model.n_codebooks} for {path}")
        self.sample_rate = int(self.model.sample_rate)
        self.frame_rate = self.sample_rate / self.model.hop_length
        self.codebook_size = int(self.model.codebook_size)
        self._hash = _file_digest(path)

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
        return torch.nn.functional.pad(wav, (0, max(0, num_samples - wav.shape[-1])))[:num_samples]


def _file_digest(path: Path) -> str:
    from voxtok.registry import file_hash

    return file_hash(path)


def build_system(spec: SystemSpec | str, device: str = "cpu") -> System:
    """Instantiate the system a spec names (loads checkpoints, checks tools)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "identity":
        return IdentitySystem(spec)
    if spec.kind == "vtk":
        return VoxTokSystem(spec, device)
    if spec.kind == "encodec":
        return EncodecSystem(spec, device)
    if spec.kind == "dac":
        return DACSystem(spec, device)
    return ClassicalSystem(spec)

