"""The held voices: the layers as organ stops over each line, and the drone under each stanza.

**Layers.** An organ note is held through each line of words; the layers of the model are
grouped into ``stops`` (low layers low), and each stop is a control change whose value
follows how much its layers changed the residual stream for each word, each layer scaled
against its own calibration. **Drone.** The section's tonic (and fifth) is held through
each stanza; its level is a control change that follows ``level`` word by word. Both end at
a stanza break, so the silence is a silence.
"""

from __future__ import annotations

import numpy as np

from .part import Heard, Key, Mapped, Part
from .preset import Drone, Layers
from .score import Note
from .signals import Scaler


def stop_groups(n_layers: int, stops: int) -> list[np.ndarray]:
    """Layer indices of each stop: contiguous groups, low layers first."""
    return [g for g in np.array_split(np.arange(n_layers), min(stops, n_layers)) if g.size]


def _fold(offset: int) -> int:
    """A key offset as the nearest transposition (-6..5 semitones)."""
    return (offset + 6) % 12 - 6


class LayersPart(Part):
    name = "layers"

    def __init__(self, settings: Layers, tempo, out, calibration, key: Key, home: Key, layers: int):
        super().__init__(settings, tempo, out)
        self.v = settings
        self.calibration = calibration
        self.home = home
        self.key = key
        self.groups = stop_groups(max(layers, 1), settings.stops)
        self.scalers = [Scaler(settings.level, calibration, layer=j) for j in range(max(layers, 1))]
        self.values: list[int | None] = [None] * len(self.groups)
        self.held: Note | None = None

    @property
    def controllers(self) -> tuple[int, ...]:
        return tuple(range(self.v.controller, self.v.controller + len(self.groups)))

    def stanza_start(self, at: float, key: Key) -> None:
        self.key = key

    def word(self, heard: Heard) -> None:
        values = heard.layer_signal(self.v.level.signal)
        if values.size == 0:
            return  # no layer telemetry: the organ rests (its fallback)
        token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
        if self.held is None:
            pitch = self.v.pitch + _fold(self.key.tonic - self.home.tonic)
            self.held = self.begin(heard.time, pitch, self.v.velocity, token)
        scaled = np.array([self.scalers[min(j, len(self.scalers) - 1)](float(x), heard.mode) for j, x in enumerate(values)])
        for s, group in enumerate(self.groups):
            inside = group[group < scaled.size]
            if not inside.size:
                continue
            # Clamped, then rounded half to even as np.rint does; Python's own min, max and
            # round leave no numpy object behind (each one kept would pin freed memory).
            value = round(min(max(float(scaled[inside].mean()), 0.0), 127.0))
            if value != self.values[s]:
                self.control(heard.time, self.v.controller + s, value, token)
                self.values[s] = value

    def line_end(self, at: float, rest: float) -> None:
        if self.held is not None:
            self.end(self.held, at + rest)
            self.held = None

    def stanza_end(self, at: float) -> None:
        if self.held is not None:
            self.end(self.held, at)
            self.held = None


class DronePart(Part):
    name = "drone"

    def __init__(self, settings: Drone, tempo, out, calibration, key: Key):
        super().__init__(settings, tempo, out)
        self.v = settings
        self.level = Mapped(settings.level, calibration)
        self.key = key
        self.held: list[Note] = []
        self.value: int | None = None

    def stanza_start(self, at: float, key: Key) -> None:
        self.key = key

    def _start(self, heard: Heard) -> None:
        tonic = (self.v.octave + 1) * 12 + self.key.tonic
        token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
        for pitch in [tonic, tonic + 7] if self.v.fifth else [tonic]:
            opened = self.begin(heard.time, pitch, self.v.velocity, token)
            if opened is not None:
                self.held.append(opened)

    def word(self, heard: Heard) -> None:
        if not self.held:
            self._start(heard)
        level = self.level(heard)
        if level is None:
            return
        value = int(np.clip(round(level), 0, 127))
        if value != self.value:
            token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
            self.control(heard.time, self.v.controller, value, token)
            self.value = value

    def stanza_end(self, at: float) -> None:
        for note in self.held:
            self.end(note, at)
        self.held = []
