"""Offline rendering: a Score through the block engine and the master chain, to samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..music.preset import Synth
from ..music.score import Score
from .engine import SynthEngine
from .master import LoudnessMeter, master

BLOCK = 262144  # offline block (5.5 s at 48 kHz): large enough that per-note overhead vanishes


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
    audio = np.empty((total, 2), dtype=np.float32)
    done = 0
    meter = LoudnessMeter(engine.sample_rate)
    for block in engine.blocks(total, BLOCK):
        meter.process(block)  # measured as it is made, while the next block's notes render
        audio[done : done + block.shape[0]] = block
        done += block.shape[0]
        if progress is not None:
            progress(done / total)
    if not finish:
        return audio
    return master(audio, engine.sample_rate, settings.loudness, settings.ceiling, meter=meter)
