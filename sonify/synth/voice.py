"""What the engine plays: an instrument's definition, and a note sounding through one.

The instruments module defines the instruments; the engine starts, steals and mixes the
sounding notes. Both read these types, so they live here, apart from either.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..music.score import Control, Note
from .dsp import adsr, decay_fall, fade, sample_counts, sample_seconds, seconds

STEAL_SECONDS = 0.005
CONTROL_GLIDE_SECONDS = 0.02  # a control change glides this long, sample by sample: no zipper noise

Tone = Callable[["SoundingNote", np.ndarray], np.ndarray]  # read only: it may be samples notes share
# Samples ``n`` of a tone shared by notes (see ToneCache), given a state dict it may keep
# between calls (a lowpass filter's memory) and must carry on from.
Make = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Instrument:
    name: str
    attack: float
    decay: float
    sustain: float
    release: float
    level: float  # trim so instruments sit together at equal velocity
    tone: Tone
    polyphony: int = 16
    # Held, many-note voices are lowpassed once on the voice's bus rather than note by note:
    # the cutoff (Hz) at brightness 0..1. None: the tone filters itself, if at all.
    bus_cutoff: Callable[[float], float] | None = None


class ControlLanes:
    """Controller values over time, per (voice, controller), read back as smooth curves.

    Each change glides (smoothstep) from the value the curve has at its time to the new
    value over CONTROL_GLIDE_SECONDS; the curve is read at every sample of the absolute timeline,
    so there are no steps (no zipper noise) and any block size gives the same samples."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.points: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
        self._block = (0, 0)  # the block being rendered: (first sample, count)
        self._cache: dict[tuple[str, int], np.ndarray] = {}  # each lane's curve over it

    def add(self, control: Control, offset: int = 0) -> None:
        times, values = self.points.setdefault((control.voice, control.controller), ([], []))
        t = float(round(control.time * self.sample_rate) + offset)
        target = control.value / 127.0
        if times and t < times[-1]:
            # A change during the last glide: glide on from where the curve is at its time.
            previous = float(self._interp((times, values), int(t), 1)[0])
            keep = int(np.searchsorted(times, t, side="left"))
            del times[keep:], values[keep:]
        else:
            previous = values[-1] if values else target
        times += [t, t + CONTROL_GLIDE_SECONDS * self.sample_rate]
        values += [previous, target]
        self._cache.pop((control.voice, control.controller), None)

    def block(self, start: int, count: int) -> None:
        """Announce the block ``start`` .. ``start + count`` about to render: each lane's
        curve over it is computed once, on first use, for all the notes that read it."""
        self._block = (start, count)
        self._cache.clear()

    def forget_before(self, sample: int) -> None:
        """Drop the points no reading from ``sample`` on needs (a live engine calls this as
        it plays, so the lanes stay short and a reading costs the same all night): each lane
        keeps its last point before ``sample``, which a glide on from there still reads."""
        for times, values in self.points.values():
            k = bisect.bisect_left(times, sample) - 1  # the last point before the first reading
            if k > 0:
                del times[:k]
                del values[:k]

    def curve(self, voice: str, controller: int, start: int, count: int) -> np.ndarray:
        """The controller's value (0..1) at ``count`` samples from absolute sample ``start``."""
        key = (voice, controller)
        lane = self.points.get(key)
        if not lane:
            return np.ones(count, dtype=np.float32)
        b0, size = self._block
        if b0 <= start and start + count <= b0 + size:
            whole = self._cache.get(key)
            if whole is None:
                whole = self._cache[key] = self._interp(lane, b0, size)
            return whole[start - b0 : start - b0 + count]
        return self._interp(lane, start, count)

    @staticmethod
    def _interp(lane: tuple[list[float], list[float]], start: int, count: int) -> np.ndarray:
        """The curve at samples ``start`` .. ``start + count``: held values filled, and
        between two points that differ the smoothstep 3u^2 - 2u^3 rather than a line, so
        the slope is continuous too and a glide's corners make no tick either."""
        times, values = lane
        out = np.empty(count, dtype=np.float32)
        end = start + count
        k = bisect.bisect_right(times, start) - 1  # the segment [times[k], times[k + 1]) holding ``start``
        pos = start
        while pos < end:
            if k < 0 or k >= len(times) - 1:
                stop = min(end, math.ceil(times[0])) if k < 0 else end
                out[pos - start : stop - start] = values[0] if k < 0 else values[-1]
            else:
                stop = min(end, math.ceil(times[k + 1]))
                v0, v1 = values[k], values[k + 1]
                if v0 == v1:
                    out[pos - start : stop - start] = v0
                elif stop > pos and times[k].is_integer():
                    first = int(times[k])
                    shape = _smoothstep(times[k + 1] - times[k])
                    out[pos - start : stop - start] = v0 + (v1 - v0) * shape[pos - first : stop - first]
                elif stop > pos:
                    u = (np.arange(pos, stop, dtype=np.float64) - times[k]) / (times[k + 1] - times[k])
                    out[pos - start : stop - start] = v0 + (v1 - v0) * (u * u * (3.0 - 2.0 * u))
            pos = max(pos, stop)
            k += 1
        return out


