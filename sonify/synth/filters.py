"""A recursive filter for a signal that is silent between known spans, which stops ringing
once its memory has died away instead of running on in denormal numbers.

A lowpass fed zeros decays towards zero but, in float32, never reaches it: its memory sinks
below the smallest normal number (1.2e-38) and cycles there, and arithmetic on such
denormal numbers is 15 to 20 times slower (a voice's bus filter spent ~110 ns a sample,
most of a render's filtering time, ringing on through the silences between notes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

# Below this the memory is let go (set to exactly zero): the tail it would still have made
# lies 600 dB below full scale.
QUIET = 1e-30
# Where the memory is checked in a silence: at absolute samples that are multiples of this,
# so the same samples come out whichever blocks the timeline is cut into.
SETTLE = 512


def merged(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of (start, stop) index ranges, as sorted disjoint ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(s for s in spans if s[1] > s[0]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def lfilter_spans(
    b: np.ndarray, a: np.ndarray, x: np.ndarray | None, zi: np.ndarray, spans: Sequence[tuple[int, int]], start: int, frames: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """``lfilter(b, a, x, zi=zi)`` over ``frames`` samples starting at absolute sample
    ``start``, for an ``x`` that is exactly zero outside ``spans`` (``x`` None: all zeros).

    Through a silence the filter rings on as before until its memory, checked at each
    multiple of SETTLE, is below QUIET; from there the memory is zero and so is the output.
    Returns (y, final memory); y is None when it would be all zeros."""
    spans = merged(spans)
    if not spans and not zi.any():
        return None, zi
    y = np.zeros(frames, dtype=np.float32) if x is None else x
    pos = 0
    for lo, hi in [*spans, (frames, frames)]:
        while pos < lo and zi.any():  # ring on through the silence, one grid step at a time
            step = min(lo, SETTLE - (start + pos) % SETTLE + pos)
            y[pos:step], zi = lfilter(b, a, np.zeros(step - pos, dtype=np.float32), zi=zi)
            pos = step
            if (start + pos) % SETTLE == 0 and np.abs(zi).max() < QUIET:
                zi = np.zeros_like(zi)
        if hi > lo:
            y[lo:hi], zi = lfilter(b, a, y[lo:hi], zi=zi)
        pos = max(pos, hi)
    return y, zi
