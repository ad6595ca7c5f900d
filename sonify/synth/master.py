"""The master chain: loudness normalisation (ITU-R BS.1770) and a true-peak limiter.

The loudness meter follows BS.1770-4 (K-weighting, 400 ms blocks with 75 % overlap, the
-70 LUFS absolute and -10 LU relative gates); the tests hold it to pyloudnorm's figures.
It is ours because it runs in float32 at ~1 ms per second of audio, which the render's
speed needs. The limiter looks ahead so it can lower the gain before a peak arrives, and
it reads peaks between samples (4x oversampled), so the output's true peak stays under
the ceiling. Both run block by block with their state carried, and the limiter gives the
same samples however the piece is cut into blocks: ``master_passes`` masters a piece of
any length in bounded memory, making its mix once to measure it and again to finish it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.signal import firwin, resample_poly, sosfilt, tf2sos

try:  # the kernel behind scipy's sosfilt, which runs in place (sosfilt copies its input first)
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # pragma: no cover - a scipy without it: the public function
    _sosfilt = None


def _k_weighting(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The BS.1770 K-weighting (high shelf then high pass) as one 4th-order filter."""
    # Analog prototypes as given by the standard's 48 kHz coefficients' design parameters.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    high_b = np.array([1.0, -2.0, 1.0])
    high_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return np.convolve(shelf_b, high_b), np.convolve(shelf_a, high_a)


