"""Live MIDI out: notes, controls and MIDI clock sent at their times, and panic."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import SonifyError
from ..music.score import Control, Note
from ..outputs.files import atomic_write
from .realtime import INPUT_PRIORITY, ask_realtime
from .scheduler import Scheduler

VIRTUAL_PORT = "sonify"
# JACK delivers MIDI at the start of its next period (0 to 5.3 ms at 256 frames and 48 kHz)
# and the receiver's callback adds about a millisecond: sending 3 ms early centres the
# arrival on the due time.
MIDI_ADVANCE = 0.003
CLOCKS_PER_BEAT = 24


def midi_module():
    """mido with a backend that works here: rtmidi, through JACK where Linux has no ALSA sequencer."""
    try:
        import mido
        import rtmidi  # noqa: F401
    except ImportError:
        raise SonifyError("live MIDI needs python-rtmidi: pip install python-rtmidi") from None
    wanted = os.environ.get("MIDO_BACKEND")
    if not wanted and sys.platform.startswith("linux") and not os.path.exists("/dev/snd/seq"):
        wanted = "mido.backends.rtmidi/UNIX_JACK"
    if wanted and getattr(mido.backend, "name", None) != wanted:
        mido.set_backend(wanted)
    return mido


def output_names() -> list[str]:
    try:
        return list(midi_module().get_output_names())
    except SonifyError:
        raise
    except Exception:
        return []


def open_output(name: str | None):
    """The MIDI output port ``name`` (exact, or a unique part of a name), or a virtual port
    named ``sonify`` when ``name`` is None."""
    mido = midi_module()
    if name is None:
        return _opened(lambda: mido.open_output("out", virtual=True, client_name=VIRTUAL_PORT))
    hint = " (leave --midi-out without a name for a virtual port 'sonify')"
    api = _rtmidi_api(mido)
    if api is not None:
        return _opened(lambda: RtMidiOutput(name, api, hint))
    return mido.open_output(_matching_port(_opened(mido.get_output_names), name, repr(name), "output", hint))


def _rtmidi_api(mido) -> int | None:
    """RtMidi's number for the API mido's backend uses, or None where the backend is not RtMidi.

    With RtMidi, a port is looked up and opened through the one client that then keeps it:
    mido's port lists open a client of their own (an input and an output) and close it at
    once, and on a synchronous JACK server (-S) a client closed that soon after it started
    can leave the server's graph waiting for it for good, every port silent."""
    if not str(getattr(mido.backend, "name", "")).startswith("mido.backends.rtmidi"):
        return None
    import rtmidi

    return getattr(rtmidi, f"API_{getattr(mido.backend, 'api', None)}", rtmidi.API_UNSPECIFIED)


def _open_matching(rt, name: str, label: str, kind: str, hint: str = "") -> str:
    """Open on RtMidi object ``rt`` (a MidiIn or MidiOut, one client) its port matching
    ``name`` (see ``_matching_port``) and give that port's name; on failure ``rt`` is let go."""
    try:
        port = _matching_port(rt.get_ports(), name, label, kind, hint)
        rt.open_port(rt.get_ports().index(port))
        return port
    except BaseException:
        rt.delete()
        raise


class RtMidiOutput:
    """An RtMidi output port found and opened through one client (see ``_rtmidi_api``),
    sending mido messages."""

    def __init__(self, name: str, api: int, hint: str = ""):
        import rtmidi

        self._out = rtmidi.MidiOut(api)
        self.name = _open_matching(self._out, name, repr(name), "output", hint)
        self.closed = False

    def send(self, message) -> None:
        self._out.send_message(message.bytes())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.close_port()
            self._out.delete()


def open_input(name: str, option: str = "--clock-in", realtime: bool = False):
    """The MIDI input port ``name`` (exact, or a unique part of a name), opened without a
    callback (a ``MidiInput`` where mido's backend is RtMidi, its thread real-time where
    allowed if ``realtime``); ``option`` is the command-line option that named it, for the error."""
    mido = midi_module()
    api = _rtmidi_api(mido)
    if api is not None:
        return _opened(lambda: MidiInput(name, api, f"{option} {name!r}", realtime))
    return mido.open_input(_matching_port(_opened(mido.get_input_names), name, f"{option} {name!r}", "input"))


