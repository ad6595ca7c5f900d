"""Audio files: the finished mix as WAV or FLAC, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from .files import atomic_write

# Output formats: suffix → (soundfile format, allowed subtypes, default subtype)
FORMATS = {
    ".wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT"), "PCM_24"),
    ".flac": ("FLAC", ("PCM_16", "PCM_24"), "PCM_24"),
}
SAMPLE_RATES = (44100, 48000)


def audio_format(path: str | os.PathLike, subtype: str | None = None) -> tuple[str, str]:
    """The soundfile (format, subtype) for ``path``'s suffix, checking ``subtype``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SonifyError(f"cannot write audio as {suffix or 'a file without a suffix'} ({path}); use .wav or .flac")
    kind, allowed, default = FORMATS[suffix]
    subtype = (subtype or default).upper()
    if subtype not in allowed:
        raise SonifyError(f"{kind} cannot hold {subtype} samples; use one of {', '.join(allowed)}")
    return kind, subtype


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``audio`` as WAV or FLAC (by suffix), atomically: the file appears whole or not at all."""
    import soundfile

    path = Path(path)
    kind, subtype = audio_format(path, subtype)
    if sample_rate not in SAMPLE_RATES:
        raise SonifyError(f"sample rate {sample_rate} Hz is not offered; use 44100 or 48000")
    with atomic_write(path, "wb") as f:
        # Through the file descriptor, not the file object: libsndfile then writes in C. Given
        # a file object it writes through a Python callback, which swallows a Ctrl-C there
        # and then fails on the short write (exit 1 instead of 130).
        soundfile.write(f.fileno(), np.asarray(audio, dtype=np.float32), sample_rate, subtype=subtype, format=kind, closefd=False)
    return path
