"""Oscillators and envelopes as closed-form functions of time since a note began.

Everything here is a function of the absolute sample position within a note, not of the
block it falls in: that is what makes rendering in small blocks and in one block agree.
"""

from __future__ import annotations

import numpy as np

TWO_PI = 2.0 * np.pi


_TURN = 2.0**32


def phase(n: np.ndarray, freq: float, sample_rate: int, offset: float = 0.0) -> np.ndarray:
    """Phase in [0, 1) at samples ``n`` (uint32, counted from the note's start), float32.

    The phase is a 32-bit fixed-point number: ``n * increment`` wraps around exactly as a
    phase should, with no rounding error that grows along a long note, and the same value
    whichever block the sample falls in. The pitch is exact to 1e-5 Hz."""
    increment = np.uint32(round(freq / sample_rate * _TURN) % (1 << 32))
    start = np.uint32(round(offset * _TURN) % (1 << 32))
    turns = n * increment
    if start:
        turns += start
    return turns.astype(np.float32) * np.float32(1.0 / _TURN)


def _polyblep(p: np.ndarray, dt: float) -> np.ndarray:
    """The PolyBLEP residual that removes the aliasing step of a discontinuity at phase 0."""
    out = np.zeros_like(p)
    if dt <= 0.0:
        return out
    lo = p < dt
    x = p[lo] / dt
    out[lo] = x + x - x * x - 1.0
    hi = p > 1.0 - dt
    x = (p[hi] - 1.0) / dt
    out[hi] = x * x + x + x + 1.0
    return out


def saw(p: np.ndarray, dt: float) -> np.ndarray:
    """Band-limited sawtooth (PolyBLEP) from phase ``p``; ``dt`` = frequency / sample rate."""
    return (2.0 * p - 1.0) - _polyblep(p, dt)


def square(p: np.ndarray, dt: float) -> np.ndarray:
    """Band-limited square wave (PolyBLEP at both edges)."""
    return np.where(p < 0.5, 1.0, -1.0) + _polyblep(p, dt) - _polyblep(np.mod(p + 0.5, 1.0), dt)


def adsr(t: np.ndarray, gate: float, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """ADSR level at times ``t`` (seconds since note-on, ascending) for a note released at ``gate``.

    The attack is linear (at least 2 ms, so no click), the decay exponential towards
    ``sustain``; the release falls from the level the note had reached at ``gate`` to
    exactly zero after ``release`` seconds, along (1 - x)^3, so it never clicks either."""
    attack = max(attack, 0.002)
    release = max(release, 0.005)
    decay = max(decay, 1e-4)
    out = np.empty(t.size, dtype=np.float32)
    t32 = t.astype(np.float32, copy=False)
    # t ascends, so each stage is one contiguous slice.
    a, g = np.searchsorted(t, [min(attack, gate), gate])
    out[:a] = t32[:a] / np.float32(attack)
    # Past 12 decay times the level is the sustain to within 1e-5: skip the exponential.
    d = max(a, min(g, int(np.searchsorted(t, attack + 12.0 * decay))))
    out[a:d] = sustain + (1.0 - sustain) * np.exp((t32[a:d] - np.float32(attack)) * np.float32(-1.0 / decay))
    out[d:g] = sustain
    if g < t.size:
        held = gate / attack if gate < attack else sustain + (1.0 - sustain) * np.exp(-(gate - attack) / decay)
        x = np.minimum((t32[g:] - np.float32(gate)) * np.float32(1.0 / release), np.float32(1.0))
        out[g:] = held * (1.0 - x) ** 3
    return out


def fade(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """1 until ``start``, then a linear fade to 0 over ``length`` seconds (a stolen voice)."""
    return np.clip(np.float32(1.0) - (t - np.float32(start)) * np.float32(1.0 / length), 0.0, 1.0).astype(np.float32)


def pan_gains(pan: float) -> tuple[float, float]:
    """Equal-power gains (left, right) for ``pan`` in [-1, 1]."""
    angle = (pan + 1.0) * np.pi / 4.0
    return float(np.cos(angle)), float(np.sin(angle))


def db(x: float) -> float:
    """Decibels to a linear gain."""
    return float(10.0 ** (x / 20.0))


def midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
