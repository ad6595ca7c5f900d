"""The ``[controls]`` table of a preset: which incoming MIDI message steers which parameter
while ``sonify play --control-in PORT`` plays.

A key names the message, ``cc<N>`` (control change N, 0..127, any channel) or ``note<N>``
(note N, any channel); its value names the parameter, as a string (``"temperature"``) or
a table with the range the message's 0..127 spans (``{ param = "temperature", range = [0.2, 1.5] }``).
A note sets a parameter to the top of its range while held; a note bound to a switch
(``hold``, ``mute.<voice>``) toggles it instead. ``preset`` switches to another preset at
the next bar line: a note to the one it names (``{ param = "preset", preset = "pulse" }``),
a control change to one of a list, its 0..127 spread over them
(``{ param = "preset", presets = ["default", "pulse"] }``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .schema import PresetError, describe_value

# Parameter -> (default range, unit): the message's 0..127 is spread over the range.
CONTINUOUS = {
    "temperature": ((0.0, 2.0), ""),  # sampling temperature (0: always the most likely token)
    "top_p": ((0.05, 1.0), ""),  # nucleus sampling
    "gain": ((-40.0, 6.0), " dB"),  # gain.<voice>: the voice's notes' velocity, scaled by this gain
    "tempo": ((0.5, 2.0), "x"),  # the preset's tempo (and so its pace of words) times this
}
SWITCHES = ("hold", "mute")  # on at 64 and above (a note toggles)


@dataclass(frozen=True)
class Binding:
    """One incoming message and the parameter it moves: ``kind`` "cc" or "note", its
    ``number``, the ``param`` ("temperature", "top_p", "hold", "mute.melody", "gain.drone")
    and the ``range`` its 0..127 spans (switches: (0, 1))."""

    kind: str
    number: int
    param: str
    range: tuple[float, float]
    presets: tuple[str, ...] = ()  # ``preset``: the presets it switches to

    def preset(self, raw: int) -> str:
        """For a ``preset`` binding: the preset the message's 0..127 chooses."""
        return self.presets[min(max(raw, 0), 127) * len(self.presets) // 128]

    @property
    def switch(self) -> bool:
        return self.param.split(".")[0] in SWITCHES

    def value(self, raw: int) -> float:
        """The parameter's value for the message's 0..127."""
        if self.switch:
            return 1.0 if raw >= 64 else 0.0
        lo, hi = self.range
        return lo + (hi - lo) * min(max(raw, 0), 127) / 127.0


def controls_table(voice_names: tuple[str, ...]):
    """The check of a preset's ``[controls]`` table: a tuple of ``Binding``."""
    params = ["temperature", "top_p", "hold", *(f"mute.{v}" for v in voice_names), *(f"gain.{v}" for v in voice_names), "tempo", "preset"]

    def check(data: Any, path: tuple[str, ...]) -> tuple[Binding, ...]:
        if not isinstance(data, dict):
            raise PresetError(path, f"{describe_value(data)} is not a table")
        out = []
        for key, value in data.items():
            where = path + (key,)
            kind = "cc" if key.startswith("cc") else "note" if key.startswith("note") else ""
            number = key[len(kind) :]
            if not kind or not number.isdigit() or not 0 <= int(number) <= 127:
                raise PresetError(where, "name a message as cc0..cc127 (control change) or note0..note127")
            if isinstance(value, dict):
                allowed = ("param", "preset") if kind == "note" else ("param", "presets")
                if value.get("param") != "preset":
                    allowed = ("param", "range")
                unknown = sorted(set(value) - set(allowed))
                if unknown:
                    raise PresetError(where + (unknown[0],), f"unknown key; allowed keys here: {', '.join(allowed)}")
                param, span = value.get("param"), value.get("range")
            else:
                param, span = value, None
            if param not in params:
                raise PresetError(where, f"{describe_value(param)} is no parameter; use one of {', '.join(params)}")
            base = param.split(".")[0]
            if base == "preset":
                out.append(Binding(kind, int(number), param, (0.0, 1.0), _presets(kind, value, where)))
                continue
            if base in SWITCHES:
                if span is not None:
                    raise PresetError(where + ("range",), f"{param} is on or off (64..127 on; a note toggles it): give no range")
                bounds = (0.0, 1.0)
            else:
                (low, high), unit = CONTINUOUS[base]
                bounds = (low, high) if span is None else _span(span, low, high, unit, where + ("range",))
            out.append(Binding(kind, int(number), param, bounds))
        return tuple(out)

    check.allowed = "cc<N> or note<N> = parameter"  # type: ignore[attr-defined]
    return check


def _span(span: Any, low: float, high: float, unit: str, where: tuple[str, ...]) -> tuple[float, float]:
    if (
        not isinstance(span, list)
        or len(span) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in span)
        or not all(low <= x <= high for x in span)
    ):
        raise PresetError(where, f"{describe_value(span)} is not two numbers in {low:g}..{high:g}{unit}")
    return float(span[0]), float(span[1])


def _presets(kind: str, value: Any, where: tuple[str, ...]) -> tuple[str, ...]:
    """The presets a ``preset`` binding switches to: a note's one, a control change's list."""
    key = "preset" if kind == "note" else "presets"
    names = value.get(key) if isinstance(value, dict) else None
    if kind == "note":
        names = [names] if isinstance(names, str) and names else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        example = 'preset = "pulse"' if kind == "note" else 'presets = ["default", "pulse"]'
        raise PresetError(where, f'{kind}<N> = {{ param = "preset", {example} }}: name the preset{"s" if kind == "cc" else ""} it switches to')
    return tuple(names)
