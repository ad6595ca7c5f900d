"""Joining an Ableton Link session (``sonify play --link``): the session's tempo and beat
phase are the leader's tempo map, and the performance follows it as it follows a MIDI clock
(``follow.Leader``, ``follow.FollowingScheduler``: every event waits until shortly before its
moment on the session's grid, so a tempo change of the session reaches the notes already
scheduled).

Link (through the ``aalink`` binding, ``pip install 'sonify[link]'``) runs in a thread of its
own with an asyncio loop, as the binding needs one; that thread reads the session's beat and
tempo every few milliseconds, and the other threads extrapolate from the latest reading (the
beat moves on at the session's tempo, which is what Link itself computes between two
readings, until the tempo changes).

Link aligns the *phase* of its peers' beats, modulo the quantum each peer gives; the beats'
magnitudes may differ from peer to peer. So the quantum is the preset's bar, and beat 0 of
the performance is a session beat that is a whole number of quanta: sonify's bar lines fall on
the bar lines of every peer that uses the same quantum (Live's default, one 4/4 bar).
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
SETTLE_SECONDS = 0.2  # after finding a peer: its session's timeline has replaced ours
LEAD_BEATS = 2.0  # beat 0 is the first bar line at least this many beats after joining
TIGHT = 0.0002  # seconds: a reading taken within this is placed in time well enough
DRIFT = 0.001  # seconds: a loose reading further than this off the extrapolation is taken anyway


def require_aalink() -> None:
    """Exit with the install hint (a ``SonifyError``) when the Link binding is missing."""
    try:
        import aalink  # noqa: F401
    except ImportError:
        raise SonifyError("--link needs the aalink package: pip install 'sonify[link]'") from None


class LinkFollower(Leader):
    """A peer of the Link session on the local network. ``bpm`` is the preset's tempo (the
    session's tempo if no other peer is there yet), ``quantum`` the beats a bar; the player
    holds a whole bar at a time, so that its bars stay on the session's."""

    def __init__(self, bpm: float, quantum: int = 4):
        """Start Link (it looks for the session's peers from now on); ``join`` chooses beat 0."""
        require_aalink()
        from aalink import Link

        super().__init__(bpm)
        self.quantum = quantum
        self.hold_beats = float(quantum)
        self._Link = Link
        self._lock = threading.Lock()
        self._reading: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # (monotonic, session beat, bpm)
        self.zero = math.inf  # the session's beat that is our beat 0 (none until joined)
        self.peers = 0
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sonify-link", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self._ready.is_set():
            self.close()
            raise SonifyError(f"--link: Link did not start ({self._error or 'no answer in 10 s'})")
        self._since = time.monotonic()

    def join(self, wait: float = JOIN_SECONDS) -> None:
        """Choose beat 0: the session's first bar line at least ``LEAD_BEATS`` from now, once
        another peer is found (waiting up to ``wait`` seconds since Link started) and its
        session's timeline has replaced ours. Call it just before the performance starts."""
        deadline = self._since + wait
        while self.peers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.peers:
            time.sleep(SETTLE_SECONDS)
        _, beat, _ = self._latest()
        self.zero = math.ceil((beat + LEAD_BEATS) / self.quantum) * self.quantum
        self.started.set()

    # ------------------------------------------------------------------ the Link thread

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
        """Take the session's beat and tempo, placed in time between two clock readings; a
        reading that took long is used only if it shows a change (tempo, or the beat moved
        off the extrapolation: a peer joined or the session's timeline jumped)."""
        for _ in range(3):
            before = time.monotonic()
            beat, tempo = link.beat, link.tempo
            after = time.monotonic()
            if after - before <= TIGHT:
                break
        at = (before + after) / 2.0
        with self._lock:
            t, was, bpm = self._reading
            tight = after - before <= TIGHT
            moved = tempo != bpm or not abs(was + (at - t) * bpm / 60.0 - beat) * 60.0 / tempo <= DRIFT
            if tight or moved:
                self._reading = (at, beat, tempo)
            self.peers = link.num_peers

    def _latest(self) -> tuple[float, float, float]:
        with self._lock:
            return self._reading

    # ------------------------------------------------------------------ reading

    @property
    def tempo(self) -> float:
        """The session's tempo, bpm."""
        return self._latest()[2]

    def beat_now(self, now: float | None = None) -> float:
        """Our beat at ``now``: the session's beat less beat 0's (negative before it)."""
        now = time.monotonic() if now is None else now
        t, beat, tempo = self._latest()
        return beat + (now - t) * tempo / 60.0 - self.zero

    def time_of_beat(self, beat: float) -> float:
        """When our ``beat`` falls (monotonic), at the session's tempo now."""
        t, at, tempo = self._latest()
        return t + (beat + self.zero - at) * 60.0 / tempo

    def close(self) -> None:
        """Leave the session."""
        self._closing.set()
        self._thread.join(timeout=2)
