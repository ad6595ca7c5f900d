"""Keys, scales and the placement of a value in [0, 1] onto the notes of a scale."""

from __future__ import annotations

import numpy as np

from ..errors import SonifyError

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}

# Semitone steps of each mode above its tonic.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "pentatonic_major": (0, 2, 4, 7, 9),
    "pentatonic_minor": (0, 3, 5, 7, 10),
    "whole_tone": (0, 2, 4, 6, 8, 10),
    "chromatic": tuple(range(12)),
}


def key_pitch_class(key: str) -> int:
    """The pitch class (0 = C) of a key name such as ``D``, ``F#`` or ``Bb``."""
    name = _FLATS.get(key, key)
    if name not in NOTE_NAMES:
        raise SonifyError(f"unknown key {key!r}; use one of {', '.join(NOTE_NAMES)} (or a flat such as Bb)")
    return NOTE_NAMES.index(name)


def scale_pitches(key: str, scale: str, low: int, high: int) -> np.ndarray:
    """Every MIDI pitch of ``key``/``scale`` from ``low`` to ``high`` inclusive, ascending."""
    if scale not in SCALES:
        raise SonifyError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    root = key_pitch_class(key)
    classes = {(root + step) % 12 for step in SCALES[scale]}
    pitches = np.array([p for p in range(low, high + 1) if p % 12 in classes], dtype=np.int64)
    if pitches.size == 0:
        raise SonifyError(f"no note of {key} {scale} lies between MIDI {low} and {high}; widen the range")
    return pitches


def in_scale(pitch: int, key: str, scale: str) -> bool:
    """Whether ``pitch`` belongs to ``key``/``scale``."""
    root = key_pitch_class(key)
    return (pitch - root) % 12 in SCALES[scale]


def pitch_name(pitch: int) -> str:
    """``60`` → ``C4`` (MIDI convention: middle C is C4)."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"
