"""The page of the README's example, measured: what --page adds to a render, what the page
weighs, how fast a headless browser loads it, how closely the highlight follows the music,
and how soon the live page shows a word after it sounds.

    flock /tmp/sonify-cpu.lock python benchmarks/bench_page.py [--repeats 3]

1. The README's example trace (`sonify render "Shall I compare thee"`: 200 tokens, seed 0)
   is made once; then its files are rendered with and without the page, alternately, in
   one process. Goal: the page adds at most 2 s.
2. The page's size per minute of audio (goal: at most 1.5 MB a minute).
3. Debian's Chromium, headless, through Playwright, with the network off, loads the page
   from disk until it is ready to play (goal: at most 2 s), several times.
4. It plays 10 s; each word must light within 0.5 s of its time (on the page's own clock).
5. The live page (`sonify play --page`, audio off) plays the first 60 tokens; each word's
   lateness is when it appeared in the browser minus when it sounded (goal: under 1 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import launch, offline_context  # noqa: E402

from sonify import Length, OutputSettings, load_preset  # noqa: E402
from sonify.live.page import LivePage  # noqa: E402
from sonify.live.player import LiveTiming, Player  # noqa: E402
from sonify.live.scheduler import Scheduler  # noqa: E402
from sonify.music.mapping import make_score  # noqa: E402
from sonify.outputs.page import PageInfo  # noqa: E402
from sonify.outputs.transcript import words  # noqa: E402
from sonify.pipeline import DEFAULT_OUTPUTS, render_files, run_model  # noqa: E402

PROMPT = "Shall I compare thee"
WATCH = """() => {
  window.lits = [];
  new MutationObserver((records) => {
    for (const r of records) if (r.target.classList.contains("lit") && !(r.oldValue || "").includes("lit"))
      window.lits.push([performance.now() / 1000, Number(r.target.dataset.i)]);
  }).observe(document.getElementById("text"), { subtree: true, attributes: true, attributeFilter: ["class"], attributeOldValue: true });
}"""
APPEAR = """() => { window.appeared = [];
  new MutationObserver((records) => { for (const r of records) for (const n of r.addedNodes)
    if (n.classList && n.classList.contains("w")) window.appeared.push([Date.now() / 1000, Number(n.dataset.i)]); })
  .observe(document.getElementById("text"), { childList: true, subtree: true }); }"""


def render_times(trace, preset, folder: Path, repeats: int) -> tuple[list[float], list[float], object]:
    plain, paged, result = [], [], None
    for _ in range(repeats):
        for outputs, times in ((DEFAULT_OUTPUTS, plain), ((*DEFAULT_OUTPUTS, "page"), paged)):
            start = time.perf_counter()
            result = render_files(trace, preset, OutputSettings(folder, "shall-i-compare-thee", outputs))
            times.append(time.perf_counter() - start)
    return plain, paged, result


def load_and_sync(browser, page_path: Path, repeats: int, ws) -> tuple[list[float], list[float]]:
    loads = []
    for _ in range(repeats):
        context, blocked = offline_context(browser, (page_path.as_uri(),))
        page = context.new_page()
        start = time.perf_counter()
        page.goto(page_path.as_uri())
        page.wait_for_selector("html[data-ready=true]", timeout=20_000)
        loads.append(time.perf_counter() - start)
        assert not blocked, blocked
        if len(loads) < repeats:
            context.close()
    page.evaluate(WATCH)
    page.evaluate("document.getElementById('audio').play()")
    page.wait_for_timeout(10_000)
    lits = page.evaluate("window.lits")
    context.close()
    t0, k0 = lits[0]
    offsets = [(t - t0) - (ws[k].start - ws[k0].start) for t, k in lits]
    return loads, offsets


def live_lateness(browser, frames, preset) -> list[float]:
    scheduler = Scheduler()
    live = LivePage("127.0.0.1:0", scheduler)
    try:
        live.describe(PageInfo(PROMPT, "live"), make_score(frames[:1], preset).voices)
        context = browser.new_context()
        page = context.new_page()
        page.goto(live.url)
        page.wait_for_selector("html[data-ready=true]")
        page.evaluate(APPEAR)
        wall = time.time() - time.monotonic()
        report = Player(preset, page=live, scheduler=scheduler, timing=LiveTiming()).play(iter(frames))
        page.wait_for_function("document.getElementById('status').textContent.includes('ended')")
        appeared = page.evaluate("window.appeared")
        context.close()
    finally:
        scheduler.stop()
        live.close()
    if report.holds:
        print(f"  (the timeline held {report.holds} times, {report.held_seconds:.2f} s: lateness includes it)")
    return [t - (wall + report.start + w.start) for (t, _), w in zip(appeared, words(report.score))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    preset = load_preset("default")
    trace = run_model(PROMPT, length=Length(tokens=200), preset=preset)
    with tempfile.TemporaryDirectory() as folder:
        plain, paged, result = render_times(trace, preset, Path(folder), args.repeats)
        page_path = result.paths["page"].resolve()
        size = page_path.stat().st_size
        minutes = result.frames / result.sample_rate / 60
        print(f"README example: {len(trace.frames)} tokens, piece {result.score.end:.1f} s, audio {minutes * 60:.1f} s")
        print(f"render without the page: best {min(plain):.2f} s, median {statistics.median(plain):.2f} s")
        print(f"render with the page:    best {min(paged):.2f} s, median {statistics.median(paged):.2f} s")
        print(f"the page adds {min(paged) - min(plain):.2f} s (best against best; goal: at most 2 s)")
        print(f"page size {size / 1e6:.2f} MB = {size / 1e6 / minutes:.2f} MB per minute of audio (goal: at most 1.5)")
        playwright, browser = launch()
        try:
            loads, offsets = load_and_sync(browser, page_path, args.repeats, words(result.score))
            print(
                f"headless Chromium, offline, load to ready: best {min(loads):.2f} s, worst {max(loads):.2f} s (goal: at most 2 s)"
            )
            print(
                f"playing 10 s: {len(offsets)} words lit, offset from their times median {statistics.median(offsets) * 1000:+.0f} ms, "
                f"largest {max(offsets, key=abs) * 1000:+.0f} ms (goal: within 500 ms)"
            )
            late = live_lateness(browser, list(trace.frames[:60]), preset)
            print(
                f"live page, {len(late)} words: appeared after their sound by median {statistics.median(late) * 1000:.0f} ms, "
                f"max {max(late) * 1000:.0f} ms (goal: under 1000 ms)"
            )
        finally:
            browser.close()
            playwright.stop()


if __name__ == "__main__":
    main()
