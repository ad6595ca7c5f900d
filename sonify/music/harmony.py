"""The harmony: chords that change on the beat and mean something.

Every ``beats`` beats from a stanza's start the chord may change. Its **tension** follows
the words since the last change through ``tension`` (by default their mean uncertainty),
up a ladder of six chords by harmonic function: the tonic I and its relative vi, the
subdominants IV and ii, the dominants V and vii. How widely it **spreads** follows
``spread`` (by default how widely attention spread): from a close dyad a fourth wide to an
open ninth chord two octaves wide, more notes the wider. The root moves to the nearest
root of the new chord inside ``register``; a note both chords share is held across the
change, not struck again. A stanza's first chord follows its first word; at a stanza break
every chord note ends.
"""

from __future__ import annotations

import math

import numpy as np

from .part import Heard, Key, Mapped, Part
from .preset import Harmony
from .score import Note

# The tension ladder: roots (scale degrees, 0 = the tonic's) from rest to strain, in a
# seven-note scale: I, vi (tonic function), IV, ii (subdominant), V, vii (dominant).
LADDER = (0, 5, 3, 1, 4, 6)


def ladder(degrees: int) -> tuple[int, ...]:
    """The tension ladder's roots in a scale of ``degrees`` notes: the seven-note ladder's,
    each moved to the nearest degree of this scale, without repeats."""
    if degrees == 7:
        return LADDER
    return tuple(dict.fromkeys(round(d * degrees / 7) % degrees for d in LADDER))


def ladder_root(tension: float, degrees: int) -> int:
    """The root (scale-degree index) of ``tension`` (0..5, the seven-note ladder's steps;
    a shorter ladder is spread over the same span)."""
    rungs = ladder(degrees)
    step = round(min(max(tension, 0.0), 5.0) * (len(rungs) - 1) / 5.0)
    return rungs[step]


def function_of(step: int) -> int:
    """0 tonic, 1 subdominant, 2 dominant."""
    return min(max(step, 0), len(LADDER) - 1) // 2


class HarmonyPart(Part):
    name = "harmony"

    def __init__(self, settings: Harmony, tempo, out, calibration, key: Key):
        super().__init__(settings, tempo, out)
        self.v = settings
        # A chord follows the mean of a bar's words: its limits are of the model's means over spans of words.
        self.tension = Mapped(settings.tension, calibration, span=True)
        self.spread = Mapped(settings.spread, calibration, span=True)
        self.velocity = Mapped(settings.velocity, calibration, span=True)
        self.sounding: dict[int, Note] = {}  # pitch -> opened note
        self.chord: tuple[int, ...] = ()
        self.key = key
        self.pending: list[Heard] = []  # words since the last change
        self.next_change: float | None = None  # seconds

    @property
    def period(self) -> float:
        return self.tempo.seconds(self.v.beats) - self.tempo.seconds(0.0)

    def stanza_start(self, at: float, key: Key) -> None:
        self.key = key
        self.next_change = None
        self.pending = []
        self.chord = ()

    def word(self, heard: Heard) -> None:
        if self.next_change is None:
            self._change(heard.time, [heard])
            self.next_change = heard.time + self.period
        while self.next_change <= heard.time + 1e-9:
            if self.pending:
                self._change(self.next_change, self.pending)
                self.pending = []
            self.next_change += self.period
        self.pending.append(heard)

    def _mean(self, mapped: Mapped, words: list[Heard]) -> float:
        if mapped.signal is None:
            return math.nan
        values = [w.signal(mapped.signal) for w in words if w.has(mapped.signal)]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    def _parameter(self, mapped: Mapped, words: list[Heard], fallback: float) -> float:
        if mapped.scaler is None:
            return float(mapped.value)
        if not any(w.has(mapped.value.signal) for w in words):
            value = mapped(words[-1])  # its fallback, or None for "rest"
            return fallback if value is None else value
        return mapped.of_value(self._mean(mapped, words), words[-1].mode)

    def _change(self, at: float, words: list[Heard]) -> None:
        tension = self._parameter(self.tension, words, 0.0)
        spread = min(max(self._parameter(self.spread, words, 0.5), 0.0), 1.0)
        velocity = self._parameter(self.velocity, words, 54.0)
        pitches = self._voice(tension, spread)
        token = words[-1].placed.tokens[0] if words[-1].placed.tokens else words[-1].placed.index
        for pitch in list(self.sounding):
            if pitch not in pitches:
                self.end(self.sounding.pop(pitch), at)
        for pitch in pitches:
            if pitch not in self.sounding:
                opened = self.begin(at, pitch, velocity, token)
                if opened is not None:
                    self.sounding[pitch] = opened
        self.chord = pitches

    def _voice(self, tension: float, spread: float) -> tuple[int, ...]:
        """The chord's pitches: ``2 + 3 x spread`` notes stacked in thirds on the tension's
        root, laid out so that the top one stands about ``5 + 19 x spread`` semitones above
        the root (which moves to the nearest root inside the register)."""
        lo, hi = self.v.register
        classes = scale_classes(self.key)
        n = len(classes)
        degree = ladder_root(tension, n)
        size = min(2 + int(round(3 * spread)), max(n - 2, 2))  # a five-note scale's chords stay distinct
        tones = [classes[(degree + 2 * k) % n] for k in range(size)]
        width = 5.0 + 19.0 * spread
        previous = self.chord[0] if self.chord else lo + 5
        roots = [p for p in range(lo, hi + 1) if p % 12 == tones[0]]
        roomy = [p for p in roots if p + width <= hi + 2] or roots
        root = min(roomy, key=lambda p: (abs(p - previous), p))
        # The top note: the chord tone nearest the width asked for; the others fill in between.
        tops = [p for p in range(root + 2, 128) if p % 12 in tones[1:]]
        top = min(tops, key=lambda p: (abs(p - root - width), p))
        inner = [pc for pc in tones[1:] if pc != top % 12]
        placed = [root]
        for k, pc in enumerate(inner, start=1):
            aim = root + (top - root) * k / (len(inner) + 1)
            between = [p for p in range(placed[-1] + 1, top) if p % 12 == pc]
            if between:
                placed.append(min(between, key=lambda p: (abs(p - aim), p)))
        return tuple(sorted(set(placed + [top])))

    def stanza_end(self, at: float) -> None:
        for pitch in list(self.sounding):
            self.end(self.sounding.pop(pitch), at)
        self.chord = ()
        self.next_change = None
        self.pending = []


def scale_classes(key: Key) -> list[int]:
    """The scale's pitch classes, from the tonic up."""
    return sorted({int(p) % 12 for p in key.pitches(0, 127)}, key=lambda pc: (pc - key.tonic) % 12)
