"""A real JACK audio server with its dummy driver, started for the live tests (no sound card
needed): see ../shared/LIVE_TEST_RIG.md. Under CI=true a missing jackd fails the tests."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BANNER = ("jackdmp", "Copyright", "free software", "ABSOLUTELY NO WARRANTY", "under certain conditions", "self-connect-mode", "starting in realtime")


@dataclass
class Jack:
    name: str
    period: int
    rate: int
    realtime: bool
    log: Path
    proc: subprocess.Popen | None = None
    since: int = 0  # the size of the log when the running test began

    def late_periods(self) -> float:
        """The latest the server says one of its periods began during the running test
        (its "XRun = N usec" lines), seconds: a message waiting for that period arrived
        that much later, whatever the test's own threads saw."""
        with self.log.open("rb") as log:
            log.seek(self.since)
            usecs = [int(x) for x in re.findall(rb"XRun = (\d+) usec", log.read())]
        return max(usecs, default=0) * 1e-6

    def delivery(self) -> float:
        """How late the server may pass a message on: at the start of its next period,
        and that period as late as the server says its periods came (``late_periods``)."""
        return self.period_seconds + self.late_periods()

    def broken(self) -> bool:
        """Whether the synchronous server has given up a period waiting for a client: jack2
        does so when a client opens or closes while a period is under way (a race of the
        server's, seen here as `jack_connect` clients opened and as the clients of the test
        before went away), and its graph may then stay broken for good, every port silent."""
        return self.broken_since(0)

    def log_size(self) -> int:
        return self.log.stat().st_size

    def broken_since(self, offset: int) -> bool:
        """Whether the server gave up a period after ``offset`` bytes of its log."""
        with self.log.open("rb") as log:
            log.seek(offset)
            return b"ProcessWriteSlaves error" in log.read()

    def log_summary(self) -> str:
        """What the server reported beyond its banner (xruns, graph errors), each distinct
        line once with its count and the range of its figures: attached to a failing test."""
        counts: dict[str, list[int]] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.strip() or any(word in line for word in BANNER):
                continue
            shape = re.sub(r"\d+", "#", line.strip())
            figures = [int(x) for x in re.findall(r"\d+", line)]
            counts.setdefault(shape, []).append(figures[0] if figures else 0)
        return "\n".join(f"{len(v)}x {k}" + (f" (# {min(v)}..{max(v)})" if "#" in k else "") for k, v in counts.items())

    @property
    def period_seconds(self) -> float:
        return self.period / self.rate

    def env(self) -> dict[str, str]:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "MIDO_BACKEND": "mido.backends.rtmidi/UNIX_JACK"}


_server_names: dict[int, str] = {}  # server process id -> its name


def _start(name: str, log: Path, realtime: bool, period: int, synchronous: bool) -> subprocess.Popen:
    args = (
        ["jackd", "-n", name, *(["-S"] if synchronous else [])]
        + (["-R", "-P", "70"] if realtime else ["--no-realtime"])
        + ["-d", "dummy", "-r", "48000", "-p", str(period)]
    )
    proc = subprocess.Popen(
        args, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    )
    _server_names[proc.pid] = name
    env = {**os.environ, "JACK_DEFAULT_SERVER": name}
    subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True, timeout=20)
    if proc.poll() is None:
        _open_patchbay(name)
    return proc


# One client a server, opened as the server starts and never activated (so never part of a
# period), makes every connection the tests ask for. A client that opens while the server
# is running its graph can make a synchronous jack2 server give up a period and break its
# graph (measured with `jackd -v`: each break came as a `jack_connect` process's client was
# opening, the server waiting 69-86 ms for it); a `jack_connect` per connection, retried
# until the port appeared, opened dozens of clients while the tests' players started.
_patchbays: dict[str, object] = {}  # server name -> its jack.Client


def _open_patchbay(name: str) -> None:
    import jack

    _patchbays[name] = jack.Client(f"patchbay-{os.getpid()}", no_start_server=True, servername=name)


