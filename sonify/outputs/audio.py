"""Audio files: the finished mix as WAV or FLAC, written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from .files import OutputSet, deferred_signals

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


def encode_audio(audio: np.ndarray, sample_rate: int, kind: str, subtype: str) -> bytes:
    """``audio`` as the bytes of a WAV or FLAC file (``kind``).

    Encoded in memory, with Ctrl-C held until it is done: soundfile calls back into Python
    from C, where an interruption cannot unwind (it left a cffi traceback and a failed assert).
    Writing the bytes afterwards gives a full disk's real error (ENOSPC, EFBIG)."""
    import soundfile

    buffer = io.BytesIO()
    with deferred_signals():
        soundfile.write(buffer, np.asarray(audio, dtype=np.float32), sample_rate, subtype=subtype, format=kind)
    return buffer.getvalue()


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None, outputs: OutputSet | None = None
) -> Path:
    """Write ``audio`` as WAV or FLAC (by suffix), atomically: the file appears whole or not at all.

    With ``outputs`` the file is staged there, and appears with the set's other files."""
    path = Path(path)
    kind, subtype = audio_format(path, subtype)
    if sample_rate not in SAMPLE_RATES:
        raise SonifyError(f"sample rate {sample_rate} Hz is not offered; use 44100 or 48000")
    data = encode_audio(audio, sample_rate, kind, subtype)
    if outputs is not None:
        return outputs.write(path, data)
    with OutputSet(announce=False) as alone:
        return alone.write(path, data)
