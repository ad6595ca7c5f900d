"""The page (`sonify render --page`, `sonify page`) and the live page (`sonify play --page`),
checked in a real browser: Debian's Chromium driven by Playwright, with the network off."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile
from browser import keep_artefact, launch, offline_context
from traces import frame as synthetic_frame
from traces import read as read_frames

from sonify import OutputSettings, load_preset, render
from sonify.live.page import LivePage, LiveWords
from sonify.live.player import LiveTiming, Player
from sonify.live.scheduler import Scheduler
from sonify.music.mapping import make_score
from sonify.outputs.ogg import encode_ogg_vorbis, ogg_crc
from sonify.outputs.page import PageAudio, PageInfo, is_heading, page_data, page_html, page_info, text_lines
from sonify.outputs.transcript import words
from sonify.synth import render_audio

TEXT = (
    "# The Sea\n\n"
    "The sea is calm tonight,\n"
    "the tide is full, the moon lies fair\n"
    "upon the straits.\n\n"
    "II.\n\n"
    "Listen! you hear the grating roar\n"
    "of pebbles which the waves draw back.\n"
)
SHORT = "# The Sea\n\nThe sea is calm,\nthe tide full.\n"

# Waits for the seek to land and two animation frames to pass, then says which word is lit.
SEEK_AND_READ = """async (t) => {
  const audio = document.getElementById("audio");
  const landed = new Promise((done) => audio.addEventListener("seeked", done, { once: true }));
  audio.currentTime = t;
  await landed;
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const lit = document.querySelectorAll(".w.lit");
  return [lit.length, lit.length ? Number(lit[0].dataset.i) : -1, lit.length ? lit[0].textContent : ""];
}"""

# Records, on the page's own clock, each time a word gains the highlight.
WATCH_HIGHLIGHT = """() => {
  window.lits = [];
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.classList.contains("lit") && !(r.oldValue || "").split(" ").includes("lit")) {
        window.lits.push([performance.now() / 1000, Number(r.target.dataset.i)]);
      }
    }
  }).observe(document.getElementById("text"), { subtree: true, attributes: true, attributeFilter: ["class"], attributeOldValue: true });
}"""


@pytest.fixture(scope="module")
def piece(tmp_path_factory):
    """The default model reading TEXT, rendered with its page (audio embedded)."""
    folder = tmp_path_factory.mktemp("page")
    done = render(read=TEXT, output=OutputSettings(folder, "sea", outputs=("audio", "json", "trace", "page")))
    return folder, done


@pytest.fixture(scope="module")
def browser():
    playwright, chromium = launch()
    yield chromium
    chromium.close()
    playwright.stop()


def page_payload(html: str) -> tuple[dict, bytes]:
    data = json.loads(re.search(r'<script type="application/json" id="sonify-data">(.*?)</script>', html, re.S).group(1))
    audio = re.search(r'<script type="application/octet-stream" id="sonify-audio"[^>]*>(.*?)</script>', html, re.S)
    return data, base64.b64decode(audio.group(1)) if audio else b""


def open_page(browser, path: Path, **options):
    """The page from disk, offline: every request but the page itself (and, linked, its audio) is aborted."""
    allowed = tuple(p.resolve().as_uri() for p in [path, *path.parent.glob("*.wav")])
    context, blocked = offline_context(browser, allowed, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("html[data-ready=true]", timeout=10_000)
    return context, page, blocked, errors


# ---------------------------------------------------------------------- the file


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("data:"):
                self.external.append(value)


def test_the_page_holds_everything_it_needs(piece):
    folder, done = piece
    html = done.paths["page"].read_text(encoding="utf-8")
    links = _Links()
    links.feed(html)
    assert links.external == []  # no script, style, font or audio from anywhere else
    assert "iframe" not in links.tags
    data, ogg = page_payload(html)
    expected = words(done.score)
    assert [w["text"] for w in data["words"]] == [w.text for w in expected]
    assert [w["start"] for w in data["words"]] == [round(w.start, 4) for w in expected]
    assert [w["tokens"] for w in data["words"]] == [list(w.tokens) for w in expected]
    assert len(data["tokens"]) == len(done.score.cues) and len(data["notes"]) == len(done.score.notes)
    first = data["tokens"][0]
    assert {"surprisal", "entropy", "rank", "prob", "top", "attention", "layers"} <= set(first)
    assert len(first["layers"]) == len(done.trace.frames[0].layers.update)
    # the lines as written: a heading, stanzas, line breaks
    assert [(ln["heading"], ln["stanza"]) for ln in data["lines"]] == [
        (True, True), (False, True), (False, False), (False, False), (True, True), (False, True), (False, False)
    ]  # fmt: skip
    with soundfile.SoundFile(io.BytesIO(ogg)) as f:
        assert (f.format, f.subtype, f.samplerate, f.channels) == ("OGG", "VORBIS", done.sample_rate, 2)
        assert f.frames == done.frames
    minutes = done.frames / done.sample_rate / 60
    assert len(html.encode()) / minutes < 1.5e6  # the acceptance's weight: 1.5 MB per minute of audio


def test_the_same_piece_gives_the_same_page(piece):
    """The page again, its audio now rendered whole and encoded in one go: the same bytes as
    the render's, whose audio went to the Ogg encoder block by block as it was made."""
    folder, done = piece
    again = page_html(
        page_data(done.trace.frames, done.score, page_info(done.trace.header, done.score)),
        PageAudio(render_audio(done.score, load_preset("default").synth), done.sample_rate),
    )
    assert again == done.paths["page"].read_text(encoding="utf-8")


