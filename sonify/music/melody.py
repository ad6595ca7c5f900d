"""The melody: one note per word (or a short figure), a line one can sing.

The line walks the scale inside the preset's register. Each word moves it by a number of
scale steps from the last note: predictable words repeat or step, a surprising word leaps,
farther the more surprising it is (``leap``). Which way is set by ``contour`` (up when that
signal rose since the word before), except that the line turns back rather than leave its
register, and never stands on the register's very edge. A line of text ends on a stable
degree (tonic, third or fifth), so each line closes as a phrase. Each stanza starts on the
tonic in the middle of the register, so a stanza's melody does not depend on what came
before it.
"""

from __future__ import annotations

import math

from .part import Heard, Key, Mapped, Part
from .preset import Melody
from .signals import Scaler, Scaling

MARGIN = 1  # scale steps kept free at each edge of the register
ZONE = 3  # within this many steps of the free edge, the line only turns inward
STABLE = (0, 3, 4, 7)  # semitones above the tonic that close a phrase: tonic, thirds, fifth


class MelodyPart(Part):
    name = "melody"

    def __init__(self, settings: Melody, tempo, out, calibration, key: Key):
        super().__init__(settings, tempo, out)
        self.v = settings
        self.leap = Mapped(settings.leap, calibration)
        self.velocity = Mapped(settings.velocity, calibration)
        self.gate = None
        if settings.gate is not None:
            signal, above = settings.gate
            self.gate = (signal, Scaler(Scaling(signal, limits=(above, above), range=(0.0, 1.0)), calibration))
        self.last_pitch: int | None = None
        self.last_velocity = 0
        self.stanza_start(0.0, key)

    def stanza_start(self, at: float, key: Key) -> None:
        self.key = key
        lo, hi = self.v.register
        self.grid = key.pitches(lo, hi, self.v.chromatic)
        middle = (lo + hi) / 2.0
        tonics = [i for i, p in enumerate(self.grid) if (p - key.tonic) % 12 == 0 and MARGIN <= i < len(self.grid) - MARGIN]
        self.index = min(tonics, key=lambda i: abs(self.grid[i] - middle)) if tonics else len(self.grid) // 2
        self.previous_contour: float | None = None
        self.direction = 1
        self.first = True  # the stanza's first word sounds its home note

    def _direction(self, heard: Heard) -> int:
        if self.v.contour == "alternate":
            self.direction = -self.direction
            return self.direction
        value = heard.signal(self.v.contour)
        if self.previous_contour is not None and math.isfinite(value) and value != self.previous_contour:
            self.direction = 1 if value > self.previous_contour else -1
        if math.isfinite(value):
            self.previous_contour = value
        return self.direction

    def step(self, heard: Heard) -> int | None:
        """The scale index of this word's note, moving the line on (None: no step to take)."""
        leap = self.leap(heard)
        if leap is None:
            return None
        direction = self._direction(heard)
        if self.first:
            self.first = False
            return self.index
        size = int(round(leap))
        top, bottom = len(self.grid) - 1 - MARGIN, MARGIN
        # Near an edge the line turns inward; a leap that would leave the register turns back.
        if size and (self.index + direction * size > top or direction > 0 and self.index >= top - ZONE):
            direction = -1
        elif size and (self.index + direction * size < bottom or direction < 0 and self.index <= bottom + ZONE):
            direction = 1
        self.direction = direction
        target = min(max(self.index + direction * size, bottom), top)
        if heard.ends_line and self.v.settle:
            target = self._settle(size, target)
        self.index = target
        return target

    def _settle(self, size: int, target: int) -> int:
        """The stable degree whose distance from the last note is nearest the leap's size
        (either way), the nearer to the planned note if two are as near."""
        stable = [i for i in range(MARGIN, len(self.grid) - MARGIN) if (self.grid[i] - self.key.tonic) % 12 in STABLE]
        if not stable:
            return target
        return min(stable, key=lambda i: (abs(abs(i - self.index) - size), abs(i - target), i))

    def gated(self, heard: Heard) -> bool:
        if self.gate is None:
            return False
        signal, threshold = self.gate
        value = heard.signal(signal)
        return not (math.isfinite(value) and value >= threshold.limits(heard.mode)[0])

    def word(self, heard: Heard) -> None:
        if self.gated(heard):
            self.last_pitch = None
            return
        index = self.step(heard)
        velocity = self.velocity(heard)
        if index is None or velocity is None:
            self.last_pitch = None
            return
        pitch = int(self.grid[index])
        token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
        self.last_pitch, self.last_velocity = pitch, int(round(velocity))
        if self.v.figure == "tokens" and len(heard.placed.tokens) > 1:
            self._figure(heard, index, velocity)
            return
        self.play(heard.time, heard.duration * self.v.length, pitch, velocity, token)

    def _figure(self, heard: Heard, index: int, velocity: float) -> None:
        """A note per token inside the word's time, stepping away and back within a third."""
        tokens = heard.placed.tokens
        span = heard.duration / len(tokens)
        shape = (0, 1, 2, 1)
        for j, token in enumerate(tokens):
            at = min(max(index + self.direction * shape[j % len(shape)], 0), len(self.grid) - 1)
            self.play(heard.time + j * span, span * self.v.length, int(self.grid[at]), velocity, token)