@lru_cache(maxsize=64)
def _smoothstep(span: float) -> np.ndarray:
    """3u^2 - 2u^3 at u = j / ``span`` for j = 0, 1, 2 .. past ``span``, as ``ControlLanes``
    computes it (float64): a glide from a whole sample, read from its first sample on."""
    u = np.arange(0, math.ceil(span) + 2, dtype=np.float64) / span
    shape = u * u * (3.0 - 2.0 * u)
    shape.flags.writeable = False
    return shape


class ToneCache:
    """Tones that notes share, each from its note's start: a note's oscillator depends on its
    pitch (and for some instruments its velocity) but not on when it starts, so every note
    of one key reads the same samples, made once. Each key keeps its first ``max_length``
    samples, the keys least recently read go once the cache holds ``max_bytes``. A note
    reads exactly the samples it would make itself: the cache changes no sample."""

    def __init__(self, max_bytes: int = 16 * 2**20, max_length: int = 2**18):
        self.max_bytes = max_bytes
        self.max_length = max_length
        self.bytes = 0
        # key -> [samples (capacity grows by doubling), how many are filled, the state after them]
        self._entries: OrderedDict[Hashable, list] = OrderedDict()

    def read(self, key: Hashable, lo: int, hi: int, make: Make, own: dict[str, Any] | None) -> np.ndarray:
        """Samples ``lo`` .. ``hi`` of tone ``key``, to be read only: perhaps the kept samples themselves.
        ``own``: for a tone with state, the note's own state dict, which takes over past
        ``max_length`` (or if its key was dropped mid-note); None for a tone without."""
        if own is not None and "own" in own:
            return make(sample_counts(lo, hi), own["own"])
        entry = self._entries.get(key)
        if entry is None or lo > entry[1]:
            if own is None:
                if lo > 0 or hi > self.max_length:  # a pure tone: make what is not kept
                    return make(sample_counts(lo, hi), {})
            elif lo > 0:  # dropped mid-note: make it again from the start, on the note's own
                state: dict[str, Any] = {}
                make(sample_counts(0, lo), state)
                own["own"] = state
                return make(sample_counts(lo, hi), state)
            entry = self._entries[key] = [np.empty(0, dtype=np.float32), 0, {}]
        self._entries.move_to_end(key)
        data, filled, state = entry
        end = min(hi, self.max_length)
        fresh = None
        if end > filled:
            fresh = make(sample_counts(filled, end), state)
            if end > data.size:
                grown = np.empty(min(self.max_length, max(end, 2 * data.size)), dtype=np.float32)
                grown[:filled] = data[:filled]
                self.bytes += grown.nbytes - data.nbytes
                data = entry[0] = grown
            data[filled:end] = fresh
            entry[1] = end
        if fresh is not None and lo == filled:
            out = fresh  # just made for this note: no copy
        else:
            out = data[lo:end]
        if hi > end:  # past what is kept: the note carries on, from the state at the end
            carry = dict(state)
            own_out = make(sample_counts(max(lo, end), hi), carry)
            if own is not None:
                own["own"] = carry
            out = np.concatenate((out, own_out)) if out.size else own_out
        self._trim()
        return out

    def clear(self) -> None:
        """Drop every kept tone (their memory goes back at once; later reads make them again)."""
        self._entries.clear()
        self.bytes = 0

    def _trim(self) -> None:
        while self.bytes > self.max_bytes and len(self._entries) > 1:
            _, (data, _, _) = self._entries.popitem(last=False)
            self.bytes -= data.nbytes


