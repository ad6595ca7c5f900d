"""Ctrl-C for real: a command run in a session of its own, SIGINT sent at a chosen moment,
and afterwards a look for any process of that session still alive (a child left behind).
Whatever happens, the session is killed before the test ends: a command that ignores the
SIGINT fails its test instead of running on."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Interrupted:
    returncode: int | None
    stderr: str
    survivors: dict[int, str]  # pid → command line of the session's processes alive after it ended


def session_processes(sid: int) -> dict[int, str]:
    """pid → command line of the live (not zombie) processes whose session is ``sid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def default_sigint() -> None:
    # A runner started in the background has SIGINT ignored, and a child inherits that:
    # the command under test gets Python's usual Ctrl-C handling whatever ran the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(cmd: list[str], when: Callable[[], bool], wait: float = 60.0, timeout: float = 120.0, **popen) -> Interrupted:
    """Run ``cmd``, send SIGINT as soon as ``when()`` holds (polled every half millisecond,
    at most ``wait`` seconds), and let it end (at most ``timeout`` seconds)."""
    # stderr goes to a file, not a pipe: a child that lives on and holds a pipe open would
    # keep the test waiting for the end of its output
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
            preexec_fn=default_sigint,
            **popen,
        )
        try:
            deadline = time.monotonic() + wait
            while not when():
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    raise AssertionError(f"the moment to interrupt never came; exit {proc.poll()}: {err.read()[-500:]}")
                time.sleep(0.0005)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)  # a child that outlives its parent has had time to be re-parented
            survivors = session_processes(proc.pid)
            err.seek(0)
            stderr = err.read() if proc.poll() is not None else f"still running {timeout:g} s after SIGINT"
            return Interrupted(proc.poll(), stderr, survivors)
        finally:
            end_session(proc)


def end_session(proc: subprocess.Popen) -> None:
    """Kill ``proc`` (started with ``start_new_session``) and every process of its session."""
    if proc.poll() is None:
        proc.kill()
    for pid in session_processes(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
