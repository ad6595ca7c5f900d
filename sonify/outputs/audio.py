"""Audio files: the finished mix as WAV or FLAC, written block by block into a staged file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from .files import OutputSet, write_error

# Output formats: suffix → (soundfile format, allowed subtypes, default subtype)
FORMATS = {
    ".wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT"), "PCM_24"),
    ".flac": ("FLAC", ("PCM_16", "PCM_24"), "PCM_24"),
}
SAMPLE_RATES = (44100, 48000)
BLOCK = 262144  # frames per write when a whole array is written


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


def check_sample_rate(sample_rate: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise SonifyError(f"sample rate {sample_rate} Hz is not offered; use 44100 or 48000")


class AudioFile:
    """A WAV or FLAC file (by suffix) staged in ``outputs`` and written block by block (a
    ``BlockSink``): it appears with the set's other files at the commit, or not at all.

    libsndfile writes through a file descriptor of its own, never calling back into Python,
    so a signal is acted on between two blocks (an exception raised inside a callback
    cannot unwind through C), and a full disk is the system's own error. ``begin`` starts
    the file again, empty. Use it as a context manager: leaving closes the file."""

    def __init__(
        self, outputs: OutputSet, path: str | os.PathLike, sample_rate: int, subtype: str | None = None, channels: int = 2
    ) -> None:
        self.path = Path(path)
        self.kind, self.subtype = audio_format(self.path, subtype)
        check_sample_rate(sample_rate)
        self.sample_rate, self.channels = sample_rate, channels
        self.staged = outputs.stage(self.path)
        self._fd: int | None = None
        self._file = None

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self._close()
        else:
            try:
                self._close()
            except (SonifyError, OSError):
                pass  # the failure on its way out says more than this one

    def begin(self) -> None:
        import soundfile

        self._close()
        try:
            self._fd = os.open(self.staged, os.O_WRONLY | os.O_TRUNC)
        except OSError as exc:
            raise write_error(exc, self.path) from None
        try:
            self._file = soundfile.SoundFile(
                self._fd, "w", self.sample_rate, self.channels, self.subtype, format=self.kind, closefd=False
            )
        except RuntimeError:  # soundfile.LibsndfileError
            raise self._failure() from None

    def write(self, block: np.ndarray) -> None:
        if self._file is None:
            raise ValueError("write before begin")
        before = self._file.frames
        try:
            self._file.write(np.asarray(block, dtype=np.float32))
        except (AssertionError, RuntimeError):
            raise self._failure() from None  # libsndfile's error, or soundfile's check that every frame went
        if self._file.frames != before + len(block):
            raise self._failure()

    def end(self) -> None:
        self._close()

    def _close(self) -> None:
        """Close the file (libsndfile writes the header's lengths now), then the descriptor."""

        file, self._file = self._file, None
        try:
            if file is not None:
                try:
                    file.close()
                except RuntimeError:  # soundfile.LibsndfileError
                    raise self._failure() from None
        finally:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)

    def _failure(self) -> SonifyError:
        """The one line for a write libsndfile could not finish: the system's error (a full
        disk, a size limit, a failing disk) when it set one."""
        import soundfile

        code = getattr(getattr(soundfile, "_ffi", None), "errno", 0) or errno.EIO
        return write_error(OSError(code, os.strerror(code)), self.path)


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None, outputs: OutputSet | None = None
) -> Path:
    """Write ``audio`` (frames, channels) as WAV or FLAC (by suffix), atomically: the file
    appears whole or not at all. With ``outputs`` the file is staged there, and appears
    with the set's other files."""
    if outputs is None:
        with OutputSet(announce=False) as alone:
            return write_audio(path, audio, sample_rate, subtype, alone)
    audio = np.asarray(audio, dtype=np.float32)
    with AudioFile(outputs, path, sample_rate, subtype, channels=audio.shape[1] if audio.ndim == 2 else 1) as file:
        file.begin()
        for start in range(0, audio.shape[0], BLOCK):
            file.write(audio[start : start + BLOCK])
        file.end()
    return Path(path)
