"""Errors VoxTok raises on bad input.

Every error carries a one-line message naming the offending file (or object) and the problem,
so the CLI can print it and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class VoxTokError(Exception):
    """Base class: a user-facing problem with input, configuration or files."""

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        text = f"{self.path}: {message}" if self.path else message
        # One line only: newlines would break log greps and the CLI's single-line contract.
        super().__init__(" ".join(text.split()))


class BadAudioError(VoxTokError):
    """Audio that is unreadable, empty, non-finite, silent, too short or too long."""


class BadTokenFileError(VoxTokError):
    """A `.vtk` token file that is truncated, corrupt, from another codec or out of range."""


class BadConfigError(VoxTokError):
    """A configuration value that cannot be used."""


class BadDataDirError(VoxTokError):
    """A Kaldi data dir that is missing files or cannot be repaired."""


class BadTextError(VoxTokError):
    """Text input that is empty or has no usable symbols."""


class UnknownSpeakerError(VoxTokError):
    """A speaker id that is not in the speaker store."""


class MissingVoiceError(VoxTokError):
    """A voice the synthetic corpus needs (espeak-ng, MBROLA, piper) is not installed."""
