"""Following the room's clock: incoming MIDI clock (24 a beat, Start, Stop, Continue, Song
Position) sets where the beat is, and the events of the Score go out on that beat grid.

The player keeps working in *nominal* time: the Score's seconds at the preset's tempo from
an origin. A ``ClockFollower`` reads the incoming clock and turns a nominal time into the
moment its beat falls on the leader's grid; a ``FollowingScheduler`` holds every call until
shortly before that moment (``LOOKAHEAD``) and only then gives it to the real scheduler, so
a tempo change reaches notes already scheduled: they stay on the grid as the tempo moves.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from .scheduler import Scheduler

CLOCKS_PER_BEAT = 24
MOST_LAG = 0.025  # seconds: the most the arrivals' lag is taken to be
LOOKAHEAD = 0.03  # seconds: how long before its moment a call is handed to the real scheduler
TICKS_FOR_TEMPO = 12  # the grid is fitted to the latest ticks (half a beat: it follows a change within a beat)


class Leader:
    """A tempo map kept by someone else: where the leader's beat is now and when a beat falls
    (``beat_now``, ``time_of_beat``, given by a subclass), and the player's nominal time on it.

    ``bpm`` is the preset's tempo: a nominal time ``origin + s`` is beat ``s * bpm / 60``.
    ``started`` is set once beat 0 is known; ``stopped`` when the leader stops the music.
    A player that falls behind holds ``hold_beats`` beats at a time (or a multiple), so that
    its music stays on the leader's grid: a beat for a MIDI clock, a bar for a Link session."""

    def __init__(self, bpm: float, origin: float | None = None):
        self.bpm = bpm
        self.origin = time.monotonic() if origin is None else origin
        self.hold_beats = 1.0
        self.started = threading.Event()
        self.stopped = threading.Event()

    def beat_now(self, now: float | None = None) -> float:
        """The leader's beat at ``now`` (monotonic; default: now), -inf while none is known."""
        raise NotImplementedError

    def time_of_beat(self, beat: float) -> float:
        """When ``beat`` falls (monotonic), inf while no beat is known."""
        raise NotImplementedError

    def beat_of(self, nominal: float) -> float:
        return (nominal - self.origin) * self.bpm / 60.0

    def nominal(self, beat: float) -> float:
        return self.origin + beat * 60.0 / self.bpm

    def nominal_now(self) -> float:
        """Now, in the player's nominal time (before beat 0 is known: the origin's past)."""
        beat = self.beat_now()
        return self.nominal(beat) if beat != float("-inf") else self.origin - 1e9

    def time_of(self, nominal: float) -> float:
        """When the nominal time ``nominal`` falls on the leader's grid (monotonic)."""
        return self.time_of_beat(self.beat_of(nominal))

    def close(self) -> None:
        """Stop listening to the leader."""


