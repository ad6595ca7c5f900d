"""Presets: TOML files that say how telemetry becomes music, validated into dataclasses.

``presets/default.toml`` defines and documents every key; a named preset overlays only
what it changes (tables merge key by key). The dataclasses below are the schema: each
field's metadata says what values it accepts, so validation, the error messages and
``sonify explain`` all read from one place. Errors name the file, line, key and the
allowed values.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, get_type_hints

from ..errors import SonifyError
from .scales import NOTE_NAMES, SCALES
from .signals import ALTERNATIVE_SIGNALS, LAYER_SIGNALS, SCALAR_SIGNALS, TRANSFORMS, Scaling
from .toml_lines import line_of

# The shipped presets are package data; a user's own come from SONIFY_PRESETS (folders
# separated like PATH) and ~/.config/sonify/presets, which shadow shipped ones of the same name.
BUILTIN_PRESETS: Traversable = importlib.resources.files(__package__) / "presets"
INSTRUMENTS = ("sine", "pluck", "keys", "pad", "bell", "organ", "drone", "pulse")
KEYS = NOTE_NAMES + ("Db", "Eb", "Gb", "Ab", "Bb")


class PresetError(SonifyError):
    """A preset value that is not allowed; ``path`` is its key path."""

    def __init__(self, path: tuple[str, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message


Check = Callable[[Any, tuple[str, ...]], Any]


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def number(lo: float, hi: float, unit: str = "", integer: bool = False) -> Check:
    def check(value: Any, path: tuple[str, ...]) -> float | int:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            raise PresetError(
                path, f"{_describe(value)} is not {'an integer' if integer else 'a number'}; allowed {lo}..{hi}{unit}"
            )
        if not (math.isfinite(value) and lo <= value <= hi):
            raise PresetError(path, f"{_describe(value)} is out of range; allowed {lo}..{hi}{unit}")
        return int(value) if integer else float(value)

    check.allowed = f"{lo}..{hi}{unit}"  # type: ignore[attr-defined]
    return check


def integer(lo: int, hi: int, unit: str = "") -> Check:
    return number(lo, hi, unit, integer=True)


def choice(options: tuple[str, ...] | list[str]) -> Check:
    def check(value: Any, path: tuple[str, ...]) -> str:
        if value not in options:
            raise PresetError(path, f"{_describe(value)} is not allowed; use one of {', '.join(options)}")
        return value

    check.allowed = " | ".join(options)  # type: ignore[attr-defined]
    return check


def boolean(value: Any, path: tuple[str, ...]) -> bool:
    if not isinstance(value, bool):
        raise PresetError(path, f"{_describe(value)} is not true or false")
    return value


boolean.allowed = "true | false"  # type: ignore[attr-defined]


def text(value: Any, path: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise PresetError(path, f"{_describe(value)} is not a string")
    return value


text.allowed = "text"  # type: ignore[attr-defined]


def pair(item: Check) -> Check:
    def check(value: Any, path: tuple[str, ...]) -> tuple:
        if not isinstance(value, list) or len(value) != 2:
            raise PresetError(path, f"{_describe(value)} is not a list of two values; allowed [{item.allowed}, {item.allowed}]")  # type: ignore[attr-defined]
        return (item(value[0], path), item(value[1], path))

    check.allowed = f"[{item.allowed}, {item.allowed}]"  # type: ignore[attr-defined]
    return check


def _limit(value: Any, path: tuple[str, ...]) -> float | str:
    if isinstance(value, str):
        body = value.strip()
        try:
            q = float(body[:-1]) if body.endswith("%") else math.nan
        except ValueError:
            q = math.nan
        if not 0.0 <= q <= 100.0:
            raise PresetError(path, f'{value!r} is not a percentile; write e.g. "5%" (0% to 100%) or a number')
        return f"{q:g}%"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PresetError(path, f'{_describe(value)} is not a limit; write a number or a percentile such as "95%"')
    return float(value)


def mapping(lo: float, hi: float, unit: str, signals: tuple[str, ...], constant: bool = True) -> Check:
    """A musical parameter: a constant, or a table {signal, transform, limits, range, window}."""
    allowed_keys = ("signal", "transform", "limits", "range", "window")
    bound = number(lo, hi, unit)

    def check(value: Any, path: tuple[str, ...]) -> Scaling | float:
        if not isinstance(value, dict):
            if constant:
                return bound(value, path)
            raise PresetError(path, f"{_describe(value)} is not a table; write {{ signal = ..., range = [...] }}")
        for key in value:
            if key not in allowed_keys:
                raise PresetError(path + (key,), f"unknown key; allowed keys here: {', '.join(allowed_keys)}")
        for key in ("signal", "range"):
            if key not in value:
                raise PresetError(path, f"the table has no {key!r}; a mapping needs signal and range")
        signal = choice(signals)(value["signal"], path + ("signal",))
        kind = choice(TRANSFORMS)(value.get("transform", "linear"), path + ("transform",))
        raw = value.get("limits", ["5%", "95%"])
        if not isinstance(raw, list) or len(raw) != 2:
            raise PresetError(path + ("limits",), f'{_describe(raw)} is not two limits; write e.g. ["5%", "95%"] or [0.0, 8.0]')
        limits = (_limit(raw[0], path + ("limits",)), _limit(raw[1], path + ("limits",)))
        if kind == "quantile" and any(isinstance(x, float) and not 0.0 <= x <= 1.0 for x in limits):
            raise PresetError(path + ("limits",), 'with transform "quantile" the limits are fractions in 0..1 or percentiles')
        out = pair(bound)(value["range"], path + ("range",))
        window = integer(1, 1_000_000, " tokens")(value.get("window", 256), path + ("window",))
        return Scaling(signal, kind, limits, out, window)

    check.allowed = f"{lo}..{hi}{unit} or {{ signal, transform, limits, range, window }}"  # type: ignore[attr-defined]
    return check


def gate(value: Any, path: tuple[str, ...]) -> tuple[str, float | str] | None:
    if value == "none":
        return None
    if not isinstance(value, dict) or set(value) != {"signal", "above"}:
        raise PresetError(path, f'{_describe(value)} is not a gate; write "none" or {{ signal = "surprisal", above = "80%" }}')
    return (choice(tuple(SCALAR_SIGNALS))(value["signal"], path + ("signal",)), _limit(value["above"], path + ("above",)))


gate.allowed = '"none" or { signal, above }'  # type: ignore[attr-defined]


def spec(check: Check, doc: str) -> Any:
    return field(metadata={"check": check, "doc": doc})


SCALARS = tuple(SCALAR_SIGNALS)
PITCH, VELOCITY, LENGTH = (0, 127, ""), (1, 127, ""), (0.01, 16, " x token length")


@dataclass(frozen=True)
class Music:
    key: str = spec(choice(KEYS), "the key's tonic")
    scale: str = spec(choice(tuple(SCALES)), "the scale (mode) every pitched voice uses")
    tempo: float = spec(number(20, 400, " bpm"), "quarter notes a minute")
    time_signature: tuple[int, int] = spec(pair(integer(1, 32)), "beats a bar and the note value of a beat")


@dataclass(frozen=True)
class Timing:
    mode: str = spec(choice(("grid", "reading")), "tokens on a musical grid, or at a human reading pace")
    step: float = spec(number(1 / 32, 16, " beats"), "grid: beats per token")
    words_per_minute: float = spec(number(20, 2000), "reading: pace of an ordinary word (six characters)")
    min_token: float = spec(number(0.0, 5.0, " s"), "reading: the shortest time a token lasts")
    linger: Scaling | float = spec(mapping(0, 64, "", SCALARS), "extra time a token takes: grid steps (rounded) or reading seconds")
    newline_rest: float = spec(number(0, 64), "silence at each line break: beats (grid) or seconds (reading)")
    end_rest: float = spec(number(0, 64), "silence at the end of the text: beats or seconds")


@dataclass(frozen=True)
class Voice:
    enabled: bool = spec(boolean, "whether the voice plays")
    channel: int = spec(integer(1, 16), "MIDI channel")
    program: int = spec(integer(0, 127), "General MIDI program (0 = Acoustic Grand Piano)")
    instrument: str = spec(choice(INSTRUMENTS), "the synthesizer's instrument")
    gain: float = spec(number(-60, 12, " dB"), "level in the mix")
    pan: float = spec(number(-1, 1), "stereo position, -1 left to 1 right")
    reverb: float = spec(number(0, 1), "reverb send")
    delay: float = spec(number(0, 1), "delay send")


@dataclass(frozen=True)
class Melody(Voice):
    pitch: Scaling | float = spec(mapping(*PITCH, SCALARS), "MIDI pitch, placed on the scale")
    velocity: Scaling | float = spec(mapping(*VELOCITY, SCALARS), "loudness (MIDI velocity)")
    length: Scaling | float = spec(mapping(*LENGTH, SCALARS), "note length as a share of the token's time")
    gate: tuple[str, float | str] | None = spec(gate, "sound only tokens whose signal is at or above this")
    whitespace: bool = spec(boolean, "whether tokens of only spaces and punctuation sound")
    chromatic: bool = spec(boolean, "play every semitone instead of the scale")


@dataclass(frozen=True)
class Ghosts(Voice):
    count: int = spec(integer(0, 20), "how many passed-over alternatives sound per token")
    pitch: Scaling | float = spec(mapping(*PITCH, tuple(ALTERNATIVE_SIGNALS)), "MIDI pitch of an alternative")
    velocity: Scaling | float = spec(mapping(*VELOCITY, tuple(ALTERNATIVE_SIGNALS)), "loudness of an alternative")
    length: float = spec(number(0.01, 16, " x token length"), "note length as a share of the token's time")
    strum: float = spec(number(0, 1, " x token length"), "delay between successive ghosts")
    min_probability: float = spec(number(0, 1), "alternatives less likely than this stay silent")


@dataclass(frozen=True)
class Harmony(Voice):
    every: int = spec(integer(1, 256, " tokens"), "tokens per chord; the chord follows their mean signals")
    notes: Scaling | float = spec(mapping(1, 12, " notes", SCALARS), "chord size (rounded)")
    root: Scaling | float = spec(mapping(*PITCH, SCALARS), "MIDI pitch of the chord's lowest note, placed on the scale")
    stack: int = spec(integer(1, 7, " scale steps"), "interval between chord notes (2 = thirds)")
    velocity: Scaling | float = spec(mapping(*VELOCITY, SCALARS), "loudness")
    length: float = spec(number(0.01, 16, " x chord length"), "note length as a share of the chord's time")


@dataclass(frozen=True)
class Layers(Voice):
    level: Scaling | float = spec(
        mapping(0, 127, "", tuple(LAYER_SIGNALS), constant=False), "each stop's control value, scaled layer by layer"
    )
    stops: int = spec(integer(1, 32), "layers are grouped into this many stops, low layers low")
    controller: int = spec(integer(0, 119), "MIDI controller of the lowest stop; the next stops count up")
    pitch: int = spec(integer(0, 127), "MIDI pitch of the held organ note (one per phrase)")
    velocity: int = spec(integer(1, 127), "loudness of the held note")


@dataclass(frozen=True)
class Drone(Voice):
    octave: int = spec(integer(0, 7), "octave of the key's tonic that the drone holds")
    fifth: bool = spec(boolean, "add the fifth above the tonic")
    level: Scaling | float = spec(mapping(0, 127, "", SCALARS), "the drone's control value")
    controller: int = spec(integer(0, 119), "MIDI controller the level is sent on (11 = expression)")
    velocity: int = spec(integer(1, 127), "loudness of the held notes")


@dataclass(frozen=True)
class Voices:
    melody: Melody = spec(None, "the token itself")  # type: ignore[arg-type]
    ghosts: Ghosts = spec(None, "the alternatives the model passed over")  # type: ignore[arg-type]
    harmony: Harmony = spec(None, "attention spread as chords")  # type: ignore[arg-type]
    layers: Layers = spec(None, "the layers as organ stops")  # type: ignore[arg-type]
    drone: Drone = spec(None, "the residual stream as a held drone")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Synth:
    sample_rate: int = spec(integer(8000, 192000, " Hz"), "sample rate of rendered audio")
    reverb_seconds: float = spec(number(0.1, 20, " s"), "reverb decay time (-60 dB)")
    reverb_mix: float = spec(number(0, 1), "level of the reverb return")
    delay_beats: float = spec(number(1 / 16, 8, " beats"), "delay time")
    delay_feedback: float = spec(number(0, 0.95), "delay feedback")
    brightness: float = spec(number(0, 1), "tone, 0 dark to 1 bright: the instruments' filters, FM depth and the reverb's damping")
    loudness: float = spec(number(-40, -6, " LUFS"), "integrated loudness of the finished mix")
    ceiling: float = spec(number(-12, 0, " dBTP"), "true-peak ceiling of the limiter")


@dataclass(frozen=True)
class Preset:
    name: str = spec(text, "the preset's name")
    description: str = spec(text, "one line on what it sounds like and what it is for")
    music: Music = spec(None, "key, scale and tempo")  # type: ignore[arg-type]
    timing: Timing = spec(None, "when tokens sound")  # type: ignore[arg-type]
    voices: Voices = spec(None, "the voices")  # type: ignore[arg-type]
    synth: Synth = spec(None, "the synthesizer and the master chain")  # type: ignore[arg-type]
    source: Traversable | None = field(default=None, compare=False)

    def voice(self, name: str) -> Voice:
        return getattr(self.voices, name)


VOICE_NAMES = tuple(f.name for f in dataclasses.fields(Voices))


def _build(cls: type, data: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(data, dict):
        raise PresetError(path, f"{_describe(data)} is not a table")
    hints = get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if "check" in f.metadata]
    names = {f.name for f in fields}
    for key in data:
        if key not in names:
            raise PresetError(path + (key,), f"unknown key; allowed keys here: {', '.join(sorted(names))}")
    values = {}
    for f in fields:
        where = path + (f.name,)
        if f.name not in data:
            raise PresetError(where, "is missing (the default preset must define every key)")
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, data[f.name], where)
        else:
            values[f.name] = f.metadata["check"](data[f.name], where)
    return cls(**values)


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base``: tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Traversable) -> tuple[dict[str, Any], str]:
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SonifyError(f"preset file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SonifyError(f"cannot read preset file {path} ({exc})") from None
    try:
        return tomllib.loads(source), source
    except tomllib.TOMLDecodeError as exc:
        raise SonifyError(f"{path}: not valid TOML: {exc}") from None


def user_preset_folders() -> list[Path]:
    """Where a user's own presets are looked for, first match first: the folders in
    ``SONIFY_PRESETS`` (separated like PATH), then ``~/.config/sonify/presets``."""
    listed = os.environ.get("SONIFY_PRESETS", "")
    folders = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return folders + [config / "sonify" / "presets"]


def _catalogue() -> dict[str, Traversable]:
    """Every preset by name: the user's folders shadow the shipped presets."""
    found: dict[str, Traversable] = {}
    for folder in [*user_preset_folders(), BUILTIN_PRESETS]:
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir(), key=lambda t: t.name):
            if item.name.endswith(".toml") and item.is_file():
                found.setdefault(item.name.removesuffix(".toml"), item)
    return found


