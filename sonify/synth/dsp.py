"""Oscillators and envelopes as closed-form functions of time since a note began.

Everything here is a function of the absolute sample position within a note, not of the
block it falls in: that is what makes rendering in small blocks and in one block agree.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

TWO_PI = 2.0 * np.pi


_TURN = 2.0**32

# Sample counts up to here (a note's first 5.5 s at 48 kHz) are kept, 1 MB, and as much again
# per sample rate for their times: a note's block reads views of them instead of making its own.
KEPT_COUNTS = 1 << 18
_counts = np.arange(0, dtype=np.uint32)
_seconds: dict[int, np.ndarray] = {}


def _kept(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def sample_counts(lo: int, hi: int) -> np.ndarray:
    """``np.arange(lo, hi, dtype=np.uint32)``, read only (a view of kept counts where it can be)."""
    global _counts
    if hi > KEPT_COUNTS:
        return np.arange(lo, hi, dtype=np.uint32)
    if hi > _counts.size:
        _counts = _kept(np.arange(min(KEPT_COUNTS, max(hi, 2 * _counts.size)), dtype=np.uint32))
    return _counts[lo:hi]


def sample_seconds(lo: int, hi: int, sample_rate: int) -> np.ndarray:
    """``seconds(sample_counts(lo, hi), sample_rate)``, read only (a view of kept times where
    it can be: each time is one product, so a slice holds the same values)."""
    if hi > KEPT_COUNTS:
        return seconds(sample_counts(lo, hi), sample_rate)
    kept = _seconds.get(sample_rate)
    if kept is None or hi > kept.size:
        size = min(KEPT_COUNTS, max(hi, 0 if kept is None else 2 * kept.size))
        kept = _seconds[sample_rate] = _kept(seconds(sample_counts(0, size), sample_rate))
    return kept[lo:hi]


def seconds(n: np.ndarray, sample_rate: int) -> np.ndarray:
    """The times of samples ``n`` (uint32), float32 seconds."""
    return np.multiply(n, np.float32(1.0 / sample_rate), dtype=np.float32)


def turns(n: np.ndarray, freq: float, sample_rate: int, offset: float = 0.0) -> np.ndarray:
    """Phase at samples ``n`` (uint32, counted from the note's start) as a 32-bit fixed-point
    fraction of a turn, uint32: ``n * increment`` wraps around exactly as a phase should,
    with no rounding error that grows along a long note, and the same value whichever block
    the sample falls in. The pitch is exact to 1e-5 Hz."""
    out = n * _increment(freq, sample_rate)
    start = _start(offset)
    if start:
        out += start
    return out


def _increment(freq: float, sample_rate: int) -> np.uint32:
    """The phase step of ``freq`` per sample, in turns (see ``turns``)."""
    return np.uint32(round(freq / sample_rate * _TURN) % (1 << 32))


def _start(offset: float) -> np.uint32:
    """The phase at sample 0, ``offset`` turns (see ``turns``)."""
    return np.uint32(round(offset * _TURN) % (1 << 32))


def phase(n: np.ndarray, freq: float, sample_rate: int, offset: float = 0.0, turn: float = 1.0) -> np.ndarray:
    """Phase in [0, 1) at samples ``n`` (see ``turns``), float32. ``turn`` sets the unit: 1
    for turns, ``TWO_PI`` for radians (ready for ``np.sin``)."""
    return np.multiply(turns(n, freq, sample_rate, offset), np.float32(turn / _TURN), dtype=np.float32)  # cast and scale in one pass


# One period of each band-limited wave in this many points. Linear interpolation in a table
# this fine leaves its images about 100 dB down: the waves alias no more than they have
# harmonics.
_TABLE_BITS = 12
TABLE_SIZE = 1 << _TABLE_BITS
_FRACTION_BITS = 32 - _TABLE_BITS
_PIECE = 32768


@lru_cache(maxsize=256)
def _table(shape: str, harmonics: int) -> tuple[np.ndarray, np.ndarray]:
    """One period of ``shape`` ("saw" rising from -1 to 1, or "square" +1 then -1) made of
    its first ``harmonics`` harmonics (see ``harmonic_table``)."""
    k = np.arange(1, harmonics + 1)
    if shape == "saw":
        amplitude = -2.0 / (np.pi * k)  # 2p - 1 = -(2/pi) sum sin(2 pi k p) / k
    else:
        amplitude = np.where(k % 2 == 1, 4.0 / (np.pi * k), 0.0)  # odd harmonics, 4 / (pi k)
    return harmonic_table(amplitude)


def harmonic_table(amplitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One period of sum_k amplitudes[k - 1] sin(2 pi k p), TABLE_SIZE points, and the step
    from each point to the next (float32 both), for ``wavetable``."""
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spectrum[1 : len(amplitudes) + 1] = -0.5j * TABLE_SIZE * np.asarray(amplitudes, dtype=np.float64)  # sine terms
    period = np.fft.irfft(spectrum, TABLE_SIZE)
    return period.astype(np.float32), (np.roll(period, -1) - period).astype(np.float32)


def _band_limited(shape: str, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The table of ``shape`` for a frequency of ``dt`` x the sample rate: every harmonic
    below Nyquist, none above."""
    harmonics = max(1, min(int(0.5 / dt) if dt > 0 else TABLE_SIZE // 2 - 1, TABLE_SIZE // 2 - 1))
    return _table(shape, harmonics)


def wavetable(n: np.ndarray, freq: float, sample_rate: int, values: np.ndarray, steps: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """A wavetable (``harmonic_table``) at the phases ``turns(n, freq, sample_rate, offset)``:
    the phase's top bits pick the table's point, the rest interpolate linearly to the next.
    Made a piece at a time, every temporary reused and within the core's cache (~3x faster
    than whole-span arrays)."""
    increment, start = _increment(freq, sample_rate), _start(offset)
    out = np.empty(n.size, dtype=np.float32)
    size = min(n.size, _PIECE)
    phases, index, looked = np.empty(size, dtype=np.uint32), np.empty(size, dtype=np.intp), np.empty(size, dtype=np.float32)
    for lo in range(0, n.size, _PIECE):
        o = out[lo : lo + _PIECE]
        p, i, v = phases[: o.size], index[: o.size], looked[: o.size]
        np.multiply(n[lo : lo + _PIECE], increment, out=p)
        if start:
            p += start
        np.right_shift(p, np.uint32(_FRACTION_BITS), out=i)
        np.bitwise_and(p, np.uint32((1 << _FRACTION_BITS) - 1), out=p)
        np.multiply(p, np.float32(2.0**-_FRACTION_BITS), out=o, dtype=np.float32)
        # The index is below TABLE_SIZE (the top bits of a uint32): "wrap" only skips the bounds check.
        steps.take(i, out=v, mode="wrap")
        o *= v
        values.take(i, out=v, mode="wrap")
        o += v
    return out


def saw(n: np.ndarray, freq: float, sample_rate: int, offset: float = 0.0) -> np.ndarray:
    """Band-limited sawtooth (wavetable) at samples ``n`` (uint32, see ``turns``)."""
    return wavetable(n, freq, sample_rate, *_band_limited("saw", freq / sample_rate), offset)


def square(n: np.ndarray, freq: float, sample_rate: int, offset: float = 0.0) -> np.ndarray:
    """Band-limited square wave (wavetable): +1 for the first half period, -1 for the second."""
    return wavetable(n, freq, sample_rate, *_band_limited("square", freq / sample_rate), offset)


def _first_at_or_after(t: np.ndarray, x: float) -> int:
    """``np.searchsorted(t, x)`` for ascending float32 ``t``: the key is made the smallest
    float32 not below ``x``, so ``t`` is not converted to float64 (a copy of the whole note)."""
    if not x < _FLOAT32_MAX:
        return int(np.searchsorted(t, np.float32(np.inf)))
    key = np.float32(x)
    if float(key) < x:
        key = np.nextafter(key, np.float32(np.inf))
    return int(np.searchsorted(t, key))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def decay_fall(t: np.ndarray, attack: float, decay: float) -> np.ndarray:
    """exp(-(t - attack) / decay) at times ``t`` (float32): the shape of ``adsr``'s decay,
    from 1 at the attack's end, before its scale and the sustain."""
    falling = np.subtract(t, np.float32(max(attack, 0.002)))
    falling *= np.float32(-1.0 / max(decay, 1e-4))
    return np.exp(falling, out=falling)


def adsr(
    t: np.ndarray,
    gate: float,
    attack: float,
    decay: float,
    sustain: float,
    release: float,
    level: float = 1.0,
    fall: Callable[[int, int], np.ndarray] | None = None,
) -> np.ndarray:
    """ADSR level at times ``t`` (seconds since note-on, ascending, float32) for a note released at ``gate``.

    The attack is linear (at least 2 ms, so no click), the decay exponential towards
    ``sustain``; the release falls from the level the note had reached at ``gate`` to
    exactly zero after ``release`` seconds, along (1 - x)^3, so it never clicks either.
    The whole curve is scaled by ``level``. ``fall(a, d)``: ``decay_fall`` at ``t[a:d]``,
    where a caller keeps it (it is the same for every note of an instrument)."""
    attack = max(attack, 0.002)
    release = max(release, 0.005)
    decay = max(decay, 1e-4)
    out = np.empty(t.size, dtype=np.float32)
    t32 = t.astype(np.float32, copy=False)
    # t ascends, so each stage is one contiguous slice.
    a, g = _first_at_or_after(t32, min(attack, gate)), _first_at_or_after(t32, gate)
    np.multiply(t32[:a], np.float32(level / attack), out=out[:a])
    # Past 12 decay times the level is the sustain to within 1e-5: skip the exponential;
    # at a sustain of 1 there is nothing to decay.
    d = a if sustain == 1.0 else max(a, min(g, _first_at_or_after(t32, attack + 12.0 * decay)))
    falling = out[a:d]
    if d > a:
        np.multiply(decay_fall(t32[a:d], attack, decay) if fall is None else fall(a, d), np.float32((1.0 - sustain) * level), out=falling)
    if sustain:
        falling += np.float32(sustain * level)
    out[d:g] = sustain * level
    if g < t.size:
        held = gate / attack if gate < attack else sustain + (1.0 - sustain) * np.exp(-(gate - attack) / decay)
        rest = out[g:]
        np.subtract(t32[g:], np.float32(gate), out=rest)
        rest *= np.float32(1.0 / release)
        np.minimum(rest, np.float32(1.0), out=rest)
        np.subtract(np.float32(1.0), rest, out=rest)
        cube = rest * rest  # (1 - x)^3 as products: np.power is ~25x slower
        rest *= cube
        rest *= np.float32(held * level)
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
