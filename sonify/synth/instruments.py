"""The synthesizer's instruments: an envelope, a tone generator and a loudness trim each.

A tone generator renders samples ``n`` (counted from the note's start) of one note. It may
keep state in ``note.state`` (a lowpass filter's memory), and it may read the note's
controllers (the organ's stops, the drone's expression) through ``note.control``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.signal import butter, lfilter
from scipy.special import jv

from .dsp import TWO_PI, harmonic_table, phase, saw, seconds, square, wavetable
from .voice import Instrument, SoundingNote


@lru_cache(maxsize=4096)
def _lowpass_coefficients(cutoff: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-pole Butterworth lowpass (b, a), float32; designing one costs as much as filtering
    a short note, and notes of one pitch and velocity share it."""
    b, a = butter(2, min(cutoff, 0.45 * sample_rate) / (sample_rate / 2.0))
    b, a = b.astype(np.float32), a.astype(np.float32)
    b.flags.writeable = a.flags.writeable = False
    return b, a


def _lowpass(state: dict, x: np.ndarray, cutoff: float, sample_rate: int) -> np.ndarray:
    """A 2-pole lowpass whose memory lives in ``state``, so blocks join seamlessly."""
    if "lp" not in state:
        b, a = _lowpass_coefficients(cutoff, sample_rate)
        state["lp"] = (b, a, np.zeros(2, dtype=np.float32))
    b, a, zi = state["lp"]
    y, zf = lfilter(b, a, x.astype(np.float32, copy=False), zi=zi)
    state["lp"] = (b, a, zf)
    return y


