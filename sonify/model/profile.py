"""Where a decoding step spends its time: wall time summed per named phase.

The decoder and the engine call their clock between phases (``lap("qkv")``: the time
since the previous lap belongs to the qkv phase). The clock is :func:`no_clock` unless
someone profiles (``benchmarks/bench_engine.py --verbose``), so a lap costs one empty call.
"""

from __future__ import annotations

from time import perf_counter


def no_clock(phase: str) -> None:
    """The clock when nobody profiles: does nothing."""


class PhaseClock:
    """Sums the wall time between consecutive laps under the name each lap gives."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = perf_counter()

    def restart(self) -> None:
        """Forget the time since the last lap (e.g. spent outside the measured loop)."""
        self._last = perf_counter()

    def __call__(self, phase: str) -> None:
        now = perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + (now - self._last)
        self._last = now
