"""The legend of a preset: which signal drives which musical parameter, in words and in the
signal's own units for a given model (its calibration turns "5%" into a number of nats)."""

from __future__ import annotations

from .calibration import Calibration, shipped_calibration
from .preset import Preset, Voice
from .scales import pitch_name
from .signals import ALTERNATIVE_SIGNALS, LAYER_SIGNALS, SIGNALS, Scaler, Scaling
from .timing import silence_seconds

_DESCRIPTIONS = {name: d for name, (_, _, d) in SIGNALS.items()}
_DESCRIPTIONS |= {name: d for name, (_, d) in LAYER_SIGNALS.items()} | ALTERNATIVE_SIGNALS
_UNITS = {name: unit for name, (_, unit, _) in SIGNALS.items()} | {"alt_gap": "nats"}

VOICE_ROLES = {
    "melody": "the words themselves",
    "ghosts": "the alternatives the model passed over",
    "harmony": "the model's uncertainty and attention, as chords",
    "layers": "each layer's work, as organ stops",
    "drone": "the residual stream, held under each stanza",
    "texture": "runs of art (box drawing, rules, ASCII art)",
}


def _number(x: float) -> str:
    return f"{x:.3g}"


def _limits(s: Scaling, calibration: Calibration | None, layer: bool) -> str:
    unit = _UNITS.get(s.signal, "")
    unit = f" {unit}" if unit else ""
    if s.rolling:
        return f"{s.limits[0]}..{s.limits[1]} of the last {s.window} words (rolling: re-scales as the text goes on)"
    if s.transform == "quantile":
        return f"its rank among this model's words, {s.limits[0]}..{s.limits[1]}"
    values = Scaler(s, calibration, layer=0 if layer else None).describe_limits() if calibration is not None else None
    parts = []
    for raw, value in zip(s.limits, values or (None, None)):
        if isinstance(raw, str) and value is not None:
            parts.append(f"{_number(value)}{unit if not layer else ''} ({raw})")
        else:
            parts.append(f"{_number(float(raw)) if not isinstance(raw, str) else raw}{unit}")
    transform = "" if s.transform == "linear" else f"{s.transform} of "
    where = " of each layer's own calibration" if layer else ""
    return f"{transform}{parts[0]} to {parts[1]}{where}"


def _value(x: float, pitch: bool) -> str:
    return pitch_name(round(x)) if pitch else f"{x:g}"


def describe(
    param: str, value: Scaling | float, calibration: Calibration | None, unit: str = "", pitch: bool = False
) -> str:
    """One line: ``param ← signal (units): what it means; limits → range``."""
    if not isinstance(value, Scaling):
        return f"  {param:9s} = {_value(value, pitch)}{unit} (fixed)"
    lo, hi = value.range
    layer = value.signal in LAYER_SIGNALS
    curve = "" if value.curve == 1 else f", curve {value.curve:g}"
    line = (
        f"  {param:9s} ← {value.signal}: {_DESCRIPTIONS[value.signal]}\n"
        f"              {_limits(value, calibration, layer)} → {_value(lo, pitch)}..{_value(hi, pitch)}{unit}{curve}"
    )
    if value.fallback is not None:
        line += (
            "\n              without it (a remote model): "
            + ("the voice rests" if value.fallback == "rest" else f"follows {value.fallback} by its rank")
        )
    return line


def _header(name: str, v: Voice) -> str:
    return f"{name}: {VOICE_ROLES[name]} ({v.instrument}; MIDI channel {v.channel}, program {v.program})"


