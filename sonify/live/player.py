"""The live player: the model runs ahead in its own thread; the growing Score is scheduled
a fixed latency ahead of the listener on MIDI, audio, OSC and the terminal, all from one
clock. If the model falls behind, the timeline holds (a rest) instead of stuttering; on
any exit, Ctrl-C and errors included, every sounding note is stopped."""

from __future__ import annotations

import gc
import math
import queue
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..errors import SonifyError
from ..model.frame import Frame
from ..music.calibration import Calibration
from ..music.preset import Preset
from ..music.score import Note
from .audio import AudioOut
from .control import Steering
from .follow import Leader
from .midi import MidiOut
from .osc import OscOut
from .page import LivePage
from .realtime import PLAYER_PRIORITY, realtime
from .scheduler import Scheduler
from .stream import GrowingScore
from .view import TerminalView

_END = object()


@dataclass
class Performance:
    """What happened: tokens played, holds, xruns, and per token how long the model took
    against how long the token lasts (8 bytes a token each). The Score and the schedule of
    MIDI notes only when the player keeps them (``LiveTiming.keep``)."""

    tokens: int = 0
    start: float = 0.0  # monotonic time of Score time 0
    holds: int = 0
    held_seconds: float = 0.0
    xruns: int = 0
    late_to_synth: int = 0  # notes and controls our synth was handed after their moment had been rendered
    end: float = 0.0  # monotonic time the music ended (before the tail)
    model_seconds: array = field(default_factory=lambda: array("d"))
    token_seconds: array = field(default_factory=lambda: array("d"))
    # Per step of the player (a batch of tokens): the CPU time its thread spent mapping and
    # dispatching (waits excluded), and how many tokens had been taken by the step's end.
    compute_seconds: array = field(default_factory=lambda: array("d"))
    compute_tokens: array = field(default_factory=lambda: array("q"))
    interrupted: BaseException | None = None  # the Ctrl-C or SIGTERM that stopped it
    realtime: bool = False  # whether the player's thread ran under real-time scheduling
    scheduled: list[tuple[float, str, int, int]] = field(default_factory=list)  # (due, kind, channel, pitch) of MIDI notes
    score: object = None


@dataclass(frozen=True)
class LiveTiming:
    """When a performance plays: ``latency`` seconds ahead of the model, events sent at
    least ``lead`` seconds before they are due, MIDI ``clock`` out or not, a ``max_seconds``
    length (None: until the model stops), and how far ahead (``horizon``, seconds) the Score
    is extended before the mapping waits for playback to catch up. With ``keep`` the report
    holds the whole Score and the schedule of MIDI notes (they grow with the performance);
    without it the memory stays bounded however long it plays. With ``follow`` the
    performance keeps to a leader's tempo map (an incoming MIDI clock, a Link session): it
    starts on the leader's beat 0, every event
    falls on the leader's beat grid (the sinks' scheduler has to be a
    ``follow.FollowingScheduler``), and no clock is sent. With ``steering`` a controller
    moves parameters while it plays (``control.Steering``). With ``realtime`` the player's
    thread asks for real-time scheduling while it plays (``realtime.realtime``; the
    scheduler's and the synth's threads ask for themselves)."""

    latency: float = 0.3
    lead: float = 0.05
    clock: bool = True
    max_seconds: float | None = None
    horizon: float = 3.0
    keep: bool = True
    follow: Leader | None = None
    steering: Steering | None = None
    realtime: bool = False

    def __post_init__(self) -> None:
        if not self.latency >= 0.02:
            raise SonifyError(f"--latency has to be at least 0.02 s, but is {self.latency:g}")