def test_model_text_cannot_break_out_of_the_page():
    cues_text = ["</script><script>alert(1)</script>", " {{script}}", " <b>bold</b>\n"]
    frames = [synthetic_frame(i, text=t) for i, t in enumerate(cues_text)]
    score = make_score(frames, load_preset("default"))
    html = page_html(page_data(frames, score, PageInfo("<title>")), PageAudio(link="x.wav"))
    data, _ = page_payload(html)
    assert html.count("<script") == 2  # the data and the page's own script; nothing from the text
    assert "".join(t["text"] for t in data["tokens"]) == "".join(cues_text)
    assert "<title>&lt;title&gt;</title>" in html


def test_ogg_vorbis_is_deterministic_and_its_checksums_hold():
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal((48000 * 12, 2)) * 0.1).astype(np.float32)
    first, second = encode_ogg_vorbis(samples, 48000), encode_ogg_vorbis(samples, 48000)
    assert first == second  # libsndfile picks a random stream serial; ours is fixed
    pos, pages = 0, 0
    while pos < len(first):
        assert first[pos : pos + 4] == b"OggS"
        segments = first[pos + 26]
        end = pos + 27 + segments + sum(first[pos + 27 : pos + 27 + segments])
        stored = struct.unpack_from("<I", first, pos + 22)[0]
        assert ogg_crc(first[pos : pos + 22] + b"\0\0\0\0" + first[pos + 26 : end]) == stored
        pos, pages = end, pages + 1
    assert pages > 10
    back, rate = soundfile.read(io.BytesIO(first), dtype="float32")
    assert rate == 48000 and back.shape == samples.shape


@pytest.mark.parametrize(
    ("line", "after_break", "heading"),
    [
        ("# Title", False, True),
        ("KING RICHARD II:", True, True),
        ("KING RICHARD II:", False, False),
        ("II.", True, True),
        ("Part 2", True, True),
        ("The sea is calm tonight,", True, False),
        ("O", True, False),
        ("A VERY LONG LINE IN CAPITALS THAT GOES ON AND ON", True, False),
    ],
)
def test_headings(line, after_break, heading):
    assert is_heading(line, after_break) is heading


def test_live_words_group_as_the_file_page_does():
    frames = read_frames(TEXT)
    score = make_score(frames, load_preset("default"))
    grouped = LiveWords()
    seen: dict[int, dict] = {}
    breaks, headings = [], []
    for unit in score.units:
        for update in grouped.add(unit):
            if update["new"]:
                assert update["index"] == len(seen)
                breaks.append(update["breaks"])
                if "heading" in update:
                    headings.append(update["heading"])
            seen[update["index"]] = update
    headings.append(grouped.last_line_is_heading())
    expected = words(score)
    assert [(u["text"], u["start"], u["end"]) for u in seen.values()] == [(w.text, w.start, w.end) for w in expected]
    assert breaks == [0] + [w.newlines for w in expected[:-1]]
    assert headings == [line["heading"] for line in text_lines(expected)]


# ---------------------------------------------------------------------- the commands


def sonify(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "sonify", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def test_page_command_from_a_render_embeds_or_links(piece, tmp_path):
    folder, done = piece
    made = sonify("page", folder / "sea.wav", "--out", tmp_path)
    assert made.returncode == 0, made.stderr
    data, ogg = page_payload((tmp_path / "sea.html").read_text(encoding="utf-8"))
    assert [w["text"] for w in data["words"]] == [w.text for w in words(done.score)]
    assert len(ogg) > 10_000 and "audio from" in made.stderr
    linked = sonify("page", folder / "sea.trace.jsonl", "--page-audio", "link", "--name", "linked")
    assert linked.returncode == 0, linked.stderr
    html = (folder / "linked.html").read_text(encoding="utf-8")
    assert '<audio id="audio" preload="auto" src="sea.wav">' in html and 'id="sonify-audio"' not in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["page", "nowhere/x.wav"], "no trace for nowhere/x.wav"),
        (["render", "--trace", "{trace}", "--no-audio", "--page", "--page-audio", "link"], "needs the audio file"),
    ],
)
def test_page_mistakes_are_one_line_exit_2(piece, tmp_path, args, message):
    folder, _ = piece
    done = (
        sonify(*[a.format(trace=folder / "sea.trace.jsonl") for a in args], "--out", tmp_path)
        if args[0] == "render"
        else sonify(*args)
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_score_writes_a_page_without_the_audio_file(piece, tmp_path):
    folder, _ = piece
    done = sonify("score", folder / "sea.trace.jsonl", "--no-audio", "--page", "--out", tmp_path, "--name", "quiet")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "quiet.html").stat().st_size > 50_000 and not (tmp_path / "quiet.wav").exists()