def explain(preset: Preset, calibration: Calibration | None = None, absent: tuple[str, ...] = ()) -> str:
    """The whole legend of ``preset`` as text, with limits in the units of ``calibration``'s
    model (default: the shipped model). ``absent`` names telemetry groups the source lacks
    (a remote server: attention, layers, embedding), so the legend says what stands in."""
    calibration = calibration or shipped_calibration()
    m, t, vs = preset.music, preset.timing, preset.voices
    lines = [f"{preset.name}: {preset.description}", ""]
    lines.append(
        f"{m.key} {m.scale.replace('_', ' ')}, {m.tempo:g} bpm, {m.time_signature[0]}/{m.time_signature[1]}. "
        f"Limits in this model's units ({calibration.model}, measured over {calibration.words} words), "
        "for words it reads (words it writes have tables of their own)."
    )
    lines.append("")
    lines.append(
        f"Time: the word is the unit, at {t.words_per_minute:g} words a minute over the whole piece "
        f"({m.tempo / t.words_per_minute:.2f} beats a word on a grid of {t.step:g} beat"
        + (", longer words longer" if t.word_length == "letters" else "")
        + "); a word's tokens share its time, tokens that decode to nothing take none."
    )
    lines.append(describe("linger", t.linger, calibration, " beats"))
    lines.append(
        f"  a line end: the melody settles, then {t.line_rest:g} beats' rest; a blank line: every voice "
        f"releases and {silence_seconds(preset):.1f} s of silence; the end: {t.end_rest:g} beats."
    )
    lines.append(
        f"  runs of art (box drawing, rules, ASCII art): {t.art_beats_per_char:g} beats a character, "
        f"at most {t.art_max_beats:g} a line. Rests, silences, art and lingering are paid back by the words after."
    )
    keys = ", ".join(f"{k:+d}" for k in preset.form.section_keys)
    lines.append(f"  a heading opens a section; sections move the key by {keys} semitones in turn.")
    lines.append("")
    if vs.melody.enabled:
        v = vs.melody
        lines.append(_header("melody", v))
        lines.append(
            f"  one note per word{' (a figure, a note per token, within a third)' if v.figure == 'tokens' else ''}, "
            f"in {pitch_name(v.register[0])}..{pitch_name(v.register[1])}"
            + (" on every semitone" if v.chromatic else f" on the section's {m.scale.replace('_', ' ')} scale")
        )
        lines.append(describe("leap", v.leap, calibration, " steps"))
        contour = "alternately up and down" if v.contour == "alternate" else f"up when {v.contour} rose since the last word"
        lines.append(f"  the line moves {contour}, turning back before the edges" + ("; a line ends on a stable degree" if v.settle else ""))
        lines.append(describe("velocity", v.velocity, calibration))
        if v.gate is not None:
            lines.append(f"  only words whose {v.gate[0]} is at least {v.gate[1]} sound")
    if vs.ghosts.enabled:
        v = vs.ghosts
        lines.append(_header("ghosts", v))
        lines.append(
            f"  up to {v.count} alternatives per word, those within {v.max_gap:g} nats of the chosen token, "
            "never more ghosts than melody notes"
        )
        lines.append(describe("distance", v.distance, calibration, " steps"))
        lines.append(describe("softer", v.softer, calibration, " x the melody note's velocity"))
    if vs.harmony.enabled:
        v = vs.harmony
        lines.append(_header("harmony", v))
        lines.append(f"  a chord every {v.beats:g} beats from the mean of the words since the last; common tones held")
        lines.append(describe("tension", v.tension, calibration, " (0 I, 1 vi, 2 IV, 3 ii, 4 V, 5 vii)"))
        lines.append(describe("spread", v.spread, calibration, " (2 notes over a fourth .. 5 over two octaves)"))
        lines.append(describe("velocity", v.velocity, calibration))
    if vs.layers.enabled:
        v = vs.layers
        lines.append(_header("layers", v))
        lines.append(f"  a held {pitch_name(v.pitch)} per line; layers grouped into up to {v.stops} stops, low layers low,")
        lines.append(f"  stop k on CC {v.controller}+k (in the synth: the k-th partial of the organ)")
        lines.append(describe("level", v.level, calibration))
    if vs.drone.enabled:
        v = vs.drone
        lines.append(_header("drone", v))
        lines.append(f"  the section's tonic in octave {v.octave}" + (" with its fifth" if v.fifth else "") + f", CC {v.controller}:")
        lines.append(describe("level", v.level, calibration))
    if vs.texture.enabled:
        v = vs.texture
        lines.append(_header("texture", v))
        lines.append(f"  up to {v.notes} soft notes per run in {pitch_name(v.register[0])}..{pitch_name(v.register[1])}, from its characters")
    if absent:
        lines.append("")
        lines.append(f"This source has no {', '.join(absent)} telemetry: each mapping above says what it does without it.")
    return "\n".join(lines)
