"""A real JACK audio server with its dummy driver, started for the live tests (no sound card
needed): see ../shared/LIVE_TEST_RIG.md. Under CI=true a missing jackd fails the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def match_to_schedule(arrived, scheduled) -> list[float]:
    """For each arrived note-on, the due time of the earliest unmatched scheduled one like it."""
    waiting: dict[tuple[int, int], list[float]] = {}
    for due, _, channel, pitch in sorted(scheduled):
        waiting.setdefault((channel, pitch), []).append(due)
    return [waiting[(m.channel, m.note)].pop(0) for _, m in arrived]
