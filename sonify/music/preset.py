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
import os
import tomllib
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, get_type_hints

from ..errors import SonifyError
from .controls import Binding, controls_table
from .scales import NOTE_NAMES, SCALES
from .schema import (
    PER_ALTERNATIVE,
    PER_LAYER,
    UNIT_SIGNALS,
    Check,
    PresetError,
    boolean,
    choice,
    describe_value,
    gate,
    integer,
    integers,
    mapping,
    number,
    pair,
    rising_pair,
    text,
)
from .signals import Scaling
from .toml_lines import line_of

# The shipped presets are package data; a user's own come from SONIFY_PRESETS (folders
# separated like PATH) and ~/.config/sonify/presets, which shadow shipped ones of the same name.
BUILTIN_PRESETS: Traversable = importlib.resources.files(__package__) / "presets"
INSTRUMENTS = ("sine", "pluck", "keys", "pad", "bell", "organ", "drone", "pulse")
KEYS = NOTE_NAMES + ("Db", "Eb", "Gb", "Ab", "Bb")

__all__ = ["Preset", "PresetError", "load_preset", "preset_names"]


def spec(check: Check | None, doc: str) -> Any:
    return field(metadata={"check": check, "doc": doc})


PITCH, VELOCITY = (0, 127, ""), (1, 127, "")


@dataclass(frozen=True)
class Music:
    key: str = spec(choice(KEYS), "the home key's tonic")
    scale: str = spec(choice(tuple(SCALES)), "the scale (mode) every pitched voice uses")
    tempo: float = spec(number(20, 400, " bpm"), "quarter notes a minute")
    time_signature: tuple[int, int] = spec(pair(integer(1, 32)), "beats a bar and the note value of a beat")


@dataclass(frozen=True)
class Timing:
    words_per_minute: float = spec(number(60, 240), "the pace: words a minute over the whole piece, rests and lingering included")
    step: float = spec(number(1 / 16, 4, " beats"), "the grid every word starts on (0.25 = sixteenths)")
    word_length: str = spec(choice(("even", "letters")), "even: every word the same time; letters: longer words take longer")
    linger: Scaling | float = spec(
        mapping(0, 8, " beats", UNIT_SIGNALS), "extra beats a word takes (surprise), paid back from the words after it"
    )
    line_rest: float = spec(number(0, 8, " beats"), "rest after a line of words, once the melody has settled")
    stanza_rest: float = spec(
        number(0.4, 30, " s"), "silence at a blank line, at least (longer if the reverb needs it to fall 20 dB)"
    )
    art_beats_per_char: float = spec(
        number(0, 1, " beats"), "a run of art (box drawing, rules, ASCII art): time per character..."
    )
    art_max_beats: float = spec(number(0, 8, " beats"), "...and at most this much art time per line")
    end_rest: float = spec(number(0, 64, " beats"), "silence after the last word")


@dataclass(frozen=True)
class Form:
    section_keys: tuple[int, ...] = spec(
        integers(-11, 11), "a heading opens a section: its key moves this many semitones from home, in turn (0 = home)"
    )


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
    register: tuple[int, int] = spec(rising_pair(integer(0, 127)), "the melody's range (MIDI pitches)")
    leap: Scaling | float = spec(
        mapping(0, 12, " scale steps", UNIT_SIGNALS), "how far the line moves from the last note (0 = repeat, 1 = step)"
    )
    contour: str = spec(
        choice((*UNIT_SIGNALS, "alternate")), "the line rises when this signal rose since the word before (or alternates)"
    )
    velocity: Scaling | float = spec(mapping(*VELOCITY, UNIT_SIGNALS), "loudness (MIDI velocity)")
    length: float = spec(number(0.05, 4, " x word time"), "note length as a share of the word's time")
    figure: str = spec(choice(("word", "tokens")), "word: a note per word; tokens: a note per token, within a third")
    settle: bool = spec(boolean, "the last word of a line lands on the tonic, third or fifth")
    gate: tuple[str, float | str] | None = spec(gate, "sound only words whose signal is at or above this")
    chromatic: bool = spec(boolean, "move in semitones instead of the scale's steps")


