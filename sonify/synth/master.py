"""The master chain: loudness normalisation (ITU-R BS.1770) and a true-peak limiter.

The loudness meter follows BS.1770-4 (K-weighting, 400 ms blocks with 75 % overlap, the
-70 LUFS absolute and -10 LU relative gates); the tests hold it to pyloudnorm's figures.
It is ours because it runs in float32 at ~1 ms per second of audio, which the render's
speed needs. The limiter looks ahead so it can lower the gain before a peak arrives, and
it reads peaks between samples (4x oversampled), so the output's true peak stays under
the ceiling.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.signal import firwin, resample_poly, sosfilt, tf2sos


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
        self.state = np.zeros((self.sos.shape[0], 2, channels), dtype=np.float32)
        self.step = int(round(0.1 * sample_rate))
        self.steps: list[np.ndarray] = []  # per 100 ms: the sum of squares per channel
        self.partial = np.zeros(channels)
        self.filled = 0

    def process(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        weighted, self.state = sosfilt(self.sos, block, axis=0, zi=self.state)
        squares = np.square(weighted, dtype=np.float64)
        at = 0
        if self.filled:
            take = min(self.step - self.filled, squares.shape[0])
            self.partial += squares[:take].sum(axis=0)
            self.filled += take
            at = take
            if self.filled == self.step:
                self.steps.append(self.partial)
                self.partial, self.filled = np.zeros_like(self.partial), 0
        whole = (squares.shape[0] - at) // self.step
        if whole:
            self.steps.extend(squares[at : at + whole * self.step].reshape(whole, self.step, -1).sum(axis=1))
            at += whole * self.step
        if at < squares.shape[0]:
            self.partial += squares[at:].sum(axis=0)
            self.filled += squares.shape[0] - at

    def loudness(self) -> float:
        """Integrated loudness so far, LUFS; -inf for silence or less than 400 ms."""
        return gated_loudness(np.array(self.steps), self.step)


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


@lru_cache(maxsize=4)
def _interpolator(oversample: int, taps_per_phase: int) -> np.ndarray:
    """The limiter's polyphase interpolator, phases 1 .. oversample - 1 (read-only; designed
    once, as a piece's many stretches each get a limiter)."""
    lag = (taps_per_phase - 1) // 2
    taps = firwin(oversample * 2 * lag + 1, 1.0 / oversample) * oversample
    taps = np.concatenate([taps, np.zeros(oversample * taps_per_phase - taps.size)])
    phases = taps.reshape(-1, oversample).T[1:]
    phases.flags.writeable = False
    return phases


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
        self.interpolator = _interpolator(self.OVERSAMPLE, self.TAPS_PER_PHASE)  # phases 1..3: (3, taps per phase)
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        self.input_history = np.zeros((self.delay + self.TAPS_PER_PHASE + 1, self.channels), dtype=np.float32)
        self.engaged = False  # whether the gain has ever dropped below 1
        self.need_history = np.ones(self.delay + self.hold)
        self.min_history = np.ones(2 * self.smooth)

    def _needed_gain(self, context: np.ndarray, m: int) -> np.ndarray:
        """The gain each of the last ``m`` samples of ``context``, LAG samples back, may have:
        what keeps it, and the signal between it and its neighbours, under the ceiling."""
        width = self.TAPS_PER_PHASE
        ends = np.arange(context.shape[0] - m, context.shape[0])  # window ends, one per new sample
        level = np.abs(context[:, 0])
        for c in range(1, context.shape[1]):  # column by column: far faster than max(axis=1)
            np.maximum(level, np.abs(context[:, c]), out=level)
        peak = level[ends - self.lag]
        # Between samples the signal rises at most a few dB: interpolate only near the ceiling.
        loud = level > 0.5 * self.ceiling
        if loud.any():
            # A window ending at e needs interpolating if any of its last width + 1 samples is loud.
            window_loud = maximum_filter1d(loud.view(np.uint8), width + 1, origin=width // 2)
            near = np.flatnonzero(window_loud[ends])
            if near.size:
                e = ends[near]
                views = sliding_window_view(context, width, axis=0)  # view k holds context[k : k + width]
                current = np.abs(views[e - width + 1][..., ::-1] @ self.interpolator.T).max(axis=(1, 2))
                previous = np.abs(views[e - width][..., ::-1] @ self.interpolator.T).max(axis=(1, 2))
                peak[near] = np.maximum(peak[near], np.maximum(current, previous))
        with np.errstate(divide="ignore"):
            return np.minimum(1.0, self.ceiling / peak)

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32)
        m = x.shape[0]
        if m == 0:
            return x.copy()
        history = np.concatenate([self.input_history, x])
        need = np.concatenate([self.need_history, self._needed_gain(history, m)])
        if need.min() >= 1.0 and self.min_history.min() >= 1.0:
            lows = np.ones(m)
        else:
            self.engaged = True
            # Running minimum over the look-ahead and the hold: each value at index i
            # covers need[i - (delay - lag) - hold .. i].
            span = self.delay - self.lag + self.hold + 1
            lows = minimum_filter1d(need, span, origin=(span - 1) // 2)[-m:]
        lows = np.concatenate([self.min_history, lows])
        # Moving average over ``smooth`` values (cumulative sums: linear time).
        sums = np.cumsum(np.concatenate([[0.0], lows]))
        gain = ((sums[self.smooth :] - sums[: -self.smooth]) / self.smooth)[-m:]
        delayed = history[-(m + self.delay) : -self.delay]
        self.input_history = history[-self.input_history.shape[0] :]
        self.need_history = need[-self.need_history.size :]
        self.min_history = lows[-self.min_history.size :]
        return delayed * gain[:, None].astype(np.float32)

    def flush(self) -> np.ndarray:
        """The last ``lookahead`` of audio still held in the delay line."""
        return self.process(np.zeros((self.delay, self.channels)))


def peak_level(audio: np.ndarray) -> np.ndarray:
    """Each frame's largest absolute sample over the channels of (frames, channels) ``audio``."""
    level = np.abs(audio[:, 0])
    for c in range(1, audio.shape[1]):  # column by column: far faster than max(axis=1)
        np.maximum(level, np.abs(audio[:, c]), out=level)
    return level


def limit(
    audio: np.ndarray, sample_rate: int, ceiling_db: float, level: np.ndarray | None = None, in_place: bool = False
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The limiter over a whole piece, without its delay: the same samples as streaming it
    through :class:`Limiter` (then dropping the delay), and the stretches where it lowered
    the gain (elsewhere the output is the input).

    Only the stretches near a loud sample are processed: elsewhere the gain is exactly 1,
    so the samples pass unchanged. Each stretch gets a fresh limiter that starts far enough
    before it (in quiet) to be in the same state as one that had run from the start.
    ``level`` is ``peak_level(audio)`` if the caller has it; ``in_place`` writes the result
    into ``audio`` (a stretch reads nothing an earlier one wrote: they lie far enough apart)."""
    limiter = Limiter(sample_rate, ceiling_db, channels=audio.shape[1])
    if level is None:
        level = peak_level(audio)
    loud = np.flatnonzero(level > 0.5 * limiter.ceiling)
    out = audio if in_place else audio.copy()
    if loud.size == 0:
        return out, []
    # Every sample the gain could differ from 1 at lies within `reach` of a loud one.
    reach = limiter.delay + limiter.hold + 2 * limiter.smooth + limiter.TAPS_PER_PHASE + 8
    pre = limiter.input_history.shape[0] + reach
    starts = loud[np.concatenate([[True], np.diff(loud) > 2 * reach + pre])]
    ends = loud[np.concatenate([np.diff(loud) > 2 * reach + pre, [True]])]
    changed: list[tuple[int, int]] = []
    for first, last in zip(starts, ends):
        a, b = max(first - reach, 0), min(last + reach, audio.shape[0])
        lead = max(a - pre, 0)
        local = Limiter(sample_rate, ceiling_db, channels=audio.shape[1])
        piece = np.concatenate([local.process(audio[lead:b]), local.flush()])[local.delay :]
        out[a:b] = piece[a - lead : b - lead]
        if local.engaged:
            changed.append((a, b))
    return out, changed


def _restep(
    meter: LoudnessMeter, steps: np.ndarray, audio: np.ndarray, regions: list[tuple[int, int]], sample_rate: int
) -> np.ndarray:
    """``steps`` with the 100 ms steps that ``regions`` of ``audio`` touch measured again.

    The K-filter forgets within a few milliseconds, so each region is re-filtered from
    MARGIN before it (in step with the rest) to MARGIN after it."""
    step = meter.step
    margin = 3 * step  # whole steps, so the fresh meter's steps line up with the others
    out = steps.copy()
    for a, b in regions:
        s0 = max(a - margin, 0) // step
        s1 = min((b + margin) // step + 1, len(steps))
        begin = max(s0 * step - margin, 0)
        local = LoudnessMeter(sample_rate, audio.shape[1])
        local.process(audio[begin : s1 * step])
        fresh = np.array(local.steps)
        skip = (s0 * step - begin) // step
        out[s0:s1] = fresh[skip : skip + (s1 - s0)]
    return out


def master(
    audio: np.ndarray, sample_rate: int, loudness: float, ceiling_db: float, meter: LoudnessMeter | None = None
) -> np.ndarray:
    """Normalise ``audio`` to ``loudness`` LUFS, then limit its true peak to ``ceiling_db``.

    ``meter`` has measured ``audio`` already (while it was rendered). Where the limiter
    works it lowers the loudness a little: only the steps it touched are measured again,
    the gain corrected, and the limiter run again until within 0.1 LU (at most three passes)."""
    audio = np.asarray(audio, dtype=np.float32)
    if meter is None:
        meter = LoudnessMeter(sample_rate, audio.shape[1])
        meter.process(audio)
    base = np.array(meter.steps)
    measured = gated_loudness(base, meter.step)
    if not math.isfinite(measured):
        return audio.copy()
    gain_db = loudness - measured
    level = peak_level(audio)
    for _ in range(3):
        gain = 10.0 ** (gain_db / 20.0)
        # |x g| rounds as |x| g does, and rounding keeps order: the scaled audio's level is the level scaled.
        out, regions = limit(audio * np.float32(gain), sample_rate, ceiling_db, level * np.float32(gain), in_place=True)
        if not regions:
            break  # a pure gain: the loudness is exactly the target
        error = loudness - gated_loudness(_restep(meter, base * gain**2, out, regions, sample_rate), meter.step)
        if abs(error) <= 0.1:
            break
        gain_db += error
    return out
