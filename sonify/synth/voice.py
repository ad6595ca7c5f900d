"""What the engine plays: an instrument's definition, and a note sounding through one.

The instruments module defines the instruments; the engine starts, steals and mixes the
sounding notes. Both read these types, so they live here, apart from either.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..music.score import Control, Note
from .dsp import adsr, fade

STEAL_SECONDS = 0.005
CONTROL_GLIDE_SECONDS = 0.02  # a control change glides this long: no zipper noise
CONTROL_STEP = 32  # samples between readings of a control curve

Tone = Callable[["SoundingNote", np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Instrument:
    name: str
    attack: float
    decay: float
    sustain: float
    release: float
    level: float  # trim so instruments sit together at equal velocity
    tone: Tone
    polyphony: int = 16
    # Held, many-note voices are lowpassed once on the voice's bus rather than note by note:
    # the cutoff (Hz) at brightness 0..1. None: the tone filters itself, if at all.
    bus_cutoff: Callable[[float], float] | None = None



class ControlLanes:
    """Controller values over time, per (voice, controller), read back as smooth curves."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.points: dict[tuple[str, int], tuple[list[float], list[float]]] = {}

    def add(self, control: Control, offset: int = 0) -> None:
        times, values = self.points.setdefault((control.voice, control.controller), ([], []))
        t = round(control.time * self.sample_rate) + offset
        previous = values[-1] if values else control.value / 127.0
        times += [t, t + CONTROL_GLIDE_SECONDS * self.sample_rate]
        values += [previous, control.value / 127.0]

    def forget_before(self, sample: int) -> None:
        """Drop the points no reading from ``sample`` on needs (a live engine calls this as
        it plays, so the lanes stay short and a reading costs the same all night): each lane
        keeps its last point before the first control step that ``sample`` may read."""
        first = (sample // CONTROL_STEP) * CONTROL_STEP
        for times, values in self.points.values():
            k = bisect.bisect_left(times, first) - 1  # the last point before the first reading
            if k > 0:
                del times[:k]
                del values[:k]

    def curve(self, voice: str, controller: int, start: int, count: int) -> np.ndarray:
        """The controller's value (0..1) at ``count`` samples from absolute sample ``start``.

        Read every CONTROL_STEP samples of the absolute timeline and held in between (a
        20 ms glide in steps of 0.7 ms), which is the same whatever block a sample is in."""
        lane = self.points.get((voice, controller))
        if not lane:
            return np.ones(count, dtype=np.float32)
        first = start // CONTROL_STEP
        last = (start + count - 1) // CONTROL_STEP
        grid = np.arange(first, last + 1, dtype=np.float64) * CONTROL_STEP
        values = np.interp(grid, lane[0], lane[1]).astype(np.float32)
        held = np.repeat(values, CONTROL_STEP)
        offset = start - first * CONTROL_STEP
        return held[offset : offset + count]


@dataclass
class SoundingNote:
    """A note being played, with everything its instrument needs."""

    note: Note
    instrument: Instrument
    start: int
    gate: float  # seconds from start to note-off
    end: int  # sample after the last one it sounds
    freq: float
    velocity: float  # 0..1
    brightness: float  # the preset's tone, 0 dark .. 1 bright
    sample_rate: int
    level: np.float32  # gain from velocity, voice gain and instrument trim
    controllers: tuple[int, ...]
    lanes: ControlLanes
    stolen_at: float | None = None  # seconds from start
    state: dict[str, Any] = field(default_factory=dict)

    def control(self, controller: int, n: np.ndarray) -> np.ndarray:
        """The controller's curve over samples ``n`` (consecutive, from the note's start)."""
        return self.lanes.curve(self.note.voice, controller, int(n[0]) + self.start, n.size)

    def render(self, lo: int, hi: int) -> np.ndarray:
        """Samples ``lo`` to ``hi`` (from the note's start) of this note, mono, at its level."""
        n = np.arange(lo, hi, dtype=np.uint32)
        t = np.multiply(n, np.float32(1.0 / self.sample_rate), dtype=np.float32)
        i = self.instrument
        envelope = adsr(t, self.gate, i.attack, i.decay, i.sustain, i.release, self.level)
        if self.stolen_at is not None:
            envelope *= fade(t, self.stolen_at, STEAL_SECONDS)
        tone = self.instrument.tone(self, n)
        tone *= envelope
        return tone