class ClockFollower(Leader):
    """Where the leader's beat is, from its MIDI clock arriving on an input port.
    Before Start (or after Stop) no beat is known; after Start, beat 0 is the first tick."""

    def __init__(self, bpm: float, origin: float | None = None):
        super().__init__(bpm, origin)
        self._lock = threading.Lock()
        self.ticks = 0  # clock ticks since beat 0 (Song Position moves it)
        self.last: float | None = None  # arrival of the latest tick
        # (tick, arrival) of the latest ticks: a line through them is the grid (arrivals come
        # a period at a time; the fit averages that out of both the tempo and the phase).
        self.recent: deque[tuple[int, float]] = deque(maxlen=TICKS_FOR_TEMPO)
        self._fit: tuple[float, float] | None = None  # (when tick 0 fell, seconds a tick)
        self._spread = 0.0  # variance of the ticks' arrivals about the line (smoothed)
        self.running = False
        self._armed = False  # Start came: the next tick is beat 0
        self.port = None

    # ------------------------------------------------------------------ input

    def listen(self, port) -> None:
        """Read clock from ``port``, an input from ``open_input`` (opened without a callback)."""
        self.port = port
        port.callback = self.receive

    def receive(self, message, at: float | None = None) -> None:
        """One incoming message (``at``: its arrival, monotonic; now if not given)."""
        at = time.monotonic() if at is None else at
        with self._lock:
            if message.type == "start":
                self.ticks, self.last, self._armed, self.running = 0, None, True, True
                self.recent.clear()
                self.stopped.clear()
            elif message.type == "continue":
                self._armed, self.running = self.last is None, True
                self.stopped.clear()
            elif message.type == "stop":
                self.running = False
                self.stopped.set()
            elif message.type == "songpos":
                self.ticks, self.last = message.pos * 6, None  # sixteenths: 6 ticks each
                self.recent.clear()
                self._armed = self.running
            elif message.type == "clock" and self.running:
                if self._armed:
                    self._armed = False
                    self.started.set()
                elif self.last is not None:
                    self.ticks += 1
                    if at - self.last > 1.0:  # a pause: the spacing before it says nothing now
                        self.recent.clear()
                self.last = at
                self.recent.append((self.ticks, at))
                self._fit = self._line()

    def _line(self) -> tuple[float, float]:
        """Least squares through the latest ticks: (arrival of tick 0, seconds a tick)."""
        nominal = 60.0 / (self.bpm * CLOCKS_PER_BEAT)
        if len(self.recent) < 3:
            tick, at = self.recent[-1]
            seconds = self._fit[1] if self._fit is not None else nominal
            return at - tick * seconds, seconds
        n = len(self.recent)
        mk = sum(k for k, _ in self.recent) / n
        mt = sum(t for _, t in self.recent) / n
        var = sum((k - mk) ** 2 for k, _ in self.recent)
        seconds = sum((k - mk) * (t - mt) for k, t in self.recent) / var
        seconds = min(max(seconds, nominal / 8), nominal * 8)  # a sane tempo, whatever arrives
        # A tick arrives at the start of the audio server's next period, so arrivals lie up to
        # a period after the sending, evenly spread: their mean lag is half that spread
        # (sqrt(3) standard deviations of a uniform spread), and the grid is that much earlier.
        variance = sum((t - mt - (k - mk) * seconds) ** 2 for k, t in self.recent) / n
        self._spread += 0.1 * (variance - self._spread)
        lag = min(math.sqrt(3.0 * self._spread), MOST_LAG)
        return mt - mk * seconds - lag, seconds

    # ------------------------------------------------------------------ reading

    @property
    def tick_seconds(self) -> float:
        """The leader's tick length now (the preset's tempo before any tick)."""
        with self._lock:
            return self._fit[1] if self._fit is not None else 60.0 / (self.bpm * CLOCKS_PER_BEAT)

    @property
    def tempo(self) -> float:
        """The leader's tempo, bpm."""
        return 60.0 / (self.tick_seconds * CLOCKS_PER_BEAT)

    def beat_now(self, now: float | None = None) -> float:
        """The leader's beat now (-inf before Start); between ticks it moves on at the
        latest tempo, never past the next tick (a clock that stops holds the beat)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.last is None or self._fit is None:
                return float("-inf")
            zero, tick = self._fit
            return min((now - zero) / tick, self.ticks + 1.0) / CLOCKS_PER_BEAT

    def time_of_beat(self, beat: float) -> float:
        """When ``beat`` falls (monotonic), from the latest tick at the latest tempo (inf before Start)."""
        with self._lock:
            if self.last is None or self._fit is None:
                return float("inf")
            zero, tick = self._fit
            return zero + beat * CLOCKS_PER_BEAT * tick

    def close(self) -> None:
        if self.port is not None:
            self.port.close()


class FollowingScheduler:
    """A scheduler whose due times are nominal: each call waits here until shortly before
    its moment on the leader's grid, then goes to the real ``Scheduler`` at that moment."""

    def __init__(self, follower: Leader, scheduler: Scheduler):
        self.follower = follower
        self.scheduler = scheduler
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sonify-follow", daemon=True)
        self._thread.start()

    def at(self, due: float, call: Callable[[], None]) -> None:
        """Run ``call`` when the nominal time ``due`` comes on the leader's grid."""
        with self._lock:
            heapq.heappush(self._heap, (due, next(self._order), call))

    def clear(self) -> None:
        """Forget everything not yet run (see ``Scheduler.clear``)."""
        with self._lock:
            self._heap.clear()
        self.scheduler.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopped.wait(0.002):
            now = time.monotonic()
            with self._lock:
                while self._heap:
                    when = self.follower.time_of(self._heap[0][0])
                    if when > now + LOOKAHEAD:
                        break
                    _, _, call = heapq.heappop(self._heap)
                    self.scheduler.at(when, call)
