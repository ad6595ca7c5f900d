"""The legend of a preset: which signal drives which musical parameter, in words."""

from __future__ import annotations

from .preset import Preset, Voice
from .scales import pitch_name
from .signals import ALTERNATIVE_SIGNALS, LAYER_SIGNALS, SCALAR_SIGNALS, Scaling

_DESCRIPTIONS = {name: d for name, (_, d) in SCALAR_SIGNALS.items()}
_DESCRIPTIONS |= {name: d for name, (_, d) in LAYER_SIGNALS.items()} | ALTERNATIVE_SIGNALS

VOICE_ROLES = {
    "melody": "the token itself",
    "ghosts": "the alternatives the model passed over",
    "harmony": "how attention spreads, as chords",
    "layers": "each layer's work, as organ stops",
    "drone": "the residual stream, held under everything",
}


def _limits(s: Scaling) -> str:
    lo, hi = s.limits
    if isinstance(lo, str) and isinstance(hi, str):
        where = f"{lo}..{hi} of the last {s.window} tokens"
    else:
        where = f"{lo}..{hi}" + (
            f" (percentiles over the last {s.window} tokens)" if isinstance(lo, str) or isinstance(hi, str) else ""
        )
    transform = "" if s.transform == "linear" else f"{s.transform}, "
    return f"{transform}{where}"


def _value(x: float, pitch: bool) -> str:
    return pitch_name(round(x)) if pitch else f"{x:g}"


def describe(param: str, value: Scaling | float, unit: str = "", pitch: bool = False) -> str:
    """One line: ``param ← signal: what it means; rises/falls with it, range (limits)``."""
    if not isinstance(value, Scaling):
        return f"  {param:9s} = {_value(value, pitch)}{unit} (fixed)"
    lo, hi = value.range
    direction = "rises" if hi > lo else "falls" if hi < lo else "stays"
    return (
        f"  {param:9s} ← {value.signal}: {_DESCRIPTIONS[value.signal]}; {direction} with it, "
        f"{_value(lo, pitch)}..{_value(hi, pitch)}{unit} ({_limits(value)})"
    )


def _header(name: str, v: Voice) -> str:
    return f"{name}: {VOICE_ROLES[name]} ({v.instrument}; MIDI channel {v.channel}, program {v.program})"


def explain(preset: Preset) -> str:
    """The whole legend of ``preset`` as text."""
    m, t, vs = preset.music, preset.timing, preset.voices
    lines = [f"{preset.name}: {preset.description}", ""]
    lines.append(f"{m.key} {m.scale.replace('_', ' ')}, {m.tempo:g} bpm, {m.time_signature[0]}/{m.time_signature[1]}.")
    if t.mode == "grid":
        lines.append(
            f"Time: each token takes {t.step:g} beat on the grid; a line break rests {t.newline_rest:g} beats, the end {t.end_rest:g}."
        )
        lines.append(describe("linger", t.linger, " extra steps"))
    else:
        lines.append(
            f"Time: reading pace, {t.words_per_minute:g} words a minute (longer tokens last longer, at least {t.min_token:g} s); "
            f"a line break rests {t.newline_rest:g} s, the end {t.end_rest:g} s."
        )
        lines.append(describe("linger", t.linger, " s extra"))
    lines.append("")
    if vs.melody.enabled:
        v = vs.melody
        lines.append(_header("melody", v))
        lines.append(
            describe("pitch", v.pitch, pitch=True)
            + (" on every semitone" if v.chromatic else f" on {m.key} {m.scale.replace('_', ' ')}")
        )
        lines.append(describe("velocity", v.velocity))
        lines.append(describe("length", v.length, " x the token's time"))
        if v.gate is not None:
            lines.append(f"  only tokens whose {v.gate[0]} is at least {v.gate[1]} sound")
        if not v.whitespace:
            lines.append("  spaces, punctuation and line breaks are silent")
    if vs.ghosts.enabled:
        v = vs.ghosts
        lines.append(_header("ghosts", v))
        lines.append(
            f"  up to {v.count} alternatives per token, those with probability ≥ {v.min_probability:g}, each {v.strum:g} of a token later"
        )
        lines.append(describe("pitch", v.pitch, pitch=True))
        lines.append(describe("velocity", v.velocity))
    if vs.harmony.enabled:
        v = vs.harmony
        lines.append(_header("harmony", v))
        lines.append(f"  one chord every {v.every} tokens, from the mean of their signals; notes {v.stack} scale steps apart")
        lines.append(describe("notes", v.notes, " notes"))
        lines.append(describe("root", v.root, pitch=True))
        lines.append(describe("velocity", v.velocity))
    if vs.layers.enabled:
        v = vs.layers
        lines.append(_header("layers", v))
        lines.append(f"  a held {pitch_name(v.pitch)} per phrase; layers grouped into up to {v.stops} stops, low layers low,")
        lines.append(f"  stop k on CC {v.controller}+k (in the synth: the k-th partial of the organ)")
        lines.append(describe("level", v.level))
    if vs.drone.enabled:
        v = vs.drone
        lines.append(_header("drone", v))
        lines.append(f"  the tonic in octave {v.octave}" + (" with its fifth" if v.fifth else "") + f", CC {v.controller}:")
        lines.append(describe("level", v.level))
    return "\n".join(lines)
