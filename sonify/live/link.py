"""Joining an Ableton Link session (``sonify play --link``): the session's tempo and beat
phase are the leader's tempo map, and the performance follows it as it follows a MIDI clock
(``follow.Leader``, ``follow.FollowingScheduler``).

Link (through the ``aalink`` binding, ``pip install 'sonify[link]'``) runs in its own thread
with an asyncio loop, as the binding needs one; that thread reads the session's beat and
tempo every few milliseconds, and the other threads extrapolate from the latest reading
(the beat moves on at the session's tempo, exactly what Link itself computes between two
readings, until the tempo changes). Beat 0 of the performance is a bar line of the session
(Link's quantum: the preset's beats a bar), so sonify's bars fall on the session's bars.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

from ..errors import SonifyError
from .follow import Leader

POLL_SECONDS = 0.002  # how often the session's beat is read
JOIN_SECONDS = 2.0  # how long to wait for the session's peers before choosing beat 0
SETTLE_SECONDS = 0.2  # after finding peers: their session's timeline has reached ours
LEAD_BEATS = 2.0  # beat 0 is the first bar line at least this many beats after joining


class LinkFollower(Leader):
    """A peer of the Link session on the local network; ``bpm`` is the preset's tempo (the
    session's tempo if no other peer is there yet) and ``quantum`` the beats a bar."""

    def __init__(self, bpm: float, quantum: int = 4, join_seconds: float = JOIN_SECONDS):
        try:
            from aalink import Link
        except ImportError:
            raise SonifyError("--link needs the aalink package: pip install 'sonify[link]'") from None
        super().__init__(bpm)
        self._Link = Link
        self.quantum = quantum
        self._lock = threading.Lock()
        self._reading: tuple[float, float, float] | None = None  # (monotonic time, session beat, tempo)
        self.zero = math.nan  # the session's beat that is our beat 0
        self.peers = 0
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sonify-link", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise SonifyError(f"--link: Link did not start ({self._error})")
        deadline = time.monotonic() + join_seconds
        while self.peers == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.peers:
            time.sleep(SETTLE_SECONDS)
        with self._lock:
            t, beat, _ = self._reading
        self.zero = math.ceil((beat + LEAD_BEATS) / quantum) * quantum
        self.started.set()

    def _run(self) -> None:
        try:
            asyncio.run(self._session())
        except BaseException as exc:  # reported by the constructor
            self._error = exc
            self._ready.set()

    async def _session(self) -> None:
        link = self._Link(self.bpm)
        link.quantum = self.quantum
        link.enabled = True
        try:
            while not self._closing.is_set():
                self._read(link)
                self._ready.set()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            link.enabled = False

    def _read(self, link) -> None:
        for _ in range(3):  # a reading whose moment is not known to 1 ms is read again
            before = time.monotonic()
            beat, tempo = link.beat, link.tempo
            after = time.monotonic()
            if after - before < 0.001:
                break
        with self._lock:
            self._reading = ((before + after) / 2.0, beat, tempo)
            self.peers = link.num_peers

    @property
    def tempo(self) -> float:
        """The session's tempo, bpm."""
        with self._lock:
            return self._reading[2]

    def beat_now(self, now: float | None = None) -> float:
        """Our beat at ``now``: the session's beat less beat 0's (negative before it)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            t, beat, tempo = self._reading
        return beat + (now - t) * tempo / 60.0 - self.zero

    def time_of_beat(self, beat: float) -> float:
        with self._lock:
            t, at, tempo = self._reading
        return t + (beat + self.zero - at) * 60.0 / tempo

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)