class MidiInput:
    """An input port whose messages reach ``callback(message, at)`` from a thread of ours;
    ``at`` is when the message arrived (``time.monotonic``).

    mido's own input calls back in the MIDI system's thread (JACK's process thread), where
    Python first waits for the GIL that the player's threads hold. Meanwhile JACK either
    waits for us (a synchronous server: every port late) or goes on to its next period and
    has the sender reuse the buffer we are still reading (messages lost, or read twice).
    RtMidi given no callback queues each message in that thread without Python, with its
    time since the one before on JACK's clock, and a thread of ours takes them from there."""

    POLL = 0.001  # seconds between looks at the queue
    QUEUE = 4096  # messages the queue holds
    ANCHOR = 1.0  # seconds of messages that place JACK's clock on ours (see _arrival)

    def __init__(self, name: str, api: int, label: str, realtime: bool = False):
        """The port ``name`` (exact, or a unique part of a name) of RtMidi's ``api``;
        ``label`` names it in the error when no one port matches. With ``realtime`` the
        thread that reads it asks for real-time scheduling (``realtime.ask_realtime``): it
        takes the GIL every millisecond, and must not keep the MIDI scheduler waiting for it."""
        import rtmidi

        self._in = rtmidi.MidiIn(api, queue_size_limit=self.QUEUE)
        self.name = _open_matching(self._in, name, label, "input")
        self._in.ignore_types(sysex=False, timing=False, active_sense=True)
        self.callback: Callable | None = None
        self._since = 0.0  # JACK's time of the latest message, from the first
        self._offsets: deque[tuple[float, float]] = deque()  # (JACK time, taken at - JACK time), offsets ascending
        self._stop = threading.Event()
        self._realtime = realtime
        self._thread = threading.Thread(target=self._run, name=f"midi-in {name}", daemon=True)
        self._thread.start()

    def _arrival(self, taken: float) -> float:
        """When the message just taken (at ``taken``) arrived. It was taken no earlier than
        it arrived, so the least of (taken - JACK time) over the last ``ANCHOR`` seconds of
        messages is where JACK's clock stands on ours (a recent window: the clocks drift)."""
        offset = taken - self._since
        while self._offsets and self._offsets[-1][1] >= offset:
            self._offsets.pop()
        self._offsets.append((self._since, offset))
        while self._offsets[0][0] < self._since - self.ANCHOR:
            self._offsets.popleft()
        return self._since + self._offsets[0][1]

    def _run(self) -> None:
        mido = midi_module()
        if self._realtime:
            ask_realtime(INPUT_PRIORITY, f"the MIDI input {self.name!r}")
        while not self._stop.is_set():
            got = self._in.get_message() if self.callback is not None else None  # until then RtMidi keeps them
            if got is None:
                time.sleep(self.POLL)
                continue
            data, delta = got
            self._since += delta
            at = self._arrival(time.monotonic())
            try:
                message = mido.Message.from_bytes(data)
            except ValueError:
                continue  # not a whole message
            if self.callback is not None:
                self.callback(message, at)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._in.close_port()
        self._in.delete()


def _opened(call):
    """``call()``, with MIDI that cannot start at all as one line that says what to do."""
    try:
        return call()
    except SonifyError:
        raise  # already says what to do (a port name that matches none, or several)
    except Exception as exc:
        raise SonifyError(
            f"cannot open MIDI ({type(exc).__name__}: {exc}); on Linux without ALSA MIDI, start a JACK server (jackd -d dummy)"
        ) from None


def _matching_port(names: list[str], name: str, label: str, kind: str, hint: str = "") -> str:
    """The one port of ``names`` that is ``name`` or, failing that, holds it (any case)."""
    names = list(names)
    matches = [n for n in names if n == name] or [n for n in names if name.lower() in n.lower()]
    if len(matches) != 1:
        listed = ", ".join(repr(n) for n in names) or "none"
        why = "matches several ports" if matches else f"is not a MIDI {kind} here"
        raise SonifyError(f"{label} {why}; available: {listed}{hint}")
    return matches[0]