class Player:
    """Plays a stream of Frames live through the outputs given, on one clock."""

    # Python threads hand over the GIL every 5 ms by default, as long as an audio block:
    # while it plays, a thread that waits for the GIL (the MIDI scheduler, the audio
    # callback) asks for it after this many seconds instead.
    switch_interval = 0.0005

    def __init__(
        self,
        preset: Preset,
        *,
        midi: MidiOut | None = None,
        audio: AudioOut | None = None,
        osc: OscOut | None = None,
        view: TerminalView | None = None,
        page: LivePage | None = None,
        scheduler: Scheduler | None = None,
        timing: LiveTiming | None = None,
    ):
        """With ``timing.steering`` a controller moves parameters as it plays: the model runs at most
        a couple of tokens ahead and the Score is extended at most a beat ahead (instead of
        ``timing.horizon``), so a new temperature is heard within a bar; mutes and gains
        apply to MIDI and OSC notes as they are sent, to our synth's as they are scheduled."""
        timing = timing or LiveTiming()
        steering = timing.steering
        self.preset = preset
        self.keep = timing.keep
        self.follow = timing.follow
        # Now, as the timeline counts it: the monotonic clock, or the leader's beat in nominal time.
        self._now = self.follow.nominal_now if self.follow is not None else time.monotonic
        self.midi, self.audio, self.osc, self.view, self.page = midi, audio, osc, view, page
        sinks = (midi, osc, page)
        self.scheduler = scheduler or next((s.scheduler for s in sinks if s is not None), None) or Scheduler()
        self.latency, self.lead, self.clock = timing.latency, timing.lead, timing.clock
        self.max_seconds = timing.max_seconds
        self.realtime = timing.realtime
        # The Score is extended only while less than this much music is scheduled ahead:
        # the mapping's work is spread over the performance instead of crowding the start.
        self.horizon = timing.horizon
        self.batch = 8  # frames taken from the model per step
        self.stop_request = threading.Event()
        self.steering = steering
        self.ahead = 64  # frames the model may run ahead of the mapping
        self._clock_sent: tuple = ()  # the tempo map as the MIDI clock out has it
        if steering is not None:
            steering.preset = preset.name
            self.horizon = min(self.horizon, 60.0 / preset.music.tempo)
            self.ahead = 2
            if midi is not None:
                midi.velocity = steering.velocity
            if osc is not None:
                osc.mute = lambda note: steering.velocity(note) == 0
                steering.listeners.append(osc.control)
            if view is not None:
                view.controls = steering.describe
                steering.listeners.append(lambda param, value: view.refresh())

    # ------------------------------------------------------------------ producer

    def _produce(self, frames: Iterator[Frame], out: queue.Queue, done: threading.Event, report: Performance) -> None:
        last = time.perf_counter()
        try:
            for frame in frames:
                now = time.perf_counter()
                report.model_seconds.append(now - last)
                while not done.is_set():
                    try:
                        out.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if done.is_set():
                    return
                while self.steering is not None and self.steering.holding and not done.is_set():
                    time.sleep(0.02)  # hold: no new token until it is released; the music so far plays out
                last = time.perf_counter()
            out.put(_END)
        except BaseException as exc:  # handed to the player, which stops cleanly and reports it
            out.put(exc)

    # ------------------------------------------------------------------ play

    def play(self, frames: Iterator[Frame], calibration: Calibration | None = None) -> Performance:
        """Perform ``frames`` as they come; ``calibration`` is the model's (default: the
        shipped model's). Returns what happened."""
        report = Performance()
        inbox: queue.Queue = queue.Queue(maxsize=self.ahead)
        done = threading.Event()
        producer = threading.Thread(target=self._produce, args=(frames, inbox, done, report), name="sonify-model", daemon=True)
        growing = GrowingScore(self.preset, calibration, keep=self.keep)
        zero = self.audio.start() if self.audio is not None else None
        if self.view is not None:
            self.view.start()
        producer.start()
        # Started before this thread turns real-time: the model's thread must not inherit it.
        with realtime(PLAYER_PRIORITY, "the live player", self.realtime) as report.realtime:
            switch = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval)
            gc.freeze()  # what exists now is never collected: no long collector pauses mid-performance
            t0: float | None = None
            offset = 0.0
            opened: dict[tuple, float] = {}
            score = None
            try:
                ended = False
                while not ended:
                    if t0 is not None:
                        self._wait_until(t0 + offset + growing.last_time - self.horizon)
                    batch = self._next_batch(inbox, self.batch)
                    began = time.thread_time()
                    ended = batch and batch[-1] is _END
                    frames_in = [f for f in batch if isinstance(f, Frame)]
                    release = growing.add(frames_in, *self._steered_music(growing))
                    if self.max_seconds is not None and growing.end >= self.max_seconds:
                        ended = True
                    if ended:
                        cued = growing.cued  # the last add and the finish go out as one release
                        release.extend(growing.finish())
                        growing.cued = {**cued, **growing.cued}
                    if t0 is None:
                        t0 = self.follow.origin if self.follow is not None else time.monotonic() + self.latency
                        report.start = t0
                        if self.midi is not None and self.clock and self.follow is None:
                            self.midi.start_clock(t0, self.preset.music.tempo)
                        if self.osc is not None:
                            self.osc.event(t0, "start")
                        if self.page is not None:
                            self.page.event(t0, "start")
                    offset = self._hold_if_late(release, t0, offset, report)
                    self._dispatch(release, growing, t0, offset, zero, opened, report)
                    self._tempo_and_preset_out(growing, t0 + offset)
                    report.token_seconds.extend(c.duration for c in sorted(release.cues, key=lambda c: (c.time, c.token)))
                    report.tokens = growing.tokens
                    report.compute_seconds.append(time.thread_time() - began)
                    report.compute_tokens.append(growing.tokens)
                score = growing.score if self.keep else None
                report.score = score
                report.end = t0 + offset + growing.end
                if self.midi is not None:
                    self.midi.stop_clock(report.end)
                if self.osc is not None:
                    self.osc.event(report.end, "stop")
                if self.page is not None:
                    self.page.event(report.end, "stop", growing.end)
                tail = self.audio.engine.tail_seconds if self.audio is not None else 0.05
                self._wait_until(report.end + tail)
            except KeyboardInterrupt as exc:
                report.interrupted = exc
            finally:
                done.set()
                sys.setswitchinterval(switch)
                gc.unfreeze()
                self._silence(report)
        return report

    def _steered_music(self, growing: GrowingScore) -> tuple:
        """(the preset to switch to at the next bar line or None, the tempo from here on) as
        the controller has them; the leader's tempo wins over the controller's when following."""
        if self.steering is None:
            return None, None
        name = self.steering.take_preset()
        switch = self.steering.presets[name] if name is not None else None
        preset = switch or growing.preset
        return switch, None if self.follow is not None else preset.music.tempo * self.steering.tempo

    def _tempo_and_preset_out(self, growing: GrowingScore, base: float) -> None:
        """A tempo change goes to the MIDI clock out; a preset switch to the listeners when its bar comes."""
        if self.steering is None:
            return
        changes, sent = growing.mapper.tempo.changes, self._clock_sent
        if self.midi is not None and self.clock and self.follow is None and changes != sent:
            same = next((k for k, (a, b) in enumerate(zip(changes, sent)) if a != b), min(len(changes), len(sent)))
            for change in changes[same:]:
                self.midi.clock_tempo(base + change.time, change.bpm)
            if same == len(changes) and same < len(sent):  # a change undone before its beat came
                self.midi.clock_tempo(base + sent[same].time, changes[-1].bpm)
            self._clock_sent = changes
        if growing.switched is not None:
            at, name = growing.switched
            growing.switched = None
            if self.midi is not None:
                self.midi.channels |= {v.channel for v in growing.mapper.voices()}
            self.scheduler.at(base + at, lambda: self.steering.switched(name))

    def _next_batch(self, inbox: queue.Queue, most: int) -> list:
        while True:
            if self.stop_request.is_set():
                raise KeyboardInterrupt
            try:
                item = inbox.get(timeout=0.05)
                break
            except queue.Empty:
                continue
        batch = [item]
        while len(batch) < most and batch[-1] is not _END and not isinstance(batch[-1], BaseException):
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        if isinstance(batch[-1], BaseException):
            raise batch[-1]
        return batch

    def _hold_if_late(self, release, t0: float, offset: float, report: Performance) -> float:
        """Push the rest of the timeline back when the next events would be due too soon."""
        times = (
            [n.time for n in release.notes + release.opened] + [c.time for c in release.cues] + [c.time for c in release.controls]
        )
        if not times:
            return offset
        due = t0 + offset + min(times)
        soonest = self._now() + self.lead
        if due < soonest:
            held = soonest - due
            if self.follow is not None:  # whole beats (or bars): the music stays on the leader's grid
                step = self.follow.hold_beats * 60.0 / self.follow.bpm
                held = math.ceil(held / step - 1e-9) * step
            report.holds += 1
            report.held_seconds += held
            offset += held
        return offset

    def _dispatch(
        self, release, growing: GrowingScore, t0: float, offset: float, zero: float | None, opened: dict, report: Performance
    ) -> None:
        base = t0 + offset
        if self.midi is not None:
            for note in release.notes:
                self.midi.note(base + note.time, note)
            for note in release.opened:
                self.midi.note_on(base + note.time, note)
            if self.keep:
                report.scheduled += [(base + n.time, "on", n.channel, n.pitch) for n in release.notes + release.opened]
            for note in release.closed:
                self.midi.note_off(base + note.time + note.duration, note.channel, note.pitch)
            for control in release.controls:
                self.midi.control(base + control.time, control)
        if self.audio is not None:
            if self.steering is not None:
                release = self._steered(release, opened)
            audio_offset = t0 - zero + offset
            # A note opened and closed within this release is an ordinary note to the synth.
            ending = {_key(n): n for n in release.closed}
            whole = [ending.pop(_key(n)) for n in release.opened if _key(n) in ending]
            # Ends first: a note that closes now may decide whether a new one steals its voice.
            for note in ending.values():
                held = opened.pop(_key(note), offset)
                self.audio.close(replace(note, duration=note.duration + offset - held))
            self.audio.schedule(release.notes + whole, release.controls, audio_offset)
            whole_keys = {_key(n) for n in whole}
            for note in release.opened:
                if _key(note) not in whole_keys:
                    self.audio.open(note, audio_offset)
                    opened[_key(note)] = offset  # the hold so far, until it closes
        if self.osc is not None:
            for note in release.notes:
                self.osc.note(base + note.time, note)
            for cue in release.cues:
                self.osc.token(base + cue.time, growing.cued[cue.token])
        if self.page is not None:
            begun = {u.tokens[0]: u for u in release.units if u.tokens}
            for cue in sorted(release.cues, key=lambda c: c.token):
                self.page.token(base + cue.time, cue, growing.cued[cue.token], begun.pop(cue.token, None))
            for note in release.notes:
                self.page.note(base + note.time, note)
            for note in release.opened:
                self.page.note(base + note.time, note, held=True)
            for note in release.closed:
                self.page.note_end(base + note.time + note.duration, note)
        if self.view is not None:
            for cue in release.cues:
                frame = growing.cued[cue.token]
                spread = sum(frame.attention.entropy) / max(len(frame.attention.entropy), 1)
                self.scheduler.at(base + cue.time, lambda cue=cue, spread=spread: self.view.show(cue, spread))

    def _steered(self, release, opened: dict):
        """The release with the controller's mutes and gains applied, for our synth (which
        takes its notes when they are scheduled); ``opened``: the held notes it sounds."""
        steering = self.steering

        def heard(notes: list[Note]) -> list[Note]:
            return [replace(n, velocity=v) for n in notes if (v := steering.velocity(n)) > 0]

        starting = heard(release.opened)
        keys = {_key(n) for n in starting}
        # A held note muted at its start is not ended either; one that sounds ends as it would.
        closed = [
            replace(n, velocity=steering.velocity(n) or n.velocity) for n in release.closed if _key(n) in keys or _key(n) in opened
        ]
        return replace(release, notes=heard(release.notes), opened=starting, closed=closed)

    def _wait_until(self, when: float) -> None:
        while self._now() < when:
            if self.stop_request.is_set():
                raise KeyboardInterrupt
            time.sleep(min(0.05, max(when - self._now(), 0.001)))

    def _silence(self, report: Performance) -> None:
        """Stop everything: nothing scheduled stays, every sounding note ends."""
        self.scheduler.clear()
        if self.midi is not None:
            self.midi.panic()
        if self.audio is not None:
            self.audio.panic()
            time.sleep(0.08)
            report.xruns = self.audio.xruns
            report.late_to_synth = self.audio.engine.late
            self.audio.stop()
        if self.view is not None:
            self.view.stop()
        if self.page is not None:
            self.page.event(None, "stop")


def _key(note: Note) -> tuple:
    return (note.voice, note.pitch, note.token, note.time)
