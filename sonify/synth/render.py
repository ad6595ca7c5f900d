"""Offline rendering: a Score through the block engine and the master chain, to a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from ..fileio import atomic_write
from ..preset import Synth
from ..score import Score
from .engine import SynthEngine
from .master import LoudnessMeter, master

BLOCK = 262144  # offline block (5.5 s at 48 kHz): large enough that per-note overhead vanishes

# Output formats: suffix → (soundfile format, allowed subtypes, default subtype)
FORMATS = {
    ".wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT"), "PCM_24"),
    ".flac": ("FLAC", ("PCM_16", "PCM_24"), "PCM_24"),
}
SAMPLE_RATES = (44100, 48000)


def render_audio(
    score: Score,
    settings: Synth,
    sample_rate: int | None = None,
    progress: Callable[[float], None] | None = None,
    finish: bool = True,
) -> np.ndarray:
    """Render ``score`` to a (frames, 2) float32 array: the notes, the effects' tail until
    the reverb has died away, then (``finish``) loudness normalisation and the limiter."""
    engine = SynthEngine.for_score(score, settings, sample_rate)
    total = engine.length_for(score.end)
    blocks = []
    done = 0
    meter = LoudnessMeter(engine.sample_rate)
    for block in engine.blocks(total, BLOCK):
        meter.process(block)  # measured as it is made, while the next block's notes render
        blocks.append(block)
        done += block.shape[0]
        if progress is not None:
            progress(done / total)
    audio = np.concatenate(blocks) if blocks else np.zeros((0, 2), dtype=np.float32)
    if not finish:
        return audio
    return master(audio, engine.sample_rate, settings.loudness, settings.ceiling, meter=meter)


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
        soundfile.write(f, np.asarray(audio, dtype=np.float32), sample_rate, subtype=subtype, format=kind)
    return path
