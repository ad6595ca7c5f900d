"""What the voices share: the word or run of art being placed, the key it sounds in, and a
base class that turns pitches and times into the Score's notes and controls.

A voice (a ``Part``) hears the text unit by unit, in order, with its time already placed,
and writes events into a Release: notes whose end is known, notes it opens now and closes
later (a chord held across words, a drone held through a stanza), and control changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..model.frame import Frame
from .preset import Voice
from .scales import key_pitch_class, scale_pitches
from .score import Control, Note, Placed, Release, TempoMap
from .signals import SIGNALS, Scaler, unit_layer_signal, unit_signal

# Which telemetry each signal needs: a source without it (a remote server) leaves the signal out.
GROUPS = {name: "attention" for name in SIGNALS if name.startswith("attention_")}
GROUPS |= {"residual_norm": "layers", "update_norm": "layers", "layer_update": "layers", "layer_norm": "layers"}
GROUPS |= {"layer_attention_entropy": "attention", "layer_attention_distance": "attention"}
GROUPS |= {f"embedding_{axis}": "embedding" for axis in "xyz"}


def absent_groups(frames: list[Frame]) -> set[str]:
    """The telemetry groups these frames lack (``Frame.absent``, where a source declares it)."""
    out: set[str] = set()
    for f in frames:
        out.update(getattr(f, "absent", ()) or ())
    return out


@dataclass
class Heard:
    """One unit of the text as the voices hear it: where it sounds, its frames and signals."""

    placed: Placed
    frames: list[Frame]
    ends_line: bool = False
    _cache: dict[str, float] = field(default_factory=dict)
    _absent: set[str] | None = None

    @property
    def time(self) -> float:
        return self.placed.time

    @property
    def duration(self) -> float:
        return self.placed.duration

    @property
    def mode(self) -> str:
        """"read" or "generated": whose words these were, which picks the calibration's table."""
        return self.frames[0].mode if self.frames else "read"

    @property
    def absent(self) -> set[str]:
        if self._absent is None:
            self._absent = absent_groups(self.frames)
        return self._absent

    def has(self, signal: str) -> bool:
        """Whether the unit's source gave the telemetry ``signal`` needs."""
        return GROUPS.get(signal) not in self.absent

    def signal(self, name: str) -> float:
        if name not in self._cache:
            self._cache[name] = unit_signal(self.frames, name) if self.has(name) else math.nan
        return self._cache[name]

    def layer_signal(self, name: str) -> np.ndarray:
        return unit_layer_signal(self.frames, name) if self.has(name) else np.zeros(0)


class Mapped:
    """A mapping made ready: a constant, or a Scaler reading its signal from each unit.

    Where the unit lacks the signal (its source has no such telemetry), the mapping's
    ``fallback`` signal stands in, by its own calibrated rank; ``"rest"`` returns None."""

    def __init__(self, value, calibration, span: bool = False):
        self.value = value
        self.scaler = None if isinstance(value, int | float) else Scaler(value, calibration, span=span)
        self.fallback = None
        if self.scaler is not None and value.fallback not in (None, "rest"):
            from .signals import Scaling

            fallback = Scaling(value.fallback, "quantile", ("5%", "95%"), value.range, value.curve)
            self.fallback = Scaler(fallback, calibration, span=span)

    @property
    def signal(self) -> str | None:
        return None if self.scaler is None else self.value.signal

    def __call__(self, heard: Heard) -> float | None:
        if self.scaler is None:
            return float(self.value)
        if heard.has(self.value.signal):
            return self.scaler(heard.signal(self.value.signal), heard.mode)
        if self.fallback is not None:
            return self.fallback(heard.signal(self.value.fallback), heard.mode)
        return None if self.value.fallback == "rest" else self.scaler(math.nan, heard.mode)

    def of_value(self, value: float, mode: str = "read") -> float:
        """The parameter for a value given directly (an alternative's signal, a mean)."""
        return float(self.value) if self.scaler is None else self.scaler(value, mode)


@dataclass
class Key:
    """The key a section plays in: tonic pitch class and scale."""

    tonic: int
    scale: str

    @property
    def name(self) -> str:
        from .scales import NOTE_NAMES

        return NOTE_NAMES[self.tonic]

    def pitches(self, low: int, high: int, chromatic: bool = False) -> np.ndarray:
        return scale_pitches(self.name, "chromatic" if chromatic else self.scale, max(low, 0), min(high, 127))


def home_key(key: str, scale: str) -> Key:
    return Key(key_pitch_class(key), scale)


class Part:
    """A voice of the mapping. Subclasses override the hooks they need."""

    name = "voice"

    def __init__(self, settings: Voice, tempo: TempoMap, out: Callable[[], Release]):
        self.settings = settings
        self.tempo = tempo
        self._out = out
        self.open: dict[tuple[int, int], Note] = {}  # (pitch, order) -> opened note

    @property
    def out(self) -> Release:
        return self._out()

    def note(self, start: float, duration: float, pitch: int, velocity: int, token: int) -> Note:
        beat = self.tempo.beats(start)
        return Note(
            time=float(start),
            duration=float(max(duration, 0.0)),
            beat=beat,
            beats=self.tempo.beats(start + max(duration, 0.0)) - beat,
            pitch=int(pitch),
            velocity=int(min(max(round(velocity), 1), 127)),
            voice=self.name,
            channel=self.settings.channel - 1,
            token=int(token),
        )

    def play(self, start: float, duration: float, pitch: int, velocity: float, token: int) -> None:
        """A note whose end is known now."""
        if 0 <= pitch <= 127 and duration > 0:
            self.out.notes.append(self.note(start, duration, pitch, round(velocity), token))

    def begin(self, start: float, pitch: int, velocity: float, token: int) -> Note | None:
        """Open a note whose end is not known yet; ``end`` closes it."""
        if not 0 <= pitch <= 127:
            return None
        opened = self.note(start, 0.0, pitch, round(velocity), token)
        self.out.opened.append(opened)
        return opened

    def end(self, opened: Note, at: float) -> None:
        self.out.closed.append(self.note(opened.time, max(at - opened.time, 1e-3), opened.pitch, opened.velocity, opened.token))

    def control(self, at: float, controller: int, value: int, token: int) -> None:
        self.out.controls.append(
            Control(float(at), self.tempo.beats(at), controller, int(value), self.name, self.settings.channel - 1, int(token))
        )

    # Hooks, in the order the text gives them.
    def word(self, heard: Heard) -> None: ...

    def art(self, heard: Heard) -> None: ...

    def line_end(self, at: float, rest: float) -> None: ...

    def stanza_end(self, at: float) -> None: ...

    def stanza_start(self, at: float, key: Key) -> None: ...

    def finish(self, at: float) -> None:
        self.stanza_end(at)

