"""Effects with state carried between blocks: a feedback-delay-network reverb and a stereo
echo. ``process(block)`` takes a mono (frames,) array and returns a stereo (2, frames) one;
calling it on one long block or on many short ones gives the same samples."""

from __future__ import annotations

import numpy as np
from scipy.linalg import hadamard
from scipy.signal import butter, lfilter

# Delay-line lengths of the reverb in milliseconds: mutually unrelated, ~80..140 ms
# (longer lines mean fewer, larger chunks: the network runs at ~700x real time).
_FDN_MS = (79.3, 86.9, 93.7, 101.3, 109.9, 118.1, 127.3, 137.9)


class Reverb:
    """An 8-line feedback delay network with an orthogonal (Hadamard) feedback matrix.

    Blocks are processed in chunks no longer than the shortest line, so each chunk only
    reads what earlier chunks wrote: the result does not depend on the block size. The
    return is darkened by a lowpass (its cutoff set by ``damping``), applied to the input:
    the network is linear and time-invariant, so filtering before it is the same as
    filtering both outputs after it, at half the cost.

    The lines share one buffer, ``ahead``: row i, column c holds what line i puts out at
    chunk position c, so a chunk reads all eight lines as one slice, and each line's new
    input is written where it will come out, ``length`` columns on. One matrix product per
    chunk gives the lines' inputs (feedback plus the injected signal, a ninth row of the
    buffer). A column is not written again once read, so the two output taps are one product
    per stretch of columns, up to the point where the columns run out and the part still
    ahead is moved back to the start."""

    def __init__(self, sample_rate: int, seconds: float, damping: float = 0.3):
        self.lengths = [round(ms * sample_rate / 1000.0) for ms in _FDN_MS]
        self.chunk = min(self.lengths)
        lengths = np.array(self.lengths, dtype=np.float64)
        n = len(self.lengths)
        # Per-line gain for a 60 dB decay over ``seconds``, folded into the feedback matrix.
        gains = 10.0 ** (-3.0 * lengths / (seconds * sample_rate))
        feedback = (hadamard(n) / np.sqrt(n)) * gains[None, :]
        inject = np.array([1, 1, 1, 1, -1, -1, -1, -1]) / 2.0
        taps = np.array([[1, -1, 1, -1, 1, -1, 1, -1], [1, 1, -1, -1, 1, 1, -1, -1]]) / 4.0
        # Rows: the lines' next inputs, then the two outputs; columns: the lines, then the input.
        self.matrix = np.zeros((n + 2, n + 1), dtype=np.float32)
        self.matrix[:n, :n] = feedback
        self.matrix[:n, n] = inject
        self.matrix[n:, :n] = taps
        cutoff = 16000.0 * (1.0 - float(np.clip(damping, 0.0, 0.95))) + 1500.0
        b, a = butter(1, min(cutoff, 0.45 * sample_rate) / (sample_rate / 2.0))
        self.b, self.a = b.astype(np.float32), a.astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self.longest = longest = max(self.lengths)
        ahead_width = longest + 8 * self.chunk
        self.ahead = np.zeros((len(self.lengths) + 1, ahead_width), dtype=np.float32)
        self._fed = np.empty(len(self.lengths) * self.chunk, dtype=np.float32)  # one chunk's line inputs
        self._taps = np.empty((2, ahead_width - longest), dtype=np.float32)  # one stretch's outputs
        self.at = 0  # the column of the next sample
        self.filter_state = np.zeros(1, dtype=np.float32)

    def process(self, block: np.ndarray, add_to: np.ndarray | None = None, scale: np.float32 | None = None) -> np.ndarray:
        """The reverb of ``block``, (2, frames); with ``add_to``, that times ``scale`` is added
        into ``add_to`` (2, frames) instead, stretch by stretch while it is in the cache, and
        ``add_to`` is returned."""
        mono, self.filter_state = lfilter(self.b, self.a, block, zi=self.filter_state)
        out = np.empty((2, block.size), dtype=np.float32) if add_to is None else add_to
        n, chunk, longest, feeding = len(self.lengths), self.chunk, self.longest, self.matrix[: len(self.lengths)]
        ahead, fed_all = self.ahead, self._fed
        # The chunk's copies go through memoryviews (float32 on both sides): a plain memcpy,
        # with less to do per call than numpy's slice assignment.
        width, injected, fed_view = ahead.shape[1], memoryview(ahead[n]), memoryview(fed_all)
        mono_view = memoryview(mono.astype(np.float32, copy=False))
        lines = [(memoryview(ahead[line]), length) for line, length in enumerate(self.lengths)]
        p = first = self.at  # the next column, and the first one not tapped yet
        for start in range(0, block.size, chunk):
            m = min(chunk, block.size - start)
            if p + longest + m > width:
                self._tap(out, start - (p - first), first, p, add_to is not None, scale)
                ahead[:n, :longest] = ahead[:n, p : p + longest]
                p = first = 0
            injected[p : p + m] = mono_view[start : start + m]
            np.matmul(feeding, ahead[:, p : p + m], out=fed_all[: n * m].reshape(n, m))
            for i, (row, length) in enumerate(lines):
                row[p + length : p + length + m] = fed_view[i * m : (i + 1) * m]
            p += m
        self._tap(out, block.size - (p - first), first, p, add_to is not None, scale)
        self.at = p
        return out

    def _tap(self, out: np.ndarray, at: int, lo: int, hi: int, add: bool, scale: np.float32 | None) -> None:
        """The two outputs of the buffer's columns ``lo:hi`` into ``out`` from column ``at``:
        written there, or with ``add``, times ``scale`` and added (the floats a chunk's own
        taps would give: each output sample is the same dot product)."""
        if hi == lo:
            return
        tapping, into = self.matrix[len(self.lengths) :], out[:, at : at + hi - lo]
        if not add:
            np.matmul(tapping, self.ahead[:, lo:hi], out=into)
            return
        taps = self._taps[:, : hi - lo]
        np.matmul(tapping, self.ahead[:, lo:hi], out=taps)
        if scale is not None:
            taps *= scale
        into += taps


class Echo:
    """A stereo ping-pong delay fed on the left: each echo crosses to the other side, ``feedback`` quieter."""

    def __init__(self, sample_rate: int, seconds: float, feedback: float):
        self.length = max(1, round(seconds * sample_rate))
        self.feedback = feedback
        self.reset()

    def reset(self) -> None:
        self.buffer = np.zeros((2, self.length), dtype=np.float32)
        self.position = 0

    def pass_silence(self, frames: int) -> None:
        """``frames`` samples of silence in and out, for an echo that holds nothing yet: what
        ``process`` of zeros would do (its buffer stays zero), only its clock runs."""
        self.position += frames

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The echoes of ``block``, (2, frames), into ``out`` when given."""
        out = np.empty((2, block.size), dtype=np.float32) if out is None else out
        buffer, feedback = self.buffer, np.float32(self.feedback)
        done = 0
        while done < block.size:
            # One stretch of the ring without a wrap: each sample is read out before the
            # sample that goes round again (crossed over, ``feedback`` quieter) takes its place.
            at = self.position % self.length
            stop = done + min(self.length - at, block.size - done)
            held, delayed = buffer[:, at : at + stop - done], out[:, done:stop]
            np.copyto(delayed, held)
            np.multiply(delayed[1], feedback, out=held[0])
            held[0] += block[done:stop]
            np.multiply(delayed[0], feedback, out=held[1])
            self.position += stop - done
            done = stop
        return out
