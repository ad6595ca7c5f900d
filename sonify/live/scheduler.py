"""One thread that runs callbacks at given times of the monotonic clock."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable

from .realtime import SCHEDULER_PRIORITY, ask_realtime

KEPT = 4096  # lateness of the latest calls kept for statistics (a bounded window)
MARKED = 0.001  # seconds: a call this late is kept with its due time too (``late_calls``)


class Scheduler:
    """Calls each scheduled function as close to its due time (``time.monotonic``) as the
    OS allows; functions due at the same time run in the order they were scheduled.

    With ``realtime`` its thread asks for real-time scheduling (``realtime.ask_realtime``);
    ``self.realtime`` says whether it got it."""

    def __init__(self, realtime: bool = False) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []  # the scheduler's thread's alone
        self._order = itertools.count()
        # New calls come in here without a lock (a deque's append is atomic), and the
        # scheduler's thread moves them to its heap. A lock the player took for each of the
        # hundreds of events of a step could be held when the player was made to hand over
        # the GIL: the scheduler, woken for a call that was due, then got the GIL only to
        # wait for that lock, and for the player to get the GIL back to release it.
        self._incoming: deque[tuple[float, int, Callable[[], None]]] = deque()
        self._next_due = float("-inf")  # when the thread means to wake next (-inf: it is not waiting)
        self._wake = threading.Condition(threading.Lock())
        self._stopped = False
        # Held while a call runs: clear() waits on it, so nothing it forgot is still being sent.
        self._calling = threading.RLock()
        # Seconds each of the latest calls ran after its due time; with ``worst`` and ``calls``
        # the statistics stay the same size however long the performance runs.
        self.lateness: deque[float] = deque(maxlen=KEPT)
        self.worst = 0.0  # the latest any call ran, seconds
        # (due, seconds late) of the latest calls over MARKED late: when, to set beside other
        # records of the machine (a stall probe's, the audio's xruns).
        self.late_calls: deque[tuple[float, float]] = deque(maxlen=KEPT)
        self.calls = 0
        self.errors = 0  # calls that raised
        self.realtime = False
        self._want_realtime = realtime
        self._thread = threading.Thread(target=self._run, name="sonify-scheduler", daemon=True)
        self._thread.start()

    def at(self, due: float, call: Callable[[], None]) -> None:
        """Run ``call`` at ``due`` (``time.monotonic``); callable from any thread."""
        self._incoming.append((due, next(self._order), call))
        # The thread sleeps until its earliest call: only a new earliest one changes that.
        # Waking it for every later one would have it contend for the GIL with the player,
        # which schedules hundreds of events a step.
        if due < self._next_due:
            with self._wake:
                self._wake.notify()

    def clear(self) -> None:
        """Forget everything not yet run; returns once a call already under way has ended,
        so after it nothing scheduled earlier is sent (a panic that follows is the last word)."""
        with self._wake:
            self._incoming.clear()
            self._heap.clear()
        with self._calling:
            pass

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._incoming.clear()
            self._heap.clear()
            self._wake.notify()
        self._thread.join(timeout=2)

    def _take_incoming(self) -> None:
        """The calls scheduled since the last look, onto the heap (under ``_wake``)."""
        incoming = self._incoming
        while incoming:
            heapq.heappush(self._heap, incoming.popleft())

    def _run(self) -> None:
        if self._want_realtime:
            self.realtime = ask_realtime(SCHEDULER_PRIORITY, "the MIDI scheduler")
        while True:
            with self._wake:
                while True:
                    self._take_incoming()
                    if self._stopped or (self._heap and self._heap[0][0] <= time.monotonic()):
                        break
                    # Published before the last look at the incoming calls: one added after
                    # that look sees it and notifies (under this lock, so not before the wait).
                    self._next_due = self._heap[0][0] if self._heap else float("inf")
                    if self._incoming:
                        continue
                    timeout = None if not self._heap else max(self._heap[0][0] - time.monotonic(), 0.0)
                    self._wake.wait(timeout)
                self._next_due = float("-inf")
                if self._stopped:
                    return
                due, _, call = heapq.heappop(self._heap)
                self._calling.acquire()
            try:
                late = time.monotonic() - due
                self.lateness.append(late)
                self.worst = max(self.worst, late)
                if late > MARKED:
                    self.late_calls.append((due, late))
                self.calls += 1
                call()
            except Exception:  # a sink's error must not stop the others: counted, not raised
                self.errors += 1
            finally:
                self._calling.release()
