"""Classical speech codecs (Codec2, Opus) run through their real command-line tools.

They are the reference points neural tokenizers are compared with at matching bitrates. Each
`ClassicalCodec.run(wav, sr)` returns the reconstruction at the input's rate and length and the
bitrate measured from what the encoder actually wrote.

Measurement choices (all from runs of the Debian codec2 1.x and opus-tools 0.2 / libopus 1.3 tools):
- Codec2 writes headerless frames when the output name does not end in `.c2` (a `.c2` name adds a
  7-byte header). The bitrate counts the payload bits, measured by a second `c2enc --bitperchar`
  run that writes one byte per bit: 700C packs its 28-bit frames into 4 bytes, so the byte-packed
  file costs 800 bit/s while the codec's rate is 700 (both are reported).
- Codec2's algorithmic delay, from a scan of lags (1-sample steps) maximising STOI and minimising
  a log-spectral distance over six espeak-ng sentences at 8 kHz: 160 samples (20 ms) for 3200 and
  1200, 240 samples (30 ms) for 700C. Waveform cross-correlation cannot measure it because Codec2
  synthesises its own phase. The delay is removed and the input is padded by it so the tail
  survives.
- Opus runs in opusenc's default VBR mode: at 6 and 12 kbit/s it scored PESQ-WB 1.60 / 2.86 on
  four 2 s espeak-ng sentences against 1.23 / 2.56 for `--hard-cbr`, with payloads within 10 % of nominal.
  The bitrate counts the Opus packets (Ogg page headers, OpusHead and OpusTags excluded, parsed
  here): on 2 s clips the container adds ~1 kB (opusenc pads OpusTags): +70 % at 6 kbit/s,
  +35 % at 12, reported as `file_bitrate`.
  opusdec removes the pre-skip and trims to the original length; the residual delay measured by
  cross-correlation is 0 ± 2 samples at 48 kHz, so none is compensated.
- Bitrates divide by the input's duration: the bits it costs to send this clip, including the
  frames that pad the last partial frame and flush the delay (~2 % above nominal for 2 s clips).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxtok.audio import load_audio, resample, save_audio
from voxtok.errors import BadAudioError, BadConfigError, VoxTokError

# Binary -> the package that installs it (named in the "not installed" message).
_TOOL_PACKAGES = {
    "c2enc": "codec2",
    "c2dec": "codec2",
    "opusenc": "opus-tools",
    "opusdec": "opus-tools",
}


def check_tool(name: str) -> str:
    """Path of the executable `name`; VoxTokError naming its package when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        package = _TOOL_PACKAGES.get(name, name)
        raise VoxTokError(f"{package} is not installed (no `{name}` on PATH): run `make setup`")
    return path


def _run_tool(args: list[str]) -> None:
    """Run a codec tool; a failure becomes a VoxTokError quoting the first line of its stderr."""
    exe = check_tool(args[0])
    proc = subprocess.run([exe, *args[1:]], capture_output=True)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = lines[0] if lines else "no error message"
        raise VoxTokError(f"{args[0]} failed (exit {proc.returncode}): {detail}")


