"""Offline rendering: a Score through the block engine and the master chain, block by block,
so a render's memory does not grow with the piece's length."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import heap
from ..music.preset import Synth
from ..music.score import Score
from .engine import SynthEngine
from .master import BlockSink, Collect, master_passes

BLOCK = 262144  # offline block (5.5 s at 48 kHz): large enough that per-note overhead vanishes
TRIM_EVERY = 8  # blocks (44 s at 48 kHz) between the heap's trims
KEEP_BYTES = 32 * 2**20  # a raw mix this small (~87 s at 48 kHz) is kept from the first pass, not made again


def render_to(
    score: Score,
    settings: Synth,
    sinks: Sequence[BlockSink],
    sample_rate: int | None = None,
    progress: Callable[[float], None] | None = None,
    keep_bytes: int = KEEP_BYTES,
) -> int:
    """Render ``score`` finished (the notes, the effects' tail until the reverb has died away,
    loudness normalisation and the limiter) into ``sinks``, block by block; returns the
    number of frames.

    The mix is made once to measure its loudness, then again with the gain known (see
    ``master_passes``); the engine is deterministic, so every pass makes the same samples.
    A piece whose raw mix fits in ``keep_bytes`` is kept from the first pass instead (the
    same samples, half the work). ``progress`` goes from 0 to 0.5 over the first pass, to 1
    over the last."""
    first = SynthEngine.for_score(score, settings, sample_rate)
    return _render(first, score, settings, sinks, sample_rate, progress, keep_bytes)


def _render(
    engine: SynthEngine,
    score: Score,
    settings: Synth,
    sinks: Sequence[BlockSink],
    sample_rate: int | None,
    progress: Callable[[float], None] | None,
    keep_bytes: int,
) -> int:
    """``render_to`` with the first pass's engine made (``SynthEngine.for_score``)."""
    total, rate = engine.length_for(score.end), engine.sample_rate
    first: SynthEngine | None = engine  # for the first pass; a later one that is not kept makes its own
    kept: list[np.ndarray] | None = [] if total * 2 * 4 <= keep_bytes else None
    passes = 0

    def mix() -> Iterator[np.ndarray]:
        nonlocal first, passes
        start, passes = (0.0 if passes == 0 else 0.5), passes + 1
        if passes > 1 and kept is not None:
            blocks: Iterable[np.ndarray] = kept
        else:
            playing = first if first is not None else SynthEngine.for_score(score, settings, sample_rate)
            # A kept mix is made in one array (numpy asks for huge pages for one this large).
            into = np.empty((2, total), dtype=np.float32) if kept is not None else None
            first, blocks = None, playing.blocks(total, BLOCK, into)
        done = 0
        for count, block in enumerate(blocks, 1):
            if passes == 1 and kept is not None:
                kept.append(block)
            yield block
            done += block.shape[0]
            if kept is None and count % TRIM_EVERY == 0:
                # The blocks' freed temporaries: else the heap creeps up over a long piece. Not
                # after every block: each trim makes the next blocks fault their pages in again
                # (a third of a short piece's render time, trimmed after every block). Not for
                # a kept piece: it is short, and held whole anyway (2-3 thousand page faults
                # fewer for a minute's piece).
                heap.release()
            if progress is not None:
                progress(start + 0.5 * done / total)

    master_passes(mix, rate, settings.loudness, settings.ceiling, sinks)
    return total


def render_audio(
    score: Score,
    settings: Synth,
    sample_rate: int | None = None,
    progress: Callable[[float], None] | None = None,
    finish: bool = True,
) -> np.ndarray:
    """Render ``score`` to one (frames, 2) float32 array (``render_to`` into memory: for
    short pieces and analysis). ``finish`` False: the raw mix, before the master chain."""
    if finish:
        first = SynthEngine.for_score(score, settings, sample_rate)
        keep = Collect(frames=first.length_for(score.end))  # the piece's array, filled as it comes
        _render(first, score, settings, [keep], sample_rate, progress, KEEP_BYTES)
        return keep.audio()
    engine = SynthEngine.for_score(score, settings, sample_rate)
    total = engine.length_for(score.end)
    audio = np.empty((total, 2), dtype=np.float32)
    done = 0
    for block in engine.blocks(total, BLOCK):
        audio[done : done + block.shape[0]] = block
        done += block.shape[0]
        if progress is not None:
            progress(done / total)
    return audio[:done]