class Envelopes:
    """The envelope the last note made, kept for the next one if theirs is the same (the
    notes of a chord: one instrument, gate and level, the same block, none stolen), and a
    buffer, reused note after note, for a note's envelope x tone."""

    def __init__(self) -> None:
        self._key: Hashable = None
        self._envelope = np.empty(0, dtype=np.float32)
        self._product = np.empty(0, dtype=np.float32)

    def get(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The envelope ``make`` makes (``key`` names everything it reads), read only."""
        if key != self._key:
            self._envelope, self._key = make(), key
            self._envelope.flags.writeable = False
        return self._envelope

    def product(self, size: int) -> np.ndarray:
        """A buffer of ``size`` samples, float32, for one note's product."""
        if self._product.size < size:
            self._product = np.empty(size, dtype=np.float32)
        return self._product[:size]


@dataclass
class SoundingNote:
    """A note being played, with everything its instrument needs."""

    note: Note
    instrument: Instrument
    start: int
    gate: float  # seconds from start to note-off
    end: int  # sample after the last one it sounds
    freq: float
    velocity: float  # 0..1
    brightness: float  # the preset's tone, 0 dark .. 1 bright
    sample_rate: int
    level: np.float32  # gain from velocity, voice gain and instrument trim
    controllers: tuple[int, ...]
    lanes: ControlLanes
    stolen_at: float | None = None  # seconds from start
    state: dict[str, Any] = field(default_factory=dict)
    tones: ToneCache | None = None  # tones shared with other notes; None: the note makes its own
    envelopes: Envelopes = field(default_factory=Envelopes)  # the engine's, shared by its notes

    def shared(self, key: Hashable, n: np.ndarray, make: Make, stateful: bool = False) -> np.ndarray:
        """``make`` over samples ``n`` (consecutive, from the note's start), read from the
        tones shared under ``key`` if there are any: ``key`` must name everything ``make``
        reads. ``stateful``: ``make`` keeps state in its dict (see ToneCache.read). The
        samples are read only (they may be the kept ones)."""
        if self.tones is None:
            return make(n, self.state)
        return self.tones.read(key, int(n[0]), int(n[0]) + n.size, make, self.state if stateful else None)

    def control(self, controller: int, n: np.ndarray) -> np.ndarray:
        """The controller's curve over samples ``n`` (consecutive, from the note's start)."""
        return self.lanes.curve(self.note.voice, controller, int(n[0]) + self.start, n.size)

    def add_to(self, out: np.ndarray, lo: int, hi: int) -> None:
        """Add samples ``lo`` to ``hi`` (from the note's start) of this note, mono, at its
        level, to ``out`` (``hi - lo`` samples)."""
        i = self.instrument
        key = (i.attack, i.decay, i.sustain, i.release, self.gate, self.level, self.stolen_at, lo, hi, self.sample_rate)
        envelope = self.envelopes.get(key, lambda: self._envelope(lo, hi))
        out += np.multiply(envelope, i.tone(self, sample_counts(lo, hi)), out=self.envelopes.product(hi - lo))

    def _envelope(self, lo: int, hi: int) -> np.ndarray:
        """The note's envelope (level included) at samples ``lo`` to ``hi``."""
        t = sample_seconds(lo, hi, self.sample_rate)
        i = self.instrument
        envelope = adsr(t, self.gate, i.attack, i.decay, i.sustain, i.release, self.level, self._fall(lo))
        if self.stolen_at is not None:
            envelope *= fade(t, self.stolen_at, STEAL_SECONDS)
        return envelope

    def _fall(self, lo: int) -> Callable[[int, int], np.ndarray] | None:
        """``adsr``'s ``fall`` for the block from sample ``lo``: read from the shared tones
        from the note's start (the same for every note of the instrument), where they keep it."""
        tones, i, sr = self.tones, self.instrument, self.sample_rate
        if tones is None:
            return None

        def make(n: np.ndarray, state: dict[str, Any]) -> np.ndarray:
            return decay_fall(seconds(n, sr), i.attack, i.decay)

        def fall(a: int, d: int) -> np.ndarray:
            if lo + d > tones.max_length:
                return decay_fall(sample_seconds(lo + a, lo + d, sr), i.attack, i.decay)
            return tones.read(("decay", i.attack, i.decay, sr), 0, lo + d, make, None)[lo + a :]

        return fall