def _mono_float(wav) -> np.ndarray:
    """[T] (or [1, T]) torch/numpy -> float32 numpy [T], rejecting empty or non-finite input."""
    arr = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise BadAudioError(f"classical codecs take mono audio [T], got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise BadAudioError("audio contains NaN or Inf samples")
    return arr.astype(np.float32)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad [T] to exactly n samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


@dataclass(frozen=True)
class CodecRun:
    """One encode/decode: reconstruction [T] at the input rate, payload and file bitrates (bit/s)."""

    recon: np.ndarray
    bitrate: float
    file_bitrate: float


@dataclass(frozen=True)
class ClassicalCodec:
    """A command-line codec at a fixed operating point.

    `sample_rate` is the rate the codec works at (input is resampled to it and back),
    `delay` its algorithmic delay in samples at that rate (removed from the output).
    """

    name: str
    nominal_bitrate: int  # bit/s
    sample_rate: int
    delay: int = 0

    def tools(self) -> tuple[str, ...]:
        """Executables this codec needs."""
        raise NotImplementedError

    def _code(self, wav: np.ndarray, tmp: Path) -> tuple[np.ndarray, int, int]:
        """Encode and decode float32 [T] at `sample_rate` in folder `tmp`.

        Returns (decoded [T'] at `sample_rate`, payload bits, encoded file bytes).
        """
        raise NotImplementedError

    def run_detailed(self, wav, sr: int) -> CodecRun:
        """Round-trip mono float audio [T] at `sr`; see `CodecRun`."""
        if sr <= 0:
            raise BadAudioError(f"invalid sample rate {sr}")
        for tool in self.tools():
            check_tool(tool)
        x = _mono_float(wav)
        duration = len(x) / sr
        at_codec_rate = resample(x, sr, self.sample_rate).numpy()
        with tempfile.TemporaryDirectory(prefix=f"voxtok_{self.name}_") as tmp:
            decoded, bits, file_bytes = self._code(at_codec_rate, Path(tmp))
        decoded = decoded[self.delay:]
        recon = _fit_length(resample(decoded, self.sample_rate, sr).numpy(), len(x))
        return CodecRun(recon.astype(np.float32), bits / duration, file_bytes * 8 / duration)

    def run(self, wav, sr: int):
        """Round-trip mono audio [T] at `sr` -> (reconstruction [T], measured bitrate in bit/s).

        The reconstruction has the input's type (torch tensor or numpy array), rate and length.
        """
        result = self.run_detailed(wav, sr)
        recon = torch.from_numpy(result.recon) if isinstance(wav, torch.Tensor) else result.recon
        return recon, result.bitrate


# ----------------------------------------------------------------------------- Codec2


@dataclass(frozen=True)
class Codec2(ClassicalCodec):
    """Codec2 mode `mode` (c2enc/c2dec) at 8 kHz; `frame` is the samples per coded frame."""

    mode: str = "3200"
    frame: int = 160

    def tools(self) -> tuple[str, ...]:
        return ("c2enc", "c2dec")

    def _code(self, wav: np.ndarray, tmp: Path) -> tuple[np.ndarray, int, int]:
        # Pad by the delay (so the tail is still decoded once the delay is removed), then to whole
        # frames (c2enc silently drops a final partial frame).
        n = len(wav) + self.delay
        n += -n % self.frame
        pcm = np.round(np.clip(_fit_length(wav, n), -1.0, 1.0) * 32767).astype("<i2")
        raw_in, coded, bit_chars, raw_out = (tmp / name for name in ("in.raw", "out.bin", "bits.txt", "out.raw"))
        pcm.tofile(raw_in)
        _run_tool(["c2enc", self.mode, str(raw_in), str(coded)])  # not `.c2`: no header
        _run_tool(["c2enc", self.mode, str(raw_in), str(bit_chars), "--bitperchar"])
        _run_tool(["c2dec", self.mode, str(coded), str(raw_out)])
        decoded = np.fromfile(raw_out, dtype="<i2").astype(np.float32) / 32768.0
        return decoded, bit_chars.stat().st_size, coded.stat().st_size


# ----------------------------------------------------------------------------- Opus


def ogg_opus_payload_bytes(path: str | Path) -> int:
    """Bytes of Opus audio packets in an Ogg Opus file: its size minus page headers, OpusHead, OpusTags."""
    data = Path(path).read_bytes()
    pos, packet, packets = 0, 0, []
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS" or pos + 27 > len(data):
            raise VoxTokError("not an Ogg stream (bad page header)", path)
        n_segments = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + n_segments]
        pos += 27 + n_segments
        for size in lacing:
            packet += size
            pos += size
            if size < 255:  # a lacing value below 255 ends a packet
                packets.append(packet)
                packet = 0
    if packet:
        packets.append(packet)  # a packet still open at the end of the stream
    if len(packets) < 2:
        raise VoxTokError("Ogg Opus file has no OpusHead/OpusTags headers", path)
    return sum(packets[2:])


@dataclass(frozen=True)
class Opus(ClassicalCodec):
    """Opus (opusenc/opusdec, default VBR, 20 ms frames) at `nominal_bitrate`, coded at 48 kHz."""

    def tools(self) -> tuple[str, ...]:
        return ("opusenc", "opusdec")

    def _code(self, wav: np.ndarray, tmp: Path) -> tuple[np.ndarray, int, int]:
        wav_in, coded, wav_out = tmp / "in.wav", tmp / "out.opus", tmp / "out.wav"
        save_audio(wav_in, wav, self.sample_rate)
        kbps = f"{self.nominal_bitrate / 1000:g}"
        _run_tool(["opusenc", "--bitrate", kbps, "--quiet", str(wav_in), str(coded)])
        _run_tool(["opusdec", "--quiet", "--rate", str(self.sample_rate), str(coded), str(wav_out)])
        decoded, _ = load_audio(wav_out, check=False)
        return decoded[0].numpy(), 8 * ogg_opus_payload_bytes(coded), coded.stat().st_size


CLASSICAL_CODECS: dict[str, ClassicalCodec] = {
    "codec2_700c": Codec2("codec2_700c", 700, 8000, delay=240, mode="700C", frame=320),
    "codec2_1200": Codec2("codec2_1200", 1200, 8000, delay=160, mode="1200", frame=320),
    "codec2_3200": Codec2("codec2_3200", 3200, 8000, delay=160, mode="3200", frame=160),
    "opus_6k": Opus("opus_6k", 6000, 48000),
    "opus_12k": Opus("opus_12k", 12000, 48000),
}


def get_classical_codec(name: str) -> ClassicalCodec:
    """The registered classical codec `name` (a key of CLASSICAL_CODECS)."""
    if name not in CLASSICAL_CODECS:
        raise BadConfigError(f"unknown classical codec '{name}' (choose from {sorted(CLASSICAL_CODECS)})")
    return CLASSICAL_CODECS[name]
