"""The `.vtk` token file: one utterance's codes plus everything needed to decode them safely.

Layout (little endian):
    b"VTOK" | u16 format version | u32 header length | header (UTF-8 JSON) |
    payload (codes [Q, T], uint16 when codebook_size <= 65536 else int32) | u32 CRC32 of all before

The header names the codec, the hash of its checkpoint, rates, n_q and codebook size, so decoding
with another codec, a truncated file or out-of-range codes is a clear BadTokenFileError.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from voxtok.atomic import atomic_write
from voxtok.errors import BadTokenFileError

MAGIC = b"VTOK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")


@dataclass(frozen=True)
class TokenHeader:
    """What a token file says about the codes it holds."""

    codec: str
    checkpoint_hash: str
    sample_rate: int
    frame_rate: float
    n_q: int
    codebook_size: int
    num_frames: int
    num_samples: int  # original signal length, so decode can trim to it
    format_version: int = FORMAT_VERSION

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<u2") if self.codebook_size <= 65536 else np.dtype("<i4")


def write_tokens(path: str | os.PathLike, codes: torch.Tensor, header: TokenHeader) -> Path:
    """Write codes [Q, T] (or [1, Q, T]) atomically; the header's n_q/num_frames must match."""
    path = Path(path)
    if codes.dim() == 3 and codes.shape[0] == 1:
        codes = codes[0]
    if codes.dim() != 2 or tuple(codes.shape) != (header.n_q, header.num_frames):
        raise BadTokenFileError(f"codes of shape {tuple(codes.shape)} do not match header "
                                f"(n_q={header.n_q}, frames={header.num_frames})", path)
    arr = codes.detach().cpu().numpy()
    if arr.size and (arr.min() < 0 or arr.max() >= header.codebook_size):
        raise BadTokenFileError(f"codes outside [0, {header.codebook_size})", path)
    head = json.dumps(asdict(header), sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + arr.astype(header.dtype).tobytes()
    blob = body + struct.pack("<I", zlib.crc32(body))
    with atomic_write(path, "wb") as handle:
        handle.write(blob)
    return path


def read_tokens(path: str | os.PathLike) -> tuple[torch.Tensor, TokenHeader]:
    """Read and verify a token file: returns (codes int64 [Q, T], header)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise BadTokenFileError(f"cannot read token file ({exc.strerror})", path) from None
    if len(blob) < _PREFIX.size + 4 or blob[:4] != MAGIC:
        raise BadTokenFileError("not a VoxTok token file (bad magic)", path)
    _, version, head_len = _PREFIX.unpack_from(blob)
    if version > FORMAT_VERSION:
        raise BadTokenFileError(f"token file format v{version} is newer than this VoxTok (v{FORMAT_VERSION})", path)
    (crc,) = struct.unpack("<I", blob[-4:])
    if zlib.crc32(blob[:-4]) != crc:
        raise BadTokenFileError("token file is truncated or corrupt (checksum mismatch)", path)
    try:
        fields = json.loads(blob[_PREFIX.size:_PREFIX.size + head_len])
        header = TokenHeader(**fields)
    except (ValueError, TypeError) as exc:
        raise BadTokenFileError(f"token file header is unreadable ({exc})", path) from None
    payload = blob[_PREFIX.size + head_len:-4]
    expected = header.n_q * header.num_frames * header.dtype.itemsize
    if len(payload) != expected:
        raise BadTokenFileError(f"token payload has {len(payload)} bytes, header needs {expected}", path)
    codes = np.frombuffer(payload, dtype=header.dtype).reshape(header.n_q, header.num_frames)
    codes = torch.from_numpy(codes.astype(np.int64))
    check_code_range(codes, header.codebook_size, path)
    return codes, header


def check_code_range(codes: torch.Tensor, codebook_size: int, name: object = "<codes>") -> None:
    """Raise BadTokenFileError if any code in [..., T] is outside [0, codebook_size)."""
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise BadTokenFileError(f"codes outside [0, {codebook_size}) (min {int(codes.min())}, "
                                f"max {int(codes.max())})", name)