# ---------------------------------------------------------------------- in the browser


def test_seeking_lights_the_word_that_sounds(piece, browser):
    folder, done = piece
    context, page, blocked, errors = open_page(browser, done.paths["page"])
    ws = words(done.score)
    # Units that take no time (a lone "#", art past its line's share) are shown but never lit.
    timed = [k for k, w in enumerate(ws) if w.end > w.start]
    for k in (timed[0], timed[3], timed[len(timed) // 2], timed[-5], timed[-1]):
        count, lit, text = page.evaluate(SEEK_AND_READ, (ws[k].start + ws[k].end) / 2)
        assert (count, lit, text) == (1, k, ws[k].text)
    gap = next(w.end for w, nxt in zip(ws, ws[1:]) if nxt.start - w.end > 0.3)  # a rest after a line
    assert page.evaluate(SEEK_AND_READ, gap + 0.1)[0] == 0
    page.locator(".w").nth(7).click()  # a click plays from that word
    page.wait_for_function("document.querySelector('.w.lit') && document.querySelector('.w.lit').dataset.i === '7'")
    assert page.evaluate("document.getElementById('audio').currentTime") == pytest.approx(ws[7].start, abs=0.01)
    assert blocked == [] and errors == []
    context.close()


def test_the_highlight_follows_the_music_in_real_time(piece, browser):
    folder, done = piece
    context, page, blocked, errors = open_page(browser, done.paths["page"])
    ws = words(done.score)
    start = ws[3].start - 0.2
    page.evaluate(SEEK_AND_READ, start)
    page.evaluate(WATCH_HIGHLIGHT)
    page.evaluate("document.getElementById('audio').play()")
    page.wait_for_timeout(3500)
    page.evaluate("document.getElementById('audio').pause()")
    lits = page.evaluate("window.lits")
    # every word that started while it played was lit, in order, none skipped
    started = [k for k, w in enumerate(ws) if start < w.start < start + 3.0]
    seen = [k for _, k in lits]
    assert len(started) >= 4 and seen[: len(started)] == started
    # each lit on time: page clock against the words' times, from the first lit word
    t0, k0 = lits[0]
    offsets = [(t - t0) - (ws[k].start - ws[k0].start) for t, k in lits]
    assert max(abs(x) for x in offsets) <= 0.5, offsets
    assert blocked == [] and errors == []
    context.close()


def test_keys_hover_and_the_screenshot(piece, browser):
    folder, done = piece
    context, page, blocked, errors = open_page(browser, done.paths["page"], viewport={"width": 1280, "height": 860})
    ws = words(done.score)
    page.evaluate(SEEK_AND_READ, (ws[4].start + ws[4].end) / 2)
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.querySelector('.w.lit') && document.querySelector('.w.lit').dataset.i === '{5}'")
    page.keyboard.press("Space")
    page.wait_for_function("!document.getElementById('audio').paused")
    page.keyboard.press("Space")
    page.wait_for_function("document.getElementById('audio').paused")
    page.locator(".w").nth(8).hover()
    tip = page.locator("#tip")
    assert tip.is_visible()
    assert ws[8].text in tip.inner_text() and re.search(r"\d+(\.\d+)?%", tip.inner_text())  # its alternatives, with probabilities
    page.evaluate(SEEK_AND_READ, (ws[8].start + ws[8].end) / 2)
    page.wait_for_timeout(200)  # the highlight's fade
    shot = page.screenshot()
    path = keep_artefact("page-desktop.png", shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert blocked == [] and errors == []
    context.close()


def test_on_a_phone_with_reduced_motion(piece, browser):
    folder, done = piece
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    context, page, blocked, errors = open_page(browser, done.paths["page"], reduced_motion="reduce", **phone)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    assert page.evaluate("parseFloat(getComputedStyle(document.querySelector('.w')).fontSize)") >= 16
    assert page.evaluate("getComputedStyle(document.querySelector('.w')).transitionDuration") == "0s"
    ws = words(done.score)
    assert page.evaluate(SEEK_AND_READ, (ws[-3].start + ws[-3].end) / 2)[1] == len(ws) - 3
    keep_artefact("page-phone.png", page.screenshot())
    assert blocked == [] and errors == []
    context.close()


def test_a_linked_page_plays_the_file_beside_it(piece, browser, tmp_path):
    folder, done = piece
    made = sonify("page", folder / "sea.json", "--page-audio", "link", "--name", "sea-linked")
    assert made.returncode == 0, made.stderr
    context, page, blocked, errors = open_page(browser, folder / "sea-linked.html")
    ws = words(done.score)
    assert page.evaluate(SEEK_AND_READ, (ws[6].start + ws[6].end) / 2)[1:] == [6, ws[6].text]
    assert blocked == [] and errors == []
    context.close()


# ---------------------------------------------------------------------- live


def test_the_live_page_shows_each_word_within_a_second_of_its_sound(browser):
    frames = read_frames(SHORT)
    preset = load_preset("default")
    scheduler = Scheduler()
    live = LivePage("127.0.0.1:0", scheduler)
    try:
        live.describe(PageInfo("live"), make_score(frames[:1], preset).voices)
        context = browser.new_context()
        page = context.new_page()
        page.goto(live.url)
        page.wait_for_selector("html[data-ready=true]")
        page.evaluate(
            """() => { window.appeared = [];
            new MutationObserver((records) => { for (const r of records) for (const n of r.addedNodes)
              if (n.classList && n.classList.contains("w")) window.appeared.push([Date.now() / 1000, Number(n.dataset.i), n.textContent]); })
            .observe(document.getElementById("text"), { childList: true, subtree: true }); }"""
        )
        wall = time.time() - time.monotonic()
        report = Player(preset, page=live, scheduler=scheduler, timing=LiveTiming(latency=0.5)).play(iter(frames))
        assert report.holds == 0 and report.interrupted is None
        page.wait_for_function("document.getElementById('status').textContent.includes('ended')")
        appeared = page.evaluate("window.appeared")
        expected = words(report.score)
        assert [k for _, k, _ in appeared] == list(range(len(expected)))
        lateness = [t - (wall + report.start + w.start) for (t, _, _), w in zip(appeared, expected)]
        assert all(-0.05 <= x <= 1.0 for x in lateness), lateness
        text = page.evaluate("[...document.querySelectorAll('.w')].map((w) => w.textContent)")
        assert text == [w.text for w in expected]
        lines = page.evaluate("[...document.querySelectorAll('.line')].map((l) => l.classList.contains('heading'))")
        assert lines == [line["heading"] for line in text_lines(expected)]
        # a browser that comes late gets what it missed
        late = context.new_page()
        late.goto(live.url)
        late.wait_for_selector("html[data-ready=true]")
        assert late.evaluate("document.querySelectorAll('.w').length") == len(expected)
        context.close()
    finally:
        scheduler.stop()
        live.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_play_serves_the_live_page(browser, tmp_path):
    (tmp_path / "line.txt").write_text("The sea is calm tonight.\n")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sonify",
        "play",
        "--read",
        tmp_path / "line.txt",
        "--page",
        f"127.0.0.1:{port}",
        "--latency",
        "1.5",
    ]
    process = subprocess.Popen(list(map(str, command)), stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line.strip() == f"live page: http://127.0.0.1:{port}/", line
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.getElementById('status').textContent.includes('ended')", timeout=30_000)
        assert (
            page.evaluate("[...document.querySelectorAll('.w')].map((w) => w.textContent).join(' ')") == "The sea is calm tonight."
        )
        context.close()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()


def test_a_long_live_set_keeps_the_page_bounded(browser):
    """Hours of words: the page keeps the latest few thousand, the server a fixed history."""
    frames = [synthetic_frame(i, text=f" w{i}" + ("\n" if i % 9 == 8 else "")) for i in range(5000)]
    score = make_score(frames, load_preset("default"))
    scheduler = Scheduler()
    live = LivePage("127.0.0.1:0", scheduler)
    try:
        live.describe(PageInfo("long"), score.voices)
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url)
        page.wait_for_selector("html[data-ready=true]")
        begun = {u.tokens[0]: u for u in score.units}
        for cue in score.cues:  # all due now: as fast as the socket goes
            live.token(time.monotonic(), cue, frames[cue.token], begun.get(cue.token))
        page.wait_for_function("[...document.querySelectorAll('.w')].pop()?.textContent === 'w4999'", timeout=30_000)
        shown = page.evaluate("[...document.querySelectorAll('.w')].map((w) => w.textContent)")
        assert 3000 <= len(shown) <= 4000 and shown == [f"w{i}" for i in range(5000 - len(shown), 5000)]
        assert page.evaluate("document.querySelectorAll('.line').length") <= 4000 // 9 + 2
        assert len(live.history) == 3000 and errors == []
        context.close()
    finally:
        scheduler.stop()
        live.close()