class LoudnessMeter:
    """BS.1770 integrated loudness, fed block by block (state carried), so an offline render
    measures its mix while it is being made."""

    def __init__(self, sample_rate: int, channels: int = 2):
        b, a = _k_weighting(sample_rate)
        # Second-order sections keep float32 accurate (the high pass sits close to z = 1).
        self.sos = tf2sos(b, a).astype(np.float32)
        self.state = np.zeros((channels, self.sos.shape[0], 2), dtype=np.float32)  # per channel, per section
        self.step = int(round(0.1 * sample_rate))
        # Per 100 ms: the sum of squares per channel (the first ``count`` rows; grown by doubling).
        self._steps = np.zeros((64, channels))
        self.count = 0
        self.partial = np.zeros(channels)
        self.filled = 0
        # Kept from block to block: a few steps of the weighted signal and of their squares,
        # small enough to stay in the core's cache between the filter, the squares and the sums.
        self._weighted = np.empty(0, dtype=np.float32)
        self._squares = np.empty(0)

    PIECE_STEPS = 8  # steps filtered, squared and summed at a time

    def _buffers(self, channels: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """The kept (channels, frames) buffers for a piece of the weighted signal and its squares."""
        if self._weighted.size < channels * frames:
            self._weighted = np.empty(channels * frames, dtype=np.float32)
            self._squares = np.empty(channels * frames)
        return (
            self._weighted[: channels * frames].reshape(channels, frames),
            self._squares[: channels * frames].reshape(channels, frames),
        )

    def process(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        # A few steps at a time, each piece ending where a step ends (or the block does):
        # every step is summed over the same values in the same order as in one piece.
        at = 0
        while at < block.shape[0]:
            end = min(block.shape[0], at + self.PIECE_STEPS * self.step - self.filled)
            self._measure(block[at:end])
            at = end

    def _measure(self, piece: np.ndarray) -> None:
        """Weight ``piece`` (frames, channels) and add its squares to the steps."""
        frames, channels = piece.shape
        weighted, squares = self._buffers(channels, frames)
        # Channels as rows: each filtered along contiguous memory (the engine's blocks are
        # (frames, 2) views of (2, frames) arrays, so this copy reads them in order).
        np.copyto(weighted, piece.T)
        if _sosfilt is not None:
            _sosfilt(self.sos, weighted, self.state)  # in place, the state too
        else:
            out, state = sosfilt(self.sos, weighted, axis=-1, zi=self.state.transpose(1, 0, 2))
            weighted[...], self.state = out, np.ascontiguousarray(state.transpose(1, 0, 2))
        np.square(weighted, dtype=np.float64, out=squares)
        # Each sum runs along contiguous memory: numpy's pairwise summation, the same sums
        # (bit for bit) as over the (frames, channels) layout's steps.
        at = 0
        if self.filled:
            take = min(self.step - self.filled, frames)
            self.partial += squares[:, :take].sum(axis=1)
            self.filled += take
            at = take
            if self.filled == self.step:
                self._append(self.partial[None, :])
                self.partial, self.filled = np.zeros_like(self.partial), 0
        whole = (frames - at) // self.step
        if whole:
            sums = squares[:, at : at + whole * self.step].reshape(channels, whole, self.step).sum(axis=2)
            self._append(sums.T)
            at += whole * self.step
        if at < frames:
            self.partial += squares[:, at:].sum(axis=1)
            self.filled += frames - at

    def _append(self, rows: np.ndarray) -> None:
        if self.count + rows.shape[0] > self._steps.shape[0]:
            grown = np.zeros((max(2 * self._steps.shape[0], self.count + rows.shape[0]), self._steps.shape[1]))
            grown[: self.count] = self._steps[: self.count]
            self._steps = grown
        self._steps[self.count : self.count + rows.shape[0]] = rows
        self.count += rows.shape[0]

    @property
    def position(self) -> int:
        """Samples (frames) measured so far."""
        return self.count * self.step + self.filled

    def mark(self) -> tuple:
        """What ``resumed`` needs to go on from here: the filters' memory, the open step."""
        return self.count, self.state.copy(), self.partial.copy(), self.filled

    def resumed(self, mark: tuple, gain: float) -> LoudnessMeter:
        """A meter that has measured what this one had at ``mark``, every sample times
        ``gain``: the filters are linear, so their memory scales by ``gain`` and the sums
        of squares by its square, without measuring the samples again."""
        count, state, partial, filled = mark
        meter = LoudnessMeter.__new__(LoudnessMeter)
        meter.sos, meter.step = self.sos, self.step
        meter._weighted, meter._squares = np.empty(0, dtype=np.float32), np.empty(0)
        meter.state = (state * np.float32(gain)).astype(np.float32)
        meter._steps = self._steps[: max(count, 64)] * (gain * gain)
        meter.count, meter.partial, meter.filled = count, partial * (gain * gain), filled
        return meter

    @property
    def steps(self) -> np.ndarray:
        """The 100 ms steps so far: (steps, channels) sums of K-weighted squares."""
        return self._steps[: self.count]

    def loudness(self) -> float:
        """Integrated loudness so far, LUFS; -inf for silence or less than 400 ms."""
        return gated_loudness(self.steps, self.step)


def gated_loudness(steps: np.ndarray, step: int) -> float:
    """BS.1770 gating over 100 ms steps of summed K-weighted squares (steps, channels)."""
    if len(steps) < 4:
        return -math.inf
    # 400 ms blocks, 75 % overlap: sums of four consecutive steps.
    blocks = (steps[:-3] + steps[1:-2] + steps[2:-1] + steps[3:]) / (4 * step)
    power = blocks.sum(axis=1)  # channel weights are 1.0 for left and right
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10.0 * np.log10(power)
    gated = power[loudness > -70.0]
    if gated.size == 0:
        return -math.inf
    relative = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    final = gated[-0.691 + 10.0 * np.log10(gated) > relative]
    return float(-0.691 + 10.0 * np.log10(final.mean()))


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of (frames, channels) audio in LUFS; -inf for silence or < 400 ms."""
    audio = np.asarray(audio, dtype=np.float32)
    meter = LoudnessMeter(sample_rate, 1 if audio.ndim == 1 else audio.shape[1])
    meter.process(audio)
    return meter.loudness()


def true_peak_db(audio: np.ndarray, oversample: int = 4) -> float:
    """The true peak of ``audio`` in dBTP, measured on a 4x oversampled copy."""
    if audio.size == 0:
        return -math.inf
    up = resample_poly(np.asarray(audio, dtype=np.float64), oversample, 1, axis=0)
    peak = float(np.abs(up).max())
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """The mean of each ``width`` consecutive ``values`` (``len(values) - width + 1`` of them).

    Each window is summed on its own, in the same order wherever it falls, so the limiter's
    gain does not depend on where a block boundary cuts the piece (running sums would carry
    rounding from everything before); a window of ones is exactly 1."""
    count = values.size - width + 1
    out = np.ones(max(count, 0))
    if count <= 0:
        return out
    below = values < 1.0
    if not below.any():
        return out
    # The windows holding a value below 1 (window k holds values[k : k + width]).
    touched = np.flatnonzero(maximum_filter1d(below.view(np.uint8), width, origin=-(width // 2))[:count])
    windows = sliding_window_view(values, width)
    for start in range(0, touched.size, 8192):  # bounded temporaries: 8192 windows at a time
        at = touched[start : start + 8192]
        out[at] = windows[at].sum(axis=1) / width
    return out


def _segment_peaks(x: np.ndarray, size: int) -> np.ndarray:
    """The largest absolute sample of each ``size`` rows of ``x`` (frames, channels), the last
    group possibly shorter: two reductions over contiguous memory, no temporaries."""
    whole = x.shape[0] // size
    body = x[: whole * size].reshape(whole, size * x.shape[1])
    peaks = np.maximum(body.max(axis=1), -body.min(axis=1))
    rest = x[whole * size :]
    if rest.size:
        peaks = np.append(peaks, max(float(rest.max()), -float(rest.min())))
    return peaks


def _in_rows(x: np.ndarray) -> bool:
    """Whether a (frames, channels) block keeps each channel's frames next to each other
    (a view of a (channels, frames) array, whether that is its own or a slice of a longer
    piece's), so that it is read channel by channel."""
    return x.ndim == 2 and x.shape[1] > 1 and x.strides[0] == x.itemsize


def _take(x: np.ndarray, gain: float | None, into: np.ndarray) -> None:
    """``into`` = ``x`` times ``gain`` (None: a copy), both (frames, channels)."""
    if _in_rows(x):
        # The engine's blocks are (frames, 2) views of (2, frames) arrays: read them row
        # by row (a third of the time of reading two floats from each of two rows).
        x, into = x.T, into.T
    if gain is None:
        into[...] = x
    else:
        np.multiply(x, gain, out=into)


class Limiter:
    """A look-ahead true-peak limiter for (frames, channels) blocks, state carried across blocks.

    The output is the input delayed by ``lookahead`` times a gain that is, at every sample,
    at most what that sample's (oversampled) peak allows: the needed gain's running minimum
    over the look-ahead, held for ``hold`` seconds, then smoothed by a moving average no longer
    than the look-ahead, so the smoothing never lets a peak through. ``flush`` returns the
    delayed tail."""

    OVERSAMPLE = 4
    TAPS_PER_PHASE = 33

    def __init__(self, sample_rate: int, ceiling_db: float, channels: int = 2, lookahead: float = 0.005, hold: float = 0.04):
        self.ceiling = 10.0 ** ((ceiling_db - 0.3) / 20.0)  # a margin for peaks between the 4x points
        # The interpolator's output lags its input by half its length: the peak between
        # samples j and j + 1 is known LAG samples later, so the signal waits that long too.
        self.lag = (self.TAPS_PER_PHASE - 1) // 2
        self.delay = max(2, round(lookahead * sample_rate)) + self.lag
        self.hold = round(hold * sample_rate)
        self.smooth = self.delay // 2 + 1
        # 4 * 2 * LAG + 1 taps delay by exactly LAG samples, which puts phases 1..3 at
        # j + 1/4, j + 2/4, j + 3/4 (the points a 4x true-peak meter reads).
        taps = firwin(self.OVERSAMPLE * 2 * self.lag + 1, 1.0 / self.OVERSAMPLE) * self.OVERSAMPLE
        taps = np.concatenate([taps, np.zeros(self.OVERSAMPLE * self.TAPS_PER_PHASE - taps.size)])
        self.interpolator = taps.reshape(-1, self.OVERSAMPLE).T[1:]  # phases 1..3: (3, taps per phase)
        # For the quick check: the 48 samples that 16 consecutive windows read -> their
        # phases 1..3, (48, 16 * 3); entry [i, 3 r + p] weighs sample i for the window ending
        # at r + 32 (the window's last sample meets the interpolator's first tap).
        width, fine = self.TAPS_PER_PHASE, 16
        band = np.zeros((fine + width - 1, fine, 3))
        for r in range(fine):
            band[r : r + width, r, :] = self.interpolator[:, ::-1].T
        self._band = band.reshape(fine + width - 1, fine * 3)
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        self.input_history = np.zeros((self.delay + self.TAPS_PER_PHASE + 1, self.channels), dtype=np.float32)
        self.engaged = False  # whether the gain has ever dropped below 1
        self.need_history = np.ones(self.delay + self.hold)
        self.min_history = np.ones(2 * self.smooth)

    def _between(self, views: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The magnitude of the signal between samples (phases 1..3 of the oversampling)
        for the windows of ``views`` (``sliding_window_view`` of TAPS_PER_PHASE samples)
        that start at ``starts``: (windows, channels, phases)."""
        return np.abs(views[starts][..., ::-1] @ self.interpolator.T)

    def _clear(self, context: np.ndarray, m: int) -> bool:
        """True when ``_needed_gain`` is surely None, found without its passes over the block:
        the largest sample of each 1024 is read (two reductions), then of each 16 in the
        1024 with a sample past half the ceiling, and only the windows that reach into such
        16 samples are interpolated. False: not proven (then ``_needed_gain`` decides; also
        where the loud samples are too many for this to be quicker)."""
        width, coarse, fine = self.TAPS_PER_PHASE, 1024, 16
        region = context[context.shape[0] - m - width :]  # every sample a window ending in the block reads
        half, margin = 0.5 * self.ceiling, self.ceiling * (1.0 - 1e-6)  # a rounding difference never decides
        tops = _segment_peaks(region, coarse)
        if tops.max() <= half:
            return True  # no sample is loud: _needed_gain returns None straight away
        if tops.max() > margin:
            return False
        loud = np.flatnonzero(tops > half)
        whole = region.shape[0] // coarse
        flags = np.zeros(-(-region.shape[0] // fine) + 4, dtype=bool)  # per 16 samples: loud?
        inside = loud[loud < whole]
        if inside.size:
            pieces = region[: whole * coarse].reshape(whole, coarse // fine, fine * region.shape[1])[inside]
            peaks = np.maximum(pieces.max(axis=2), -pieces.min(axis=2))
            flags[: whole * (coarse // fine)].reshape(whole, -1)[inside] = peaks > half
        if loud[-1] >= whole:
            flags[whole * (coarse // fine) : -4] = True  # the short last piece: all of it
        # The window ending at e reads e - width .. e (current) and e - width - 1 .. e - 1
        # (previous, the window ending at e - 1): the ends up to three groups of 16 after a
        # loud one, and the last sample of the one before, reach into it.
        near = flags.copy()
        near[1:] |= flags[:-1]
        near[2:] |= flags[:-2]
        near[3:] |= flags[:-3]
        near[:-1] |= flags[1:]
        groups = np.flatnonzero(near[:-4])
        if groups.size * fine > m // 4:
            return False
        return bool(self._groups_peak(region, groups) <= margin)

    def _groups_peak(self, region: np.ndarray, groups: np.ndarray) -> float:
        """The largest magnitude between samples (phases 1..3) of the windows of ``region``
        that end in the given groups of 16 samples (ends from TAPS_PER_PHASE - 1 on): what
        ``_between`` gives for them, up to float64 rounding (``_clear`` leaves a margin).

        A group's 16 windows read 48 samples; one product of those with a banded matrix
        (48 samples -> 16 ends x 3 phases) gives them all, both channels as rows, 4096
        groups at a time: a ninth of the memory of gathering every window."""
        band, fine = self._band, 16
        span = band.shape[0]  # 16 + TAPS_PER_PHASE - 1
        lead = span - fine
        windows = sliding_window_view(region, span, axis=0)  # k: region[k : k + span], (channels, span)
        peak = 0.0
        for at in range(0, groups.size, 4096):
            first = groups[at : at + 4096] * fine - lead  # each group's first sample
            inside = (first >= 0) & (first + span <= region.shape[0])
            if inside.any():  # all its 16 windows exist: the group's samples copied as they lie
                rows = windows[first[inside]].astype(np.float64)  # (groups, channels, span)
                peak = max(peak, float(np.abs(rows.reshape(-1, span) @ band).max()))
            if not inside.all():  # at the region's edges
                first = first[~inside]
                index = np.clip(first[:, None] + np.arange(span)[None, :], 0, region.shape[0] - 1)
                rows = region[index].transpose(0, 2, 1).astype(np.float64)
                values = np.abs(rows.reshape(-1, span) @ band).reshape(first.size, -1, fine, 3)
                ends = first[:, None] + lead + np.arange(fine)[None, :]
                values *= ((ends >= lead) & (ends < region.shape[0]))[:, None, :, None]  # windows that exist
                peak = max(peak, float(values.max()))
        return peak

    def _needed_gain(self, context: np.ndarray, m: int) -> np.ndarray | None:
        """The gain each of the last ``m`` samples of ``context``, LAG samples back, may have:
        what keeps it, and the signal between it and its neighbours, under the ceiling.
        None when that is 1 for every one of them (nothing near the ceiling)."""
        width = self.TAPS_PER_PHASE
        first = context.shape[0] - m  # the first window end, one per new sample
        level = np.abs(context[:, 0])
        for c in range(1, context.shape[1]):  # column by column: far faster than max(axis=1)
            np.maximum(level, np.abs(context[:, c]), out=level)
        # Between samples the signal rises at most a few dB: interpolate only near the ceiling.
        loud = level > 0.5 * self.ceiling
        if not loud[first - width :].any():
            return None  # no window ending in this block reaches half the ceiling
        peak = level[first - self.lag : context.shape[0] - self.lag].copy()
        # A window ending at e needs interpolating if any of its last width + 1 samples is loud.
        window_loud = maximum_filter1d(loud.view(np.uint8), width + 1, origin=width // 2)
        near = np.flatnonzero(window_loud[first:])
        if near.size:
            e = near + first
            views = sliding_window_view(context, width, axis=0)  # view k holds context[k : k + width]
            current = self._between(views, e - width + 1).max(axis=(1, 2))
            previous = self._between(views, e - width).max(axis=(1, 2))
            peak[near] = np.maximum(peak[near], np.maximum(current, previous))
        with np.errstate(divide="ignore"):
            need = np.minimum(1.0, self.ceiling / peak)
        return None if need.min() >= 1.0 else need

    def process(self, block: np.ndarray, gain: float | None = None) -> np.ndarray:
        """The next block out (as many frames as ``block``), the input ``lookahead`` earlier;
        ``gain``: ``block`` is taken times this first (in the same pass as it is copied)."""
        x = np.asarray(block, dtype=np.float32)
        m = x.shape[0]
        if m == 0:
            return x.copy()
        held = self.input_history.shape[0]
        history = np.empty((held + m, *x.shape[1:]), dtype=np.float32)
        history[:held] = self.input_history
        _take(x, gain, history[held:])
        return self._limit(history, m, in_place=False)

    def process_into(self, block: np.ndarray, gain: float | None, piece: np.ndarray, at: int) -> np.ndarray:
        """``process``, made in the rows of ``piece`` (frames, channels) float32 where the input's
        frames belong, ``at`` on: the block (times ``gain``) is written at ``at`` after the
        input held from before it, and the output, rows ``at - delay`` to ``at + m - delay``,
        is limited there in place and returned (a view of ``piece``). Until the limiter acts,
        the output is the input already there. Needs ``at`` >= ``held`` rows before the block;
        the rows before ``at`` it rewrites hold that input (then the output) already, unless
        the limiter acted: for a piece filled by this limiter's outputs while it never has."""
        x = np.asarray(block, dtype=np.float32)
        m, held = x.shape[0], self.input_history.shape[0]
        history = piece[at - held : at + m]
        history[:held] = self.input_history
        _take(x, gain, history[held:])
        return self._limit(history, m, in_place=True)

    def held(self) -> int:
        """Input frames kept from one block to the next (the delay line and the interpolator's)."""
        return self.input_history.shape[0]

    def _limit(self, history: np.ndarray, m: int, in_place: bool) -> np.ndarray:
        """The output for the last ``m`` frames of ``history`` (the held input, then the
        block's); ``in_place``: the output is made in ``history``'s rows themselves."""
        held = self.input_history.shape[0]
        # A long block is first checked the quick way (a live one's 256 frames are not worth it).
        quick = m >= 4096 and not self.engaged and self._clear(history, m)
        needed = None if quick else self._needed_gain(history, m)
        delayed = history[-(m + self.delay) : -self.delay]
        self.input_history = history[-held:].copy()
        if needed is None and not self.engaged:
            # Never a gain below 1 so far: the output is the input, delayed (the histories
            # stay all ones, as the general path below would leave them).
            return delayed
        if needed is None:
            needed = np.ones(m)
        need = np.concatenate([self.need_history, needed])
        if need.min() >= 1.0 and self.min_history.min() >= 1.0:
            lows = np.ones(m)
        else:
            self.engaged = True
            # Running minimum over the look-ahead and the hold: each value at index i
            # covers need[i - (delay - lag) - hold .. i].
            span = self.delay - self.lag + self.hold + 1
            lows = minimum_filter1d(need, span, origin=(span - 1) // 2)[-m:]
        lows = np.concatenate([self.min_history, lows])
        gain = moving_average(lows, self.smooth)[-m:]
        self.need_history = need[-self.need_history.size :]
        self.min_history = lows[-self.min_history.size :]
        return np.multiply(delayed, gain[:, None].astype(np.float32), out=delayed if in_place else None)

    def flush(self) -> np.ndarray:
        """The last ``lookahead`` of audio still held in the delay line."""
        return self.process(np.zeros((self.delay, self.channels)))


class BlockSink(Protocol):
    """Where finished audio goes, block by block: a file being written, an encoder, memory.

    ``begin`` starts the piece, and starts it again when a later pass replaces an earlier
    one (what was written before is dropped); ``end`` follows the last block of a pass."""

    def begin(self) -> None: ...

    def write(self, block: np.ndarray) -> None: ...

    def end(self) -> None: ...


class Collect:
    """A sink that keeps the piece in memory, for callers that want the whole array.

    Given the piece's length (``frames``), each block is copied into one array made for the
    whole piece as it comes: the blocks themselves are let go (the limiter's next block then
    reuses their memory instead of faulting in fresh pages) and ``audio`` joins nothing."""

    def __init__(self, channels: int = 2, frames: int | None = None) -> None:
        self.channels = channels
        self.frames = frames
        self.blocks: list[np.ndarray] = []
        self._whole: np.ndarray | None = None
        self._filled = 0

    def begin(self) -> None:
        self.blocks, self._filled = [], 0
        if self.frames is not None and self._whole is None:
            self._whole = np.empty((self.frames, self.channels), dtype=np.float32)

    def array(self) -> np.ndarray | None:
        """The (frames, channels) array the piece is collected in, once begun (None: blocks
        are kept instead), for a writer that makes the blocks in it: a block written that
        is already the array's next rows is not copied."""
        return self._whole if not self.blocks else None

    def write(self, block: np.ndarray) -> None:
        n = block.shape[0]
        if self._whole is not None and not self.blocks and self._filled + n <= self._whole.shape[0]:
            rows = self._whole[self._filled : self._filled + n]
            if not _same_rows(block, rows):
                rows[...] = block
            self._filled += n
            return
        if self._whole is not None and not self.blocks and self._filled:  # longer than said: keep blocks from here
            self.blocks.append(self._whole[: self._filled].copy())
        self.blocks.append(block)

    def end(self) -> None:
        pass

    def audio(self) -> np.ndarray:
        """The piece as one (frames, channels) float32 array."""
        if self._whole is not None and not self.blocks:
            return self._whole if self._filled == self._whole.shape[0] else self._whole[: self._filled]
        if not self.blocks:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(self.blocks).astype(np.float32, copy=False)


def _same_rows(block: np.ndarray, rows: np.ndarray) -> bool:
    """Whether ``block`` is ``rows`` itself (the same memory, laid out the same way)."""
    return block.__array_interface__["data"][0] == rows.__array_interface__["data"][0] and block.strides == rows.strides


def _limited(
    blocks: Iterable[np.ndarray], gain: np.float32, limiter: Limiter, piece: Callable[[], np.ndarray | None] = lambda: None
) -> Iterator[np.ndarray]:
    """``blocks`` times ``gain`` through ``limiter``, without its delay: as many samples out as in.

    ``piece()``: the (frames, channels) array the output is collected in, if any (asked when
    the first block is, after the sinks have begun); while the limiter has not acted, each
    block is limited in its rows there (``Limiter.process_into``), so the output is already
    where it is collected."""
    skip, at, into = limiter.delay, 0, piece()
    for block in blocks:
        m = block.shape[0]
        if into is not None and not limiter.engaged and limiter.held() <= at and at + m <= into.shape[0]:
            out = limiter.process_into(block, gain, into, at)
        else:
            out = limiter.process(block, gain)
        at += m
        if skip:
            cut = min(skip, out.shape[0])
            out, skip = out[cut:], skip - cut
        if out.shape[0]:
            yield out
    yield limiter.flush()[skip:]


def master_passes(
    mix: Callable[[], Iterable[np.ndarray]],
    sample_rate: int,
    loudness: float,
    ceiling_db: float,
    sinks: Sequence[BlockSink],
    channels: int = 2,
) -> None:
    """Normalise a mix to ``loudness`` LUFS and limit its true peak to ``ceiling_db``, block
    by block into ``sinks``, so that memory stays bounded whatever the piece's length.

    ``mix()`` makes the whole mix anew, as blocks, the same samples each time (a block
    handed out is not written again: the first pass measures it while the next is made). The first
    pass measures it (integrated loudness needs the whole piece; the meter keeps 16 bytes
    per 100 ms); the second applies the gain, limits and hands each block to the sinks,
    measuring what it hands out. Where the limiter lowered the loudness by more than 0.1 LU
    the gain is corrected and the pass made again (at most three such passes), each one
    starting the sinks afresh. Silence (no measurable loudness) passes through unchanged."""
    meter = LoudnessMeter(sample_rate, channels)
    marks: list[tuple[int, tuple]] = []

    def measure(block: np.ndarray) -> None:
        marks.append((meter.position, meter.mark()))
        meter.process(block)

    # The meter measures each block in a thread of its own while the next block is made
    # (its filter and NumPy's sums let the interpreter go): blocks in order, one at a time,
    # so the same sums as measured in line.
    with ThreadPoolExecutor(1, thread_name_prefix="sonify-meter") as measuring:
        last = None
        for block in mix():
            if last is not None:
                last.result()  # at most one block waits: memory stays bounded
            last = measuring.submit(measure, block)
        if last is not None:
            last.result()
    measured = meter.loudness()
    if not math.isfinite(measured):
        _pass(mix(), sinks)
        return
    gain_db = loudness - measured
    for _ in range(3):
        limiter = Limiter(sample_rate, ceiling_db, channels=channels)
        gain = np.float32(10.0 ** (gain_db / 20.0))
        heard = _Heard(meter, marks, float(gain), limiter)
        _pass(_limited(mix(), gain, limiter, lambda: _collected_in(sinks)), sinks, heard)
        if not limiter.engaged:
            break  # a pure gain: the loudness is exactly the target
        error = loudness - heard.loudness()
        if abs(error) <= 0.1:
            break
        gain_db += error


class _Heard:
    """The loudness of the limited output, measured only from where the limiter first acts.

    Until then the output is the mix times the gain, sample for sample (the limiter's gain
    is exactly 1), which the first pass has measured already: the meter takes up the first
    pass's state at the last block start before the limiter acted (scaled by the gain) and
    measures on from there, so a piece the limiter never touches is not measured twice."""

    def __init__(self, first: LoudnessMeter, marks: Sequence[tuple[int, tuple]], gain: float, limiter: Limiter):
        self.first, self.marks, self.gain, self.limiter = first, marks, gain, limiter
        self.meter: LoudnessMeter | None = None
        self.position = 0  # output samples so far
        self.recent: list[tuple[int, np.ndarray]] = []  # (start, block) since the last mark

    def process(self, block: np.ndarray) -> None:
        if self.meter is not None:
            self.meter.process(block)
            return
        if not self.limiter.engaged:  # this block is still the mix times the gain
            self.recent.append((self.position, block))
            self.position += block.shape[0]
            since = self._mark()[0]
            while len(self.recent) > 1 and self.recent[1][0] <= since:
                self.recent.pop(0)
            return
        since, mark = self._mark()
        self.meter = self.first.resumed(mark, self.gain)
        for start, earlier in self.recent:
            if start + earlier.shape[0] > since:
                self.meter.process(earlier[max(0, since - start) :])
        self.recent = []
        self.meter.process(block)

    def _mark(self) -> tuple[int, tuple]:
        """The last mark at or before the samples handed out so far end."""
        k = bisect.bisect_right(self.marks, self.position, key=lambda m: m[0]) - 1
        return self.marks[max(k, 0)]

    def loudness(self) -> float:
        if self.meter is None:  # never acted: a pure gain of the first pass's mix
            return self.first.resumed(self.first.mark(), self.gain).loudness()
        return self.meter.loudness()


def _collected_in(sinks: Sequence[BlockSink]) -> np.ndarray | None:
    """The array a ``Collect`` among ``sinks`` collects the piece in, if one does."""
    arrays = (sink.array() for sink in sinks if isinstance(sink, Collect))
    return next((array for array in arrays if array is not None), None)


def _pass(blocks: Iterable[np.ndarray], sinks: Sequence[BlockSink], meter: LoudnessMeter | _Heard | None = None) -> None:
    for sink in sinks:
        sink.begin()
    for block in blocks:
        if meter is not None:
            meter.process(block)
        for sink in sinks:
            sink.write(block)
    for sink in sinks:
        sink.end()


MASTER_BLOCK = 262144  # samples per block when an array in memory is mastered: small temporaries


def master(audio: np.ndarray, sample_rate: int, loudness: float, ceiling_db: float) -> np.ndarray:
    """``audio`` (frames, channels) normalised to ``loudness`` LUFS with its true peak limited
    to ``ceiling_db``: ``master_passes`` over an array already in memory."""
    audio = np.asarray(audio, dtype=np.float32)
    keep = Collect(audio.shape[1], audio.shape[0])
    master_passes(
        lambda: (audio[i : i + MASTER_BLOCK] for i in range(0, audio.shape[0], MASTER_BLOCK)),
        sample_rate, loudness, ceiling_db, [keep], audio.shape[1],
    )  # fmt: skip
    return keep.audio()
