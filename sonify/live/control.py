"""Steering a performance from a MIDI controller (``sonify play --control-in PORT``).

The preset's ``[controls]`` table binds incoming control changes and notes to parameters
(``sonify.music.controls``). ``Steering`` holds their current values, set from the input
port's thread and read by the others: the model asks it for the sampler settings before
each token, the model's thread waits while ``hold`` is on, and each note's velocity is
decided when the note is sent, so a mute or a gain is heard at once on notes already
scheduled. ``tempo`` scales the preset's tempo for the music not yet mapped, and a
``preset`` switch waits for the player to make it at the next bar line. Each change is
passed to the listeners (the terminal view, OSC).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import replace

from ..model.sampling import SamplerSettings
from ..music.controls import Binding
from ..music.preset import Preset
from ..music.score import Note


class Steering:
    """The parameters a controller moves, with the preset's ``bindings`` and the sampler
    settings the performance starts with (None: the model is not sampling)."""

    def __init__(self, bindings: tuple[Binding, ...], sampler: SamplerSettings | None = None):
        self.bindings = {(b.kind, b.number): b for b in bindings}
        self.sampler = sampler
        self.holding = False
        self.muted: set[str] = set()
        self.gains: dict[str, float] = {}  # voice -> dB
        self.tempo = 1.0  # the preset's tempo times this
        self.preset = ""  # the preset playing (set by the player)
        self.next_preset: str | None = None  # asked for, to start at the next bar line
        self.presets: dict[str, Preset] = {}  # the presets the bindings switch to, by name (loaded by the caller)
        self.received = 0  # messages that moved a parameter
        self.listeners: list[Callable[[str, float | str], None]] = []
        self._lock = threading.Lock()
        self.port = None

    def listen(self, port) -> None:
        """Read messages from ``port``, an input from ``open_input`` (opened without a callback)."""
        self.port = port
        port.callback = self.receive

    def receive(self, message, at: float | None = None) -> None:
        """One incoming message (``at``: its arrival, unused): a bound control change or note moves its parameter."""
        if message.type == "control_change":
            binding, raw = self.bindings.get(("cc", message.control)), message.value
        elif message.type == "note_on" and message.velocity > 0:
            binding, raw = self.bindings.get(("note", message.note)), 127
        elif message.type in ("note_off", "note_on"):
            binding, raw = self.bindings.get(("note", message.note)), 0
            if binding is not None and binding.switch:
                return  # a note toggles a switch on its press
        else:
            return
        if binding is None:
            return
        if binding.param == "preset":
            if raw or binding.kind == "cc":
                self.set("preset", binding.preset(raw))
            return
        if binding.kind == "note" and binding.switch:
            value = 0.0 if self.value(binding.param) else 1.0
        else:
            value = binding.value(raw)
        self.set(binding.param, value)

    def set(self, param: str, value: float | str) -> None:
        """Move ``param`` ("temperature", "top_p", "tempo", "hold", "mute.<voice>", "gain.<voice>")
        to ``value``, or ask for the preset named ``value`` ("preset") at the next bar line."""
        with self._lock:
            base, _, voice = param.partition(".")
            if base == "preset":
                if value == (self.next_preset or self.preset):
                    return  # a knob moving within one preset's share of its travel
                self.next_preset = str(value)
                param = "preset.next"
            elif isinstance(value, str):
                raise TypeError(f"{param} takes a number")
            elif base == "tempo":
                self.tempo = value
            elif base == "temperature" and self.sampler is not None:
                self.sampler = replace(self.sampler, temperature=value)
            elif base == "top_p" and self.sampler is not None:
                self.sampler = replace(self.sampler, top_p=max(value, 1e-3))
            elif base == "hold":
                self.holding = value >= 0.5
            elif base == "mute":
                (self.muted.add if value >= 0.5 else self.muted.discard)(voice)
            elif base == "gain":
                self.gains[voice] = value
            self.received += 1
            listeners = list(self.listeners)
        for listener in listeners:
            listener(param, value)

    def take_preset(self) -> str | None:
        """For the player: the preset asked for since the last call (None: none)."""
        with self._lock:
            name, self.next_preset = self.next_preset, None
            return name

    def switched(self, name: str) -> None:
        """The player has switched to the preset ``name`` (at a bar line, now)."""
        with self._lock:
            self.preset = name
            listeners = list(self.listeners)
        for listener in listeners:
            listener("preset", name)

    def value(self, param: str) -> float:
        """The current value of ``param`` (nan for a sampler setting when nothing samples)."""
        base, _, voice = param.partition(".")
        with self._lock:
            if base == "tempo":
                return self.tempo
            if base in ("temperature", "top_p"):
                return getattr(self.sampler, base) if self.sampler is not None else math.nan
            if base == "hold":
                return float(self.holding)
            if base == "mute":
                return float(voice in self.muted)
            return self.gains.get(voice, 0.0)

    def steer(self, current: SamplerSettings) -> SamplerSettings:
        """For ``Engine.generate``: the settings to sample the next token with."""
        return self.sampler or current

    def velocity(self, note: Note) -> int:
        """The velocity ``note`` is sent with now: 0 if its voice is muted, else scaled by its gain."""
        with self._lock:
            if note.voice in self.muted:
                return 0
            db = self.gains.get(note.voice, 0.0)
        if db == 0.0:
            return note.velocity
        return min(max(round(note.velocity * 10 ** (db / 20.0)), 1), 127)

    def describe(self) -> str:
        """One line for the terminal view: the parameters as they are now."""
        with self._lock:
            parts = []
            if self.sampler is not None:
                parts.append(f"temp {self.sampler.temperature:.2f}")
                if any(b.param == "top_p" for b in self.bindings.values()):
                    parts.append(f"top-p {self.sampler.top_p:.2f}")
            if self.tempo != 1.0:
                parts.append(f"tempo {self.tempo:.2f}x")
            if self.next_preset is not None:
                parts.append(f"{self.preset} → {self.next_preset} at the bar")
            elif any(b.param == "preset" for b in self.bindings.values()):
                parts.append(self.preset)
            if self.holding:
                parts.append("HOLD")
            parts += [f"{v} muted" for v in sorted(self.muted)]
            parts += [f"{v} {db:+.0f} dB" for v, db in sorted(self.gains.items()) if v not in self.muted]
        return " · ".join(parts)

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