class MidiOut:
    """Sends a Score's events to a port at their due times (``time.monotonic``)."""

    def __init__(self, port, scheduler: Scheduler, channels: set[int], advance: float = MIDI_ADVANCE, keep: bool = True):
        """``keep``: remember every message sent (for ``write`` and tests); without it the
        memory stays bounded however long the performance runs."""
        self.mido = midi_module()
        self.port = port
        self.scheduler = scheduler
        self.channels = set(channels)
        self.sounding: dict[tuple[int, int], int] = {}
        self.sent: list[tuple[float, object]] = []  # (monotonic time, message), for --record and tests
        self.keep = keep
        self._lock = threading.Lock()
        self._clock_until: float | None = None
        self.closed = False
        self.advance = advance
        # Asked when a note starts: the velocity it sounds with now (0: not at all), so a
        # mute or gain from a controller reaches notes already scheduled (None: the Score's).
        self.velocity: Callable[[Note], int] | None = None

    def send(self, message) -> None:
        with self._lock:
            if self.closed:
                return
            if message.type == "note_on" and message.velocity > 0:
                key = (message.channel, message.note)
                self.sounding[key] = self.sounding.get(key, 0) + 1
            elif message.type in ("note_off", "note_on"):
                key = (message.channel, message.note)
                if self.sounding.get(key, 0) > 1:
                    self.sounding[key] -= 1
                else:
                    self.sounding.pop(key, None)
            self.port.send(message)
            if self.keep:
                self.sent.append((time.monotonic(), message))

    def note(self, due: float, note: Note) -> None:
        self.note_on(due, note)
        self.note_off(due + max(note.duration, 0.001), note.channel, note.pitch)

    def note_on(self, due: float, note: Note) -> None:
        message = self.mido.Message("note_on", channel=note.channel, note=note.pitch, velocity=note.velocity)
        if self.velocity is None:
            self.scheduler.at(due - self.advance, lambda: self.send(message))
            return

        def steered() -> None:
            velocity = self.velocity(note)
            if velocity > 0:
                self.send(message.copy(velocity=velocity))

        self.scheduler.at(due - self.advance, steered)

    def note_off(self, due: float, channel: int, pitch: int) -> None:
        message = self.mido.Message("note_off", channel=channel, note=pitch, velocity=0)
        self.scheduler.at(due - self.advance, lambda: self.send(message))

    def control(self, due: float, control: Control) -> None:
        message = self.mido.Message("control_change", channel=control.channel, control=control.controller, value=control.value)
        self.scheduler.at(due - self.advance, lambda: self.send(message))

    def start_clock(self, start: float, bpm: float) -> None:
        """MIDI clock (24 a beat) from ``start``, preceded by Start, until ``stop_clock``."""
        self._clock_until = float("inf")
        # (tick, time, seconds a tick) from which the ticks follow at that spacing (clock_tempo adds).
        self._clock_segments: tuple[tuple[float, float, float], ...] = ((0.0, start, 60.0 / (bpm * CLOCKS_PER_BEAT)),)
        self.scheduler.at(start - self.advance, lambda: self.send(self.mido.Message("start")))
        self._tick(0)

    def clock_tempo(self, at: float, bpm: float) -> None:
        """From ``at`` on (not before an earlier change), the clock runs at ``bpm``."""
        if self._clock_until is None:
            return
        segments = [s for s in self._clock_segments if s[1] < at] or [self._clock_segments[0]]
        tick, time0, seconds = segments[-1]
        segments.append((tick + (at - time0) / seconds, at, 60.0 / (bpm * CLOCKS_PER_BEAT)))
        self._clock_segments = tuple(segments)

    def _tick_time(self, k: int) -> float:
        tick, time0, seconds = next(s for s in reversed(self._clock_segments) if s[0] <= k or s is self._clock_segments[0])
        return time0 + (k - tick) * seconds

    def _tick(self, k: int) -> None:
        due = self._tick_time(k)
        if self._clock_until is None or due > self._clock_until:
            return

        def tick() -> None:
            self.send(self.mido.Message("clock"))
            self._tick(k + 1)

        self.scheduler.at(due - self.advance, tick)

    def stop_clock(self, at: float) -> None:
        if self._clock_until is not None:
            self._clock_until = at
            self.scheduler.at(at, lambda: self.send(self.mido.Message("stop")))

    def panic(self) -> None:
        """Silence everything now: a note-off for each sounding note, then All Notes Off,
        All Sound Off and sustain off on every channel used; the clock stops."""
        with self._lock:
            held = list(self.sounding.items())
        for (channel, pitch), count in held:
            for _ in range(count):  # a pitch struck again while sounding: a synth may count its note-ons
                self.send(self.mido.Message("note_off", channel=channel, note=pitch, velocity=0))
        for channel in sorted(self.channels):
            for controller, value in ((64, 0), (123, 0), (120, 0)):
                self.send(self.mido.Message("control_change", channel=channel, control=controller, value=value))
        if self._clock_until is not None:
            self._clock_until = None
            self.send(self.mido.Message("stop"))

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            # What was just sent (a panic's note-offs) waits in the port's buffer for the next
            # period of the MIDI system; a port closed now drops it and a note hangs.
            time.sleep(CLOSE_DRAIN_SECONDS)
            self.port.close()

    def write(self, path: str | os.PathLike, start: float, bpm: float) -> Path:
        """What was sent, as a MIDI file (one track, times from ``start``)."""
        mido = self.mido
        midi = mido.MidiFile(type=0, ticks_per_beat=480)
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
        now = 0
        for when, message in self.sent:
            if message.type in ("clock", "start", "stop"):
                continue
            tick = max(0, round((when - start) * bpm / 60.0 * 480))
            track.append(message.copy(time=max(tick - now, 0)))
            now = max(now, tick)
        midi.tracks.append(track)
        path = Path(path)
        with atomic_write(path, "wb") as f:
            midi.save(file=f)
        return path


CLOSE_DRAIN_SECONDS = 0.05
"""How long a port stays open after its last message: a few periods of JACK or CoreMIDI."""


def panic_port(name: str | None) -> int:
    """``sonify panic``: every note off on all 16 channels of a port; returns messages sent."""
    mido = midi_module()
    port = open_output(name)
    count = 0
    try:
        # A port's buffer holds a few hundred messages a period (JACK: 5 ms): send a channel
        # at a time and let each batch leave before the next, so none is dropped.
        for channel in range(16):
            for controller, value in ((64, 0), (123, 0), (120, 0)):
                port.send(mido.Message("control_change", channel=channel, control=controller, value=value))
                count += 1
            for pitch in range(128):
                port.send(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
                count += 1
            time.sleep(0.012)
        time.sleep(CLOSE_DRAIN_SECONDS)  # let the last messages leave before the port closes
    finally:
        port.close()
    return count
