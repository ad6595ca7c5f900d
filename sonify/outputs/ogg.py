"""Compressed audio for pages: Ogg Vorbis bytes, the same bytes for the same samples.

libsndfile writes Ogg Vorbis through soundfile. Two of its habits are handled here: a single
large Vorbis write can crash it, so the samples go in blocks (also when a render hands
them over block by block); and each stream gets a random
serial number, so every page of the file is rewritten with a fixed one (and its checksum
recomputed) to keep the output deterministic, as every other file sonify writes is.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from ..errors import SonifyError
from .files import deferred_signals

BLOCK_SECONDS = 5.0
QUALITY = 0.6  # soundfile's compression level: 0 best quality .. 1 smallest; 0.6 is about 100 kbit/s stereo
SERIAL = 0x736F6E69  # "soni"
_PAGE_HEADER = 27
_REVERSED_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32 with polynomial 0x04C11DB7, unreflected, initial value 0
    and no final xor. zlib computes the reflected form; reversing the bits of every input
    byte and of the result turns one into the other, at C speed."""
    reflected = zlib.crc32(data.translate(_REVERSED_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def with_serial(ogg: bytes, serial: int = SERIAL) -> bytes:
    """The Ogg stream ``ogg`` with every page's serial number set to ``serial``."""
    out = bytearray(ogg)
    pos = 0
    while pos < len(out):
        if out[pos : pos + 4] != b"OggS" or pos + _PAGE_HEADER > len(out):
            raise SonifyError("the Ogg encoder wrote a malformed stream (no page header where one belongs)")
        segments = out[pos + 26]
        body = sum(out[pos + _PAGE_HEADER : pos + _PAGE_HEADER + segments])
        end = pos + _PAGE_HEADER + segments + body
        struct.pack_into("<I", out, pos + 14, serial)
        struct.pack_into("<I", out, pos + 22, 0)  # the checksum is computed with its own field zeroed
        struct.pack_into("<I", out, pos + 22, ogg_crc(bytes(out[pos:end])))
        pos = end
    return bytes(out)


class OggEncoder:
    """Ogg Vorbis of a piece given block by block (a ``BlockSink``): ``data`` after ``end``.

    The samples go to the encoder in blocks of BLOCK_SECONDS whatever the blocks given, so
    the bytes are those of encoding the whole piece at once. The encoder calls back into
    Python (it writes to memory), so signals wait while it runs, one block at a time."""

    def __init__(self, sample_rate: int, channels: int = 2, quality: float = QUALITY) -> None:
        self.sample_rate, self.channels, self.quality = sample_rate, channels, quality
        self.block = max(1, int(BLOCK_SECONDS * sample_rate))
        self.data: bytes | None = None
        self._buffer: io.BytesIO | None = None
        self._file = None
        self._pending: list[np.ndarray] = []
        self._held = 0
        self._frames = 0

    def begin(self) -> None:
        import soundfile

        self.close()
        self.data, self._pending, self._held, self._frames = None, [], 0, 0
        self._buffer = io.BytesIO()
        with deferred_signals():
            self._file = soundfile.SoundFile(
                self._buffer, "w", self.sample_rate, self.channels, format="OGG", subtype="VORBIS", compression_level=self.quality
            )

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise SonifyError(f"cannot encode audio of shape {block.shape}; the page needs mono or stereo samples")
        at = 0
        if self._held:  # complete the block begun before
            part = block[: self.block - self._held]
            self._pending.append(part)
            self._held += part.shape[0]
            at = part.shape[0]
            if self._held < self.block:
                return
            self._encode(np.concatenate(self._pending))
            self._pending, self._held = [], 0
        while block.shape[0] - at >= self.block:
            self._encode(block[at : at + self.block])
            at += self.block
        if at < block.shape[0]:
            self._pending, self._held = [block[at:]], block.shape[0] - at

    def end(self) -> None:
        if self._held:
            self._encode(np.concatenate(self._pending))
            self._pending, self._held = [], 0
        if self._frames == 0:
            raise SonifyError(f"cannot encode audio of shape (0, {self.channels}); the page needs mono or stereo samples")
        with deferred_signals():
            self._file.close()
        self._file = None
        self.data = with_serial(self._buffer.getvalue())
        self._buffer = None

    def close(self) -> None:
        """Drop an unfinished stream."""
        if self._file is not None:
            with deferred_signals():
                self._file.close()
        self._file, self._buffer = None, None

    def _encode(self, samples: np.ndarray) -> None:
        with deferred_signals():
            self._file.write(samples)
        self._frames += samples.shape[0]


def encode_ogg_vorbis(samples: np.ndarray, sample_rate: int, quality: float = QUALITY) -> bytes:
    """``samples`` (frames x channels, or mono) as Ogg Vorbis bytes."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or audio.shape[1] not in (1, 2) or len(audio) == 0:
        raise SonifyError(f"cannot encode audio of shape {audio.shape}; the page needs mono or stereo samples")
    encoder = OggEncoder(sample_rate, audio.shape[1], quality)
    encoder.begin()
    encoder.write(audio)
    encoder.end()
    return encoder.data