def _close_patchbay(proc: subprocess.Popen) -> None:
    client = _patchbays.pop(_server_names.pop(proc.pid, ""), None)
    if client is not None:
        client.close()


def connect(source: str, destination: str, timeout: float = 20.0) -> None:
    """Connects two ports of the running test server by name, waiting for ``source`` to
    appear: through the server's patchbay client, so no client opens or closes meanwhile."""
    import jack

    server = os.environ["JACK_DEFAULT_SERVER"]
    client = _patchbays.get(server)
    if client is None:
        raise AssertionError(f"no patchbay client on the JACK server {server}")
    deadline = time.monotonic() + timeout
    while not client.get_ports(name_pattern=f"^{re.escape(source)}$"):
        if time.monotonic() > deadline:
            raise AssertionError(f"cannot connect {source} to {destination}: {source} did not appear in {timeout:.0f} s")
        time.sleep(0.02)
    try:
        client.connect(source, destination)
    except jack.JackError as exc:
        raise AssertionError(f"cannot connect {source} to {destination}: {exc}") from exc


_started = [0]  # servers started by this process


def start_jack(tmp: Path, synchronous: bool = True):
    """A JACK server for the tests. ``synchronous`` (-S): each period waits for every client
    to finish. Otherwise a client late for a period (a virtual machine stalled by its host is
    enough, real-time scheduling or not) is passed over, and the next period reuses the
    buffers it was still to read: MIDI is lost or arrives twice, and no test of delivery
    could hold (measured: 135 of 136 notes, the server naming the receiver as not finished).
    Synchronous, a late client delays the period instead, which the timing tests allow for
    as the machine's measured jitter. A synchronous jack2 server has a race of its own: a
    client that opens or closes while a period is under way can leave it waiting for that
    client every period (``Jack.broken``); the tests' fixture then starts a fresh server.
    The rig connects ports through one client kept for the server's life (``connect``), and
    sonify itself opens no client it closes at once (``sonify.live.midi._rtmidi_api``).
    (The benchmarks measure the default, asynchronous server.)"""
    if shutil.which("jackd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jackd is missing: .ci/system-packages installs jackd2")
        pytest.skip("jackd is not installed (apt-get install jackd2)")
    # A name of its own each time: a server of an earlier module still shutting down (or its
    # clients) must never be taken for this one, nor its ports for this test's.
    _started[0] += 1
    name = f"sonify-test-{os.getpid()}-{_started[0]}"
    log = tmp / f"jackd-{_started[0]}.log"
    # SONIFY_JACK_NO_REALTIME=1 runs the fallback on purpose (what a machine without
    # real-time scheduling gets), to check the tests hold there too.
    forced = os.environ.get("SONIFY_JACK_NO_REALTIME") == "1"
    proc = _start(name, log, realtime=not forced, period=1024 if forced else 256, synchronous=synchronous)
    realtime, period = not forced, 1024 if forced else 256
    if not forced and ("Cannot use real-time scheduling" in log.read_text() or proc.poll() is not None):
        _close_patchbay(proc)
        proc.terminate()
        proc.wait(timeout=10)
        proc = _start(name, log, realtime=False, period=1024, synchronous=synchronous)
        realtime, period = False, 1024
    if proc.poll() is not None:
        pytest.fail(f"jackd did not start: {log.read_text()[-500:]}")
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["MIDO_BACKEND"] = "mido.backends.rtmidi/UNIX_JACK"
    return proc, Jack(name, period, 48000, realtime, log, proc)


def release_portaudio() -> None:
    """PortAudio, where a test used it, lets go of the server (before the server stops)."""
    if _portaudio_running():
        sys.modules["sounddevice"]._terminate()


def _portaudio_running() -> bool:
    return "sounddevice" in sys.modules and sys.modules["sounddevice"]._initialized > 0