def _sine(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    freq, sr = note.freq, note.sample_rate

    def make(n: np.ndarray, state: dict) -> np.ndarray:
        p = phase(n, freq, sr)
        return np.sin(TWO_PI * p) + 0.12 * np.sin(phase(n, 2.0 * freq, sr, turn=TWO_PI))

    return note.shared(("sine", freq), n, make)


# An FM sideband past Nyquist folds back as an alias: the first one past it must stay this
# far below full scale (about 70 dB below the loudest component of the tones we play).
FM_ALIAS_AMPLITUDE = 3e-4


@cache
def fm_index_limit(order: int) -> float:
    """The largest modulation index whose sideband of ``order`` (the Bessel function
    J_order) stays below FM_ALIAS_AMPLITUDE. Sidebands of higher order are smaller still."""
    if order <= 0:
        return 0.0
    # J_order rises monotonically from 0 up to beyond ``order``: one crossing in (0, order].
    return float(brentq(lambda beta: jv(order, beta) - FM_ALIAS_AMPLITUDE, 1e-9, float(order)))


# Above FM_TOP_HZ an FM note may put at most FM_TOP_POWER of its power (-45 dB), at its peak
# index: a loud bright bell put up to -29 dB there (MIDI 82 at 48 kHz), and glitch's sparse
# mix came within 2-4 dB of the -40 dB goal. -45 dB keeps every mix 5 dB inside it whatever
# the text; -50 dB would darken glitch's bells by a quarter (spectral centroid) for no audible gain.
FM_TOP_HZ = 16000.0
FM_TOP_POWER = 10**-4.5
_FM_ORDERS = np.arange(-48, 49)
_FM_INDEX_GRID = np.linspace(0.0, 8.0, 161)


def _fm_top_power(freq: float, ratio: float, sample_rate: int, beta: np.ndarray) -> np.ndarray:
    """The power fraction of sin(carrier + beta sin(ratio carrier)) above FM_TOP_HZ, per
    ``beta``: sideband k is J_k(beta) at |freq + k ratio freq|, folded about Nyquist."""
    at = np.abs(freq + _FM_ORDERS * ratio * freq)
    at = np.abs(np.where(at > sample_rate / 2.0, sample_rate - at, at))
    top = _FM_ORDERS[at > FM_TOP_HZ]
    return (jv(top[:, None], np.atleast_1d(beta)[None, :]) ** 2).sum(axis=0)


@lru_cache(maxsize=1024)
def fm_top_limit(freq: float, ratio: float, sample_rate: int) -> float:
    """The largest modulation index (up to the grid's end) below which the note's power above
    FM_TOP_HZ stays under FM_TOP_POWER: the first crossing, refined between grid points."""
    power = _fm_top_power(freq, ratio, sample_rate, _FM_INDEX_GRID)
    over = np.flatnonzero(power > FM_TOP_POWER)
    if over.size == 0:
        return float(_FM_INDEX_GRID[-1])
    lo, hi = float(_FM_INDEX_GRID[over[0] - 1]), float(_FM_INDEX_GRID[over[0]])
    return float(brentq(lambda b: _fm_top_power(freq, ratio, sample_rate, b)[0] - FM_TOP_POWER, lo, hi))


def fm_index(note: SoundingNote, ratio: float, index: float) -> float:
    """The note's peak modulation index: ``index`` scaled by velocity and brightness, then
    limited so that no sideband that matters lies above Nyquist (band-limited FM) and the
    note's power above FM_TOP_HZ stays under FM_TOP_POWER."""
    peak = index * (0.4 + 0.6 * note.velocity) * (0.5 + note.brightness)
    modulator = note.freq * ratio
    below = int(np.floor((note.sample_rate / 2.0 - note.freq) / modulator))  # upper sidebands under Nyquist
    return min(peak, fm_index_limit(below + 1), fm_top_limit(note.freq, ratio, note.sample_rate))


def _sine_at(note: SoundingNote, n: np.ndarray, freq: float) -> np.ndarray:
    """sin of the phase at ``freq`` over samples ``n``, shared by notes (read only)."""
    sr = note.sample_rate
    return note.shared(("sin", freq), n, lambda n, state: np.sin(phase(n, freq, sr, turn=TWO_PI)))


def _fm(note: SoundingNote, n: np.ndarray, ratio: float, index: float, index_decay: float) -> np.ndarray:
    if "fm_index" not in note.state:
        note.state["fm_index"] = fm_index(note, ratio, index)
    freq, sr = note.freq, note.sample_rate

    def fall(n: np.ndarray, state: dict) -> np.ndarray:
        return np.exp(seconds(n, sr) * np.float32(-1.0 / index_decay))

    # The index's fall, the modulator and the carrier's phase are the same for every note
    # of the instrument (of the pitch): read from the shared tones, only the sums are made.
    depth = note.state["fm_index"] * note.shared(("fm fall", index_decay), n, fall)
    depth *= _sine_at(note, n, freq * ratio)
    carrier = note.shared(("phase", freq), n, lambda n, state: phase(n, freq, sr, turn=TWO_PI))
    return np.sin(np.add(carrier, depth, out=depth), out=depth)


def _keys(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    return _fm(note, n, ratio=1.0, index=1.6, index_decay=0.35)


def _bell(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    return _fm(note, n, ratio=3.5, index=2.2, index_decay=0.9)


def _filtered(note: SoundingNote, n: np.ndarray, wave: Callable[[np.ndarray, float, int], np.ndarray], cutoff: float) -> np.ndarray:
    """``wave`` (``saw`` or ``square``) at the note's pitch through a 2-pole lowpass at ``cutoff``."""
    freq, sr = note.freq, note.sample_rate

    def make(n: np.ndarray, state: dict) -> np.ndarray:
        return _lowpass(state, wave(n, freq, sr), cutoff, sr)

    return note.shared((wave.__name__, freq, cutoff), n, make, stateful=True)


def _pluck(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    return _filtered(note, n, saw, note.freq * (2.0 + 6.0 * note.velocity) * (0.5 + note.brightness))


def _pulse(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    return _filtered(note, n, square, note.freq * (3.0 + 5.0 * note.velocity) * (0.5 + note.brightness))


def _detuned_saws(note: SoundingNote, n: np.ndarray, cents: tuple[float, ...]) -> np.ndarray:
    """The sum (not the mean: the instrument's level allows for it) of slightly detuned saws."""
    freq, sr = note.freq, note.sample_rate

    def make(n: np.ndarray, state: dict) -> np.ndarray:
        out = None
        for k, c in enumerate(cents):
            f = freq * 2.0 ** (c / 1200.0)
            wave = saw(n, f, sr, offset=0.31 * k)
            out = wave if out is None else np.add(out, wave, out=out)
        return out

    return note.shared(("saws", freq, cents), n, make)


def _pad(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    return _detuned_saws(note, n, (-6.0, 6.0))  # filtered once for the whole voice (bus_cutoff)


# The organ's partials, as harmonics of the played note: stop k sounds ORGAN_HARMONICS[k].
ORGAN_HARMONICS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)


# An organ voice without controllers sounds its first stops at fixed levels, 1 / harmonic.
ORGAN_FIXED_STOPS = 6


@cache
def _fixed_organ_table(stops: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stops' sum, one period (``harmonic_table``): harmonics 1 .. ``stops``."""
    h = np.array(ORGAN_HARMONICS[:stops], dtype=np.float64)
    amplitudes = np.zeros(int(h[-1]))
    amplitudes[h.astype(int) - 1] = h**-1.5  # level 1 / h, and each stop 1 / sqrt(h) as below
    return harmonic_table(amplitudes)


def _organ(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    nyquist = note.sample_rate / 2.0
    if not note.controllers:
        # Fixed stops: one wavetable read instead of a sine per stop (the same partials; the
        # table's interpolation error lies about 100 dB below them).
        stops = sum(1 for h in ORGAN_HARMONICS[:ORGAN_FIXED_STOPS] if note.freq * h < nyquist * 0.9)
        if stops == 0:
            return np.zeros(n.size, dtype=np.float32)
        freq, sr = note.freq, note.sample_rate
        return note.shared(("organ", freq, stops), n, lambda n, state: wavetable(n, freq, sr, *_fixed_organ_table(stops)))
    out = np.zeros(n.size, dtype=np.float32)
    for k, controller in enumerate(note.controllers[: len(ORGAN_HARMONICS)]):
        h = ORGAN_HARMONICS[k]
        if note.freq * h >= nyquist * 0.9:
            break
        level = note.control(controller, n) / np.float32(np.sqrt(h))
        level *= _sine_at(note, n, note.freq * h)
        out += level
    return out


def _drone(note: SoundingNote, n: np.ndarray) -> np.ndarray:
    tone = _detuned_saws(note, n, (-4.0, 4.0))  # filtered once for the whole voice (bus_cutoff)
    if note.controllers:
        tone = tone * note.control(note.controllers[0], n)
    return tone


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("sine", 0.01, 0.3, 0.7, 0.25, 0.8, _sine),
        Instrument("keys", 0.003, 1.2, 0.0, 0.35, 0.9, _keys),
        Instrument("bell", 0.002, 1.4, 0.0, 0.35, 0.6, _bell),
        Instrument("pluck", 0.003, 0.35, 0.0, 0.15, 1.0, _pluck),
        Instrument("pulse", 0.003, 0.18, 0.35, 0.08, 0.55, _pulse),
        Instrument("pad", 0.35, 1.0, 0.8, 1.2, 0.35, _pad, bus_cutoff=lambda b: 1400.0 * (0.5 + 2.0 * b)),
        Instrument("organ", 0.03, 0.2, 1.0, 0.25, 0.5, _organ, polyphony=8),
        Instrument("drone", 1.5, 1.0, 1.0, 1.0, 0.4, _drone, polyphony=4, bus_cutoff=lambda b: 450.0 * (0.5 + 2.0 * b)),
    )
}
