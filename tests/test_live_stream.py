"""The live path runs at a constant cost and in bounded memory: the frames the growing Score
holds, the mapping's state, the scheduler's statistics and the terminal view's text do not
grow with the performance, and what it releases is still exactly the offline Score
(synthetic frames: no model needed)."""

from __future__ import annotations

import math
import time
import tracemalloc

import pytest
from traces import frame

from sonify import load_preset
from sonify.live.scheduler import KEPT, Scheduler
from sonify.live.stream import GrowingScore
from sonify.music.mapping import assemble, collect, make_score

pytestmark = pytest.mark.realtime  # runs alone after the rest: see .ci/run

# A text with words split into tokens, lines, stanzas and headings, repeated.
PIECES = ["I.", "\n", "\n", "The", " sun", "light", " falls", " on", " the", " water", ",", "\n",
          " and", " the", " ri", "ver", " ru", "ns", " long", ".", "\n", "──", "──", "\n", "\n"]  # fmt: skip


def frames(n: int):
    """``n`` synthetic frames with varied telemetry (so every voice changes)."""
    for i in range(n):
        wave = math.sin(i * 0.37)
        yield frame(
            i, text=PIECES[i % len(PIECES)], logprob=-1.5 - 1.2 * wave, entropy=2.0 + wave, value=1.0 + 0.5 * math.cos(i * 0.11)
        )


def test_releases_without_keeping_make_the_offline_score():
    preset = load_preset("default")
    all_frames = list(frames(600))
    growing = GrowingScore(preset, keep=False)
    releases, cued = [], []
    for start in range(0, len(all_frames), 5):
        releases.append(growing.add(all_frames[start : start + 5]))
        cued += list(growing.cued)
        assert len(growing.waiting) < 40  # only the frames of the unit being written
    releases.append(growing.finish())
    cued += list(growing.cued)
    assert sorted(cued) == list(range(len(all_frames)))  # each frame handed over once, when cued
    assert not growing.waiting and growing.tokens == len(all_frames)
    assert assemble(growing.mapper, collect(releases)) == make_score(all_frames, preset)
    assert len(growing.released.notes) == 0  # nothing kept


def test_memory_and_cost_per_token_do_not_grow_with_the_performance():
    preset = load_preset("default")
    growing = GrowingScore(preset, keep=False)
    source = frames(6000)
    seconds: list[float] = []

    def feed(n: int) -> None:
        for _ in range(n // 8):
            batch = [next(source) for _ in range(8)]
            began = time.process_time()
            growing.add(batch)
            seconds.append(time.process_time() - began)

    feed(1000)  # past the first stanzas: every voice has started
    tracemalloc.start()
    feed(1000)
    early = tracemalloc.get_traced_memory()[0]
    feed(4000)
    late = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert late - early < 64 * 1024, f"memory grew by {(late - early) / 1024:.0f} KiB over 4000 tokens"
    # CPU time (not wall time, so a loaded machine does not matter much): the last thousand
    # tokens cost about what the second thousand did; a Score rebuilt from every frame would cost 3x.
    second, last = sum(seconds[125:250]), sum(seconds[-125:])
    assert last < 1.6 * second, f"{second:.3f} s then {last:.3f} s per 1000 tokens"


def test_scheduler_statistics_stay_bounded():
    scheduler = Scheduler()
    done = []
    try:
        now = time.monotonic()
        for k in range(KEPT + 500):
            scheduler.at(now, lambda k=k: done.append(k))
        deadline = time.monotonic() + 30
        while len(done) < KEPT + 500 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        scheduler.stop()
    assert done == list(range(KEPT + 500))  # in the order scheduled
    assert scheduler.calls == KEPT + 500 and len(scheduler.lateness) == KEPT
    assert scheduler.worst == max(scheduler.worst, *scheduler.lateness) and scheduler.worst >= 0.0


def test_the_scheduler_takes_calls_from_threads_and_wakes_for_a_new_earliest_one():
    """Calls come in without a lock from several threads while the scheduler's thread sleeps
    until a later call: a new earliest one still runs at its time, and every call runs once,
    in due order (the order scheduled among equal times)."""
    import threading

    scheduler = Scheduler()
    ran: list[tuple[float, object]] = []
    try:
        now = time.monotonic()
        scheduler.at(now + 1.5, lambda: ran.append((time.monotonic(), "late")))
        time.sleep(0.1)  # the thread now sleeps until the call 1.5 s on
        early = time.monotonic() + 0.05
        scheduler.at(early, lambda: ran.append((time.monotonic(), "early")))

        def many(first: int) -> None:
            for k in range(first, first + 500):
                scheduler.at(now + 0.3 + (k % 50) * 0.001, lambda k=k: ran.append((time.monotonic(), k)))

        workers = [threading.Thread(target=many, args=(first,)) for first in (0, 500)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        deadline = time.monotonic() + 30
        while len(ran) < 1002 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        scheduler.stop()
    names = [name for _, name in ran]
    assert names[0] == "early" and names[-1] == "late" and sorted(names[1:-1]) == list(range(1000))
    assert ran[0][0] - early < 0.5, f"the new earliest call ran {ran[0][0] - early:.3f} s late (the thread slept on)"
    dues = [now + 0.3 + (k % 50) * 0.001 for k in names[1:-1]]
    assert dues == sorted(dues)
    for due in set(dues):  # among equal due times, each thread's calls in the order it scheduled them
        same = [k for k in names[1:-1] if now + 0.3 + (k % 50) * 0.001 == due]
        assert [k for k in same if k < 500] == sorted(k for k in same if k < 500)
        assert [k for k in same if k >= 500] == sorted(k for k in same if k >= 500)


def test_the_terminal_view_keeps_only_the_latest_lines_that_fit():
    import io

    from rich.console import Console

    from sonify.live.view import TerminalView
    from sonify.music.score import Cue

    view = TerminalView("sonify")
    view.console = Console(file=io.StringIO(), width=40, height=12)
    for i in range(3000):
        view.show(Cue(0.0, 0.1, 0.0, i, "\n" if i % 7 == 0 else f" w{i}", 1.0, 2.0), 0.5)
    lines = view.text.wrap(view.console, 36)
    assert len(lines) <= 12 - 3 + 1 and view.text.plain.endswith(" w2999")  # the latest text, within the screen
