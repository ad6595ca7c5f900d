"""The ghosts: the words the model nearly chose, as soft shadows of the melody note.

At a word's first token the model weighed alternatives. Close competitors sound — those
whose log-probability lay within ``max_gap`` nats of the chosen token's, at most ``count``
of them: a closer one nearer the melody note (``distance``, in scale steps; the first above,
the next below), and always softer than the note it shadows (``softer``). A budget keeps
them shadows: over a piece there are never more ghost notes than melody notes.
"""

from __future__ import annotations

from .melody import MelodyPart
from .part import Heard, Mapped, Part
from .preset import Ghosts
from .signals import alternatives

MOST_SAVED = 3.0  # unused budget carried forward, at most (so quiet stretches do not store up a burst)


class GhostPart(Part):
    name = "ghosts"

    def __init__(self, settings: Ghosts, tempo, out, calibration, melody: MelodyPart):
        super().__init__(settings, tempo, out)
        self.v = settings
        self.melody = melody
        self.distance = Mapped(settings.distance, calibration)
        self.softer = Mapped(settings.softer, calibration)
        self.budget = 0.0

    def word(self, heard: Heard) -> None:
        pitch = self.melody.last_pitch
        if pitch is None or not heard.frames:
            return
        self.budget = min(self.budget + 1.0, MOST_SAVED)
        close = [a for a in alternatives(heard.frames[0], self.v.count) if a.gap <= self.v.max_gap]
        grid = self.melody.key.pitches(self.v_low, self.v_high)
        center = int(grid.searchsorted(pitch))
        token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
        for j, alternative in enumerate(close):
            if self.budget < 1.0:
                break
            self.budget -= 1.0
            steps = int(round(self.distance.of_value(alternative.signal(self.distance.signal or "alt_gap"), heard.mode)))
            at = min(max(center + (steps if j % 2 == 0 else -steps), 0), len(grid) - 1)
            share = self.softer.of_value(alternative.signal(self.softer.signal or "alt_gap"), heard.mode)
            velocity = min(self.melody.last_velocity * share, self.melody.last_velocity - 1)
            start = heard.time + (j + 1) * self.v.strum * heard.duration
            self.play(start, self.v.length * heard.duration, int(grid[at]), max(velocity, 1), token)

    @property
    def v_low(self) -> int:
        return max(self.melody.v.register[0] - 12, 0)

    @property
    def v_high(self) -> int:
        return min(self.melody.v.register[1] + 12, 127)

