"""A real JACK audio server with its dummy driver, started for the live tests (no sound card
needed): see ../shared/LIVE_TEST_RIG.md. Under CI=true a missing jackd fails the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Jack:
    name: str
    period: int
    rate: int
    realtime: bool

    @property
    def period_seconds(self) -> float:
        return self.period / self.rate

    def env(self) -> dict[str, str]:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "MIDO_BACKEND": "mido.backends.rtmidi/UNIX_JACK"}


def _start(name: str, log: Path, realtime: bool, period: int) -> subprocess.Popen:
    args = (
        ["jackd", "-n", name]
        + (["-R", "-P", "70"] if realtime else ["--no-realtime"])
        + ["-d", "dummy", "-r", "48000", "-p", str(period)]
    )
    proc = subprocess.Popen(
        args, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    )
    env = {**os.environ, "JACK_DEFAULT_SERVER": name}
    subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True, timeout=20)
    return proc


def start_jack(tmp: Path):
    if shutil.which("jackd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jackd is missing: .ci/system-packages installs jackd2")
        pytest.skip("jackd is not installed (apt-get install jackd2)")
    name = f"sonify-test-{os.getpid()}"
    log = tmp / "jackd.log"
    # SONIFY_JACK_NO_REALTIME=1 runs the fallback on purpose (what a machine without
    # real-time scheduling gets), to check the tests hold there too.
    forced = os.environ.get("SONIFY_JACK_NO_REALTIME") == "1"
    proc = _start(name, log, realtime=not forced, period=1024 if forced else 256)
    realtime, period = not forced, 1024 if forced else 256
    if not forced and ("Cannot use real-time scheduling" in log.read_text() or proc.poll() is not None):
        proc.terminate()
        proc.wait(timeout=10)
        proc = _start(name, log, realtime=False, period=1024)
        realtime, period = False, 1024
    if proc.poll() is not None:
        pytest.fail(f"jackd did not start: {log.read_text()[-500:]}")
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["MIDO_BACKEND"] = "mido.backends.rtmidi/UNIX_JACK"
    return proc, Jack(name, period, 48000, realtime)


def stop_jack(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    time.sleep(0.2)


def run_on_jack(work) -> None:
    """For a benchmark run outside pytest: ``work(jack)`` on a JACK dummy server started in a
    temporary folder and stopped afterwards (exits with the reason when jackd is missing)."""
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc, jack = start_jack(Path(tmp))
        except pytest.skip.Exception as exc:
            sys.exit(str(exc))
        try:
            work(jack)
        finally:
            import sounddevice

            sounddevice._terminate()
            stop_jack(proc)


class JitterProbe:
    """The machine's scheduling jitter, measured while a test runs: a thread of the test's
    own process asks to wake every ``interval`` seconds and records how late each wake-up
    comes. A loaded machine (or a busy GIL) delays the live player's threads the same way,
    so a timing test allows for what this measured rather than for a guess."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.late: list[tuple[float, float]] = []  # (time asked for, seconds late)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jitter-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            wanted = time.monotonic() + self.interval
            time.sleep(self.interval)
            self.late.append((wanted, max(time.monotonic() - wanted, 0.0)))

    def __enter__(self) -> JitterProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

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
    """A real MIDI input connected to a port; records (arrival time, message)."""

    def __init__(self, port: str):
        from sonify.live.midi import midi_module

        mido = midi_module()
        deadline = time.monotonic() + 20
        while port not in mido.get_input_names():
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} never appeared; inputs: {mido.get_input_names()}")
            time.sleep(0.02)
        self.got: list = []
        self.port = mido.open_input(port, callback=lambda m: self.got.append((time.monotonic(), m)))

    def notes_on(self):
        return [(t, m) for t, m in self.got if m.type == "note_on" and m.velocity > 0]

    def close(self):
        self.port.close()


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
