"""With ``--realtime`` the live path's threads run under real-time scheduling where the OS
allows it, fall back to normal priority where it refuses, and the player's thread is itself
again after a performance; by default they run at normal priority (no sound server needed:
the threads' scheduling is read back from the OS)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from traces import frame

from sonify import load_preset
from sonify.live.player import LiveTiming, Player
from sonify.live.realtime import PLAYER_PRIORITY, SCHEDULER_PRIORITY, ask_realtime, realtime
from sonify.live.scheduler import Scheduler

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="no sched_setscheduler on this OS")


def allowed() -> bool:
    """Whether this process may put a thread under SCHED_FIFO (asked in a throwaway thread)."""
    got = []
    thread = threading.Thread(target=lambda: got.append(ask_realtime(1, "a probe")))
    thread.start()
    thread.join()
    return got[0]


def policy(tid: int) -> tuple[int, int]:
    return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority


def ran(scheduler: Scheduler) -> None:
    """Returns once the scheduler's thread has run a call (so it has asked for its scheduling)."""
    done = threading.Event()
    scheduler.at(time.monotonic(), done.set)
    assert done.wait(5)


def test_the_scheduler_thread_is_real_time_where_allowed():
    scheduler = Scheduler(realtime=True)
    try:
        ran(scheduler)
        assert scheduler.realtime == allowed()
        expected = (os.SCHED_FIFO, SCHEDULER_PRIORITY) if scheduler.realtime else (os.SCHED_OTHER, 0)
        assert policy(scheduler._thread.native_id) == expected
    finally:
        scheduler.stop()
    plain = Scheduler()  # the default: normal priority
    try:
        ran(plain)
        assert not plain.realtime
        assert policy(plain._thread.native_id) == (os.SCHED_OTHER, 0)
    finally:
        plain.stop()


def test_a_refused_request_leaves_the_thread_as_it_was():
    got, seen = [], []

    def run() -> None:
        with realtime(10_000, "a priority no OS has") as granted:  # EINVAL: refused whoever asks
            got.append(granted)
            seen.append(policy(threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert got == [False] and seen == [(os.SCHED_OTHER, 0)]


def test_the_player_thread_is_real_time_while_it_plays_and_itself_after():
    preset = load_preset("default")
    me = threading.get_native_id()
    before = policy(me)
    seen, model = [], []

    def frames():
        for i in range(12):
            time.sleep(0.01)  # the player has taken the first batch and is playing
            seen.append(policy(me))  # read from the model's thread
            model.append(policy(threading.get_native_id()))
            yield frame(i, text=" word")

    scheduler = Scheduler(realtime=True)
    try:
        report = Player(preset, scheduler=scheduler, timing=LiveTiming(latency=0.05, max_seconds=0.5, realtime=True)).play(frames())
    finally:
        scheduler.stop()
    assert report.realtime == allowed()
    if report.realtime:
        assert (os.SCHED_FIFO, PLAYER_PRIORITY) in seen
    assert policy(me) == before
    assert set(model) == {(os.SCHED_OTHER, 0)}  # the model's thread, started before, never was