def restart_jack(jack: Jack, tmp: Path) -> None:
    """A fresh server in place of ``jack``'s (the same object, a new name and log)."""
    portaudio = _portaudio_running()
    release_portaudio()
    stop_jack(jack.proc)
    _, fresh = start_jack(tmp, synchronous=True)
    jack.__dict__.update(fresh.__dict__)
    if portaudio:
        sys.modules["sounddevice"]._initialize()


def stop_jack(proc: subprocess.Popen) -> None:
    _close_patchbay(proc)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    time.sleep(0.2)


def run_on_jack(work) -> None:
    """For a benchmark run outside pytest: ``work(jack)`` on a JACK dummy server started in a
    temporary folder and stopped afterwards (exits with the reason when jackd is missing)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc, jack = start_jack(Path(tmp), synchronous=False)
        except pytest.skip.Exception as exc:
            sys.exit(str(exc))
        try:
            work(jack)
        finally:
            import sounddevice

            sounddevice._terminate()
            stop_jack(proc)


class JitterProbe:
    """The machine's scheduling jitter, measured while a test runs: on each CPU the test may
    use, a thread of the test's own process pinned to that CPU asks to wake every
    ``interval`` seconds and records how late each wake-up comes. A loaded machine (a hog,
    a busy GIL, a virtual CPU the host holds back) delays the live player's and JACK's
    threads the same way, so a timing test allows for what this measured rather than for a
    guess. One probe per CPU, because a stall of one CPU is invisible to a thread that
    happens to run on the other."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.late: list[tuple[float, float]] = []  # (time asked for, seconds late), all CPUs
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(cpu,), name=f"jitter-probe-{cpu}", daemon=True)
            for cpu in sorted(os.sched_getaffinity(0))
        ]

    def _run(self, cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})  # 0: this thread alone
        while not self._stop.is_set():
            wanted = time.monotonic() + self.interval
            time.sleep(self.interval)
            self.late.append((wanted, max(time.monotonic() - wanted, 0.0)))

    def __enter__(self) -> JitterProbe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def worst(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The latest wake-up asked for between ``start`` and ``end`` (monotonic), seconds."""
        return max((late for wanted, late in self.late if start <= wanted <= end), default=0.0)


def match_to_schedule(arrived, scheduled) -> list[float]:
    """For each arrived note-on, the due time of the earliest unmatched scheduled one like it."""
    waiting: dict[tuple[int, int], list[float]] = {}
    for due, _, channel, pitch in sorted(scheduled):
        waiting.setdefault((channel, pitch), []).append(due)
    return [waiting[(m.channel, m.note)].pop(0) for _, m in arrived]


class Receiver:
    """A real MIDI input port, connected to ``port`` (when given); records (arrival time, message).

    RtMidi's JACK input is used without a callback: in JACK's process thread it copies each
    event into its own queue and stamps it with JACK's clock, and a thread of ours drains the
    queue. A Python callback (what mido sets) would run in JACK's process thread and wait there
    for the GIL; on a loaded machine that wait can outlast a period, and JACK hands a port
    with one connection the sender's own buffer, which the sender clears at its next period:
    RtMidi, not checking what jack_midi_event_get returns, then passes on the last event it
    read once more for each event left (a panic once arrived as 131 copies of the first
    message of a channel). The port is connected by name (``connect``), which says whether it
    was made: RtMidi connects by an index into a port list that may have changed, and does
    not check that the connection was made."""

    _count = 0
    QUEUE = 1 << 16  # messages RtMidi keeps until we drain them (a panic sends 2,096)
    ANCHOR_WINDOW = 30.0  # seconds: see ``got``

    def __init__(self, port: str | None, client: str | None = None):
        import rtmidi

        Receiver._count += 1
        self.client = client or f"receiver-{os.getpid()}-{Receiver._count}"
        self._in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=self.client, queue_size_limit=self.QUEUE)
        self._in.ignore_types(sysex=False, timing=False, active_sense=True)
        self._in.open_virtual_port("in")
        self.name = f"{self.client}:in"
        self._raw: list[tuple[float, float, object]] = []  # (drained at, JACK time from the first, message)
        self._since_first = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="receiver", daemon=True)
        self._thread.start()
        if port is not None:
            connect(port, self.name)

    def _drain(self) -> None:
        from sonify.live.midi import midi_module

        mido = midi_module()
        while True:
            got = self._in.get_message()
            if got is None:
                if self._stop.is_set():
                    return
                time.sleep(0.002)  # the times are JACK's: how soon they are taken does not matter
                continue
            drained = time.monotonic()
            data, delta = got
            self._since_first += delta
            try:
                message = mido.Message.from_bytes(data)
            except ValueError:
                continue
            with self._lock:
                self._raw.append((drained, self._since_first, message))

    @property
    def got(self) -> list:
        """(arrival time, message) for every message so far, the time on ``time.monotonic``'s
        clock. RtMidi gives each message's JACK time as the time since the one before; a
        message is drained no earlier than it arrived, so the earliest drain less its JACK
        time, among the messages within ``ANCHOR_WINDOW`` seconds, places JACK's clock on
        ours. The window is wide because the two clocks keep step (measured here: 3.5 us
        apart after 20 s) while our draining thread, on a loaded machine, can be late for
        a second at a time: a narrow window would take that lateness for the arrival's."""
        with self._lock:
            raw = list(self._raw)
        stamps = [since for _, since, _ in raw]
        offsets = window_minimum(stamps, [drained - since for drained, since, _ in raw], self.ANCHOR_WINDOW)
        return [(offset + since, message) for offset, (_, since, message) in zip(offsets, raw)]

    def notes_on(self):
        return [(t, m) for t, m in self.got if m.type == "note_on" and m.velocity > 0]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        self._in.close_port()
        self._in.delete()


def window_minimum(xs: list[float], values: list[float], half: float) -> list[float]:
    """For each i, the least of ``values[j]`` over the j with ``xs[j]`` within ``half`` of
    ``xs[i]`` (``xs`` ascending): a sliding window, in one pass."""
    out: list[float] = []
    window: collections.deque[int] = collections.deque()  # indices, their values ascending
    ahead = 0
    for x in xs:
        while ahead < len(xs) and xs[ahead] <= x + half:
            while window and values[window[-1]] >= values[ahead]:
                window.pop()
            window.append(ahead)
            ahead += 1
        while xs[window[0]] < x - half:
            window.popleft()
        out.append(values[window[0]])
    return out


def assert_all_notes_off(got, channels: set[int] = frozenset()) -> None:
    """Every note-on received was ended (note-off, or note-on at velocity 0), and All Notes
    Off (CC 123) came on every channel that played and on every one of ``channels`` (those
    the player was given: a panic covers them whether or not they have played yet)."""
    sounding: dict[tuple[int, int], int] = {}
    for _, m in got:
        if m.type == "note_on" and m.velocity > 0:
            sounding[(m.channel, m.note)] = sounding.get((m.channel, m.note), 0) + 1
        elif m.type in ("note_off", "note_on"):
            sounding[(m.channel, m.note)] = max(sounding.get((m.channel, m.note), 0) - 1, 0)
    left = [k for k, v in sounding.items() if v]
    assert not left, f"notes left sounding (channel, pitch): {left[:10]}"
    all_off = {m.channel for _, m in got if m.type == "control_change" and m.control == 123}
    missing = sorted(({c for c, _ in sounding} | set(channels)) - all_off)
    assert not missing, f"no All Notes Off on channels {missing}"


def note_beats(path) -> list[tuple[float, int, int]]:
    """(beat, channel, pitch) of every note-on of a MIDI file, in order."""
    from sonify.live.midi import midi_module

    midi = midi_module().MidiFile(path)
    out, ticks = [], 0
    for message in midi.merged_track:
        ticks += message.time
        if message.type == "note_on" and message.velocity > 0:
            out.append((ticks / midi.ticks_per_beat, message.channel, message.note))
    return out