def preset_names() -> list[str]:
    """The names of every preset (shipped and the user's), ``default`` first."""
    return sorted(_catalogue(), key=lambda n: (n != "default", n))


def preset_path(name: str) -> Traversable:
    """The file of a preset given by name (``ambient``) or path (``my.toml``)."""
    if name.endswith(".toml") or os.sep in name or "/" in name:
        return Path(name)
    found = _catalogue().get(name)
    if found is None:
        raise SonifyError(f"unknown preset {name!r}; available: {', '.join(preset_names())} (or give a .toml path)")
    return found


def _names(data: Any, path: tuple[str, ...]) -> bool:
    """Whether ``data`` writes the value at ``path`` (or a value enclosing it)."""
    for key in path:
        if not isinstance(data, dict):
            return True
        if key not in data:
            return False
        data = data[key]
    return True


def load_preset(name: str | os.PathLike = "default") -> Preset:
    """Load a preset by name or path, overlaid on ``default.toml``, and validate it."""
    path = Path(name) if isinstance(name, os.PathLike) else preset_path(name)
    default_path = BUILTIN_PRESETS / "default.toml"
    base, base_source = _read_toml(default_path)
    data, source = (base, base_source) if path == default_path else _read_toml(path)
    try:
        preset = _build(Preset, merge(base, data), ())
    except PresetError as exc:
        # Say where the bad value was written: the overlay if it names the key, else the default.
        in_overlay = path != default_path and _names(data, exc.path)
        where, src = (path, source) if in_overlay else (default_path, base_source)
        line = line_of(src, exc.path)
        key = ".".join(exc.path) or "(top level)"
        raise SonifyError(f"{where}:{line or 1}: {key}: {exc.message}") from None
    return dataclasses.replace(preset, source=path)


def field_docs(cls: type) -> list[tuple[str, str, str]]:
    """(name, allowed values, description) of each field of a preset dataclass."""
    out = []
    for f in dataclasses.fields(cls):
        if "check" in f.metadata and f.metadata["check"] is not None:
            out.append((f.name, getattr(f.metadata["check"], "allowed", ""), f.metadata["doc"]))
    return out
