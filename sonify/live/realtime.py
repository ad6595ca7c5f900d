"""Real-time scheduling for the live path's threads, where the OS allows it.

A thread under ``SCHED_FIFO`` runs as soon as it wakes, ahead of every ordinary process on
the machine (a build, a browser), as JACK's own threads do. That alone is not enough for
Python: the scheduler's thread, once woken, needs the GIL, and a thread of ordinary priority
that holds it can be preempted by the other work for tens of milliseconds. So every thread
of the live path that takes the GIL often asks too, in order of urgency; the model's thread,
which may compute for long stretches, does not. The priorities are the lowest real-time
ones, under any JACK or audio server thread (JACK's default is 10), so sonify never delays
the sound server it feeds. Where the OS refuses (no privilege, not Linux), a thread stays as
it was."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

SCHEDULER_PRIORITY = 4  # the thread that sends MIDI at its times
RENDER_PRIORITY = 3  # the synth's renderer: blocks are rendered a few ahead, so it may wait a little
INPUT_PRIORITY = 2  # a MIDI input's reader (clock, controller): brief, every millisecond
PLAYER_PRIORITY = 1  # the player's mapping and dispatch: seconds ahead of the music


def ask_realtime(priority: int, what: str) -> bool:
    """Put the calling thread (alone: threads it starts later inherit it, so call it only in a
    thread that starts none) under ``SCHED_FIFO`` at ``priority``; True if the OS allowed it.
    ``what`` names the thread in the debug log line that says how it went."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as exc:  # AttributeError: no sched_setscheduler (macOS, Windows)
        log.debug("%s: real-time scheduling refused (%s), running at normal priority", what, exc)
        return False
    log.debug("%s: real-time scheduling (SCHED_FIFO, priority %d)", what, priority)
    return True


@contextmanager
def realtime(priority: int, what: str, wanted: bool = True) -> Iterator[bool]:
    """The calling thread under ``SCHED_FIFO`` at ``priority`` for the block (if ``wanted``
    and the OS allows it; yields whether it is), back to its scheduling before after. Threads
    started in the block inherit it: start them before."""
    got = False
    try:
        tid = threading.get_native_id()
        before = os.sched_getscheduler(tid), os.sched_getparam(tid)
    except (AttributeError, OSError):
        before = None
    if wanted and before is not None:
        got = ask_realtime(priority, what)
    try:
        yield got
    finally:
        if got:
            os.sched_setscheduler(tid, *before)