@dataclass(frozen=True)
class Ghosts(Voice):
    count: int = spec(integer(0, 8), "at most this many passed-over alternatives sound per word")
    max_gap: float = spec(
        number(0, 20, " nats"), "only close competitors sound: log-probability within this of the chosen token's"
    )
    distance: Scaling | float = spec(
        mapping(1, 12, " scale steps", PER_ALTERNATIVE), "how far from the melody note: a closer competitor sounds nearer"
    )
    softer: Scaling | float = spec(
        mapping(0.05, 0.95, " x melody velocity", PER_ALTERNATIVE), "its loudness as a share of the melody note's"
    )
    length: float = spec(number(0.01, 4, " x word time"), "note length as a share of the word's time")
    strum: float = spec(number(0, 1, " x word time"), "delay between successive ghosts")


@dataclass(frozen=True)
class Harmony(Voice):
    beats: float = spec(number(0.5, 32, " beats"), "the chord changes every this many beats, counted from the stanza's start")
    register: tuple[int, int] = spec(rising_pair(integer(0, 127)), "where the chords are voiced (MIDI pitches)")
    tension: Scaling | float = spec(
        mapping(0, 5, "", UNIT_SIGNALS), "harmonic tension, rounded: 0 I, 1 vi, 2 IV, 3 ii, 4 V, 5 vii"
    )
    spread: Scaling | float = spec(
        mapping(0, 1, "", UNIT_SIGNALS), "how widely the chord spreads: 0 a close dyad a fourth wide, 1 an open ninth chord over two octaves"
    )
    velocity: Scaling | float = spec(mapping(*VELOCITY, UNIT_SIGNALS), "loudness")


@dataclass(frozen=True)
class Layers(Voice):
    level: Scaling | float = spec(
        mapping(0, 127, "", PER_LAYER, constant=False), "each stop's control value, each layer on its own calibration"
    )
    stops: int = spec(integer(1, 32), "layers are grouped into this many stops, low layers low")
    controller: int = spec(integer(0, 119), "MIDI controller of the lowest stop; the next stops count up")
    pitch: int = spec(integer(0, 127), "MIDI pitch of the held organ note (one per line), in the home key")
    velocity: int = spec(integer(1, 127), "loudness of the held note")


@dataclass(frozen=True)
class Drone(Voice):
    octave: int = spec(integer(0, 7), "octave of the section's tonic that the drone holds")
    fifth: bool = spec(boolean, "add the fifth above the tonic")
    level: Scaling | float = spec(mapping(0, 127, "", UNIT_SIGNALS), "the drone's control value")
    controller: int = spec(integer(0, 119), "MIDI controller the level is sent on (11 = expression)")
    velocity: int = spec(integer(1, 127), "loudness of the held notes")


@dataclass(frozen=True)
class Texture(Voice):
    register: tuple[int, int] = spec(rising_pair(integer(0, 127)), "where runs of art sound (MIDI pitches)")
    notes: int = spec(integer(1, 8), "at most this many notes for one run")
    velocity: int = spec(integer(1, 127), "loudness")


@dataclass(frozen=True)
class Voices:
    melody: Melody = spec(None, "the words themselves")  # type: ignore[arg-type]
    ghosts: Ghosts = spec(None, "the alternatives the model passed over")  # type: ignore[arg-type]
    harmony: Harmony = spec(None, "the model's uncertainty and attention as chords")  # type: ignore[arg-type]
    layers: Layers = spec(None, "the layers as organ stops")  # type: ignore[arg-type]
    drone: Drone = spec(None, "the residual stream as a held drone")  # type: ignore[arg-type]
    texture: Texture = spec(None, "runs of art: box drawing, rules, ASCII art")  # type: ignore[arg-type]


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
    timing: Timing = spec(None, "when words sound")  # type: ignore[arg-type]
    form: Form = spec(None, "what sections do")  # type: ignore[arg-type]
    voices: Voices = spec(None, "the voices")  # type: ignore[arg-type]
    synth: Synth = spec(None, "the synthesizer and the master chain")  # type: ignore[arg-type]
    controls: tuple[Binding, ...] = spec(
        controls_table(tuple(f.name for f in dataclasses.fields(Voices))),
        "incoming MIDI messages that steer `sonify play --control-in PORT`",
    )
    source: Traversable | None = field(default=None, compare=False)

    def voice(self, name: str) -> Voice:
        return getattr(self.voices, name)


VOICE_NAMES = tuple(f.name for f in dataclasses.fields(Voices))


def _build(cls: type, data: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(data, dict):
        raise PresetError(path, f"{describe_value(data)} is not a table")
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
    """``overlay`` on ``base``: tables merge key by key, anything else is replaced. A mapping
    table (one with a ``signal``) is replaced whole: its limits belong to its signal; so is a
    control's table (one with a ``param``): its range belongs to its parameter."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not {"signal", "param"} & set(value):
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
