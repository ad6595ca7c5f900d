"""Compressed audio for pages: Ogg Vorbis bytes, the same bytes for the same samples.

libsndfile writes Ogg Vorbis through soundfile. Two of its habits are handled here: a single
large Vorbis write can crash it, so the samples go in blocks; and each stream gets a random
serial number, so every page of the file is rewritten with a fixed one (and its checksum
recomputed) to keep the output deterministic, as every other file sonify writes is.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from ..errors import SonifyError

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


def encode_ogg_vorbis(samples: np.ndarray, sample_rate: int, quality: float = QUALITY) -> bytes:
    """``samples`` (frames x channels, or mono) as Ogg Vorbis bytes, written in blocks."""
    import soundfile

    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or audio.shape[1] not in (1, 2) or len(audio) == 0:
        raise SonifyError(f"cannot encode audio of shape {audio.shape}; the page needs mono or stereo samples")
    buffer = io.BytesIO()
    block = max(1, int(BLOCK_SECONDS * sample_rate))
    with soundfile.SoundFile(
        buffer, "w", sample_rate, audio.shape[1], format="OGG", subtype="VORBIS", compression_level=quality
    ) as f:
        for start in range(0, len(audio), block):
            f.write(audio[start : start + block])
    return with_serial(buffer.getvalue())
