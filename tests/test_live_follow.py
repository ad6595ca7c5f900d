"""`sonify play --clock-in PORT` follows a real MIDI clock (JACK dummy driver): it starts on the
leader's Start and keeps its notes on the leader's beat grid as the tempo moves."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import numpy as np
from jackrig import JitterProbe, Receiver, assert_all_notes_off, note_beats

from sonify import load_preset
from sonify.live.midi import midi_module
from sonify.pipeline import Length, OutputSettings, render

TICKS = 24


def lead(port, stop: threading.Event, tempo_at, sent: list[float]) -> None:
    """Start, then clock ticks at ``tempo_at(beat)`` bpm until ``stop``, then Stop; ``sent``
    gets the time each tick was sent: the leader's beat grid."""
    mido = midi_module()
    port.send(mido.Message("start"))
    due, k = time.monotonic() + 0.01, 0
    while not stop.is_set():
        while time.monotonic() < due:
            time.sleep(0.0005)
        port.send(mido.Message("clock"))
        sent.append(time.monotonic())
        due += 60.0 / (tempo_at(k / TICKS) * TICKS)
        k += 1
    port.send(mido.Message("stop"))


def test_play_follows_a_midi_clock_from_100_to_130_bpm(jack, tmp_path):
    made = render("Shall I compare thee", length=Length(tokens=40), output=OutputSettings(tmp_path / "made", "piece", ("trace",)))
    played = tmp_path / "played.mid"
    mido = midi_module()
    leader = mido.open_output("clock", virtual=True, client_name="leader")
    grid = Receiver("leader:clock")
    sent: list[float] = []
    cmd = [sys.executable, "-m", "sonify", "play", "--trace", str(made.paths["trace"]), "--preset", "pulse", "--midi-out",
           "--clock-in", "leader:clock", "--quiet", "--score-out", str(played)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=jack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    jitter = JitterProbe()  # how late this machine wakes a thread: the leader's ticks go out that late
    jitter.__enter__()
    try:
        receiver = Receiver("sonify:out")  # appears once sonify listens to the clock
        time.sleep(1.0)
        leading = threading.Thread(target=lead, args=(leader, stop, lambda beat: 100.0 if beat < 8 else 130.0, sent), daemon=True)
        leading.start()
        _, stderr = proc.communicate(timeout=120)
        stop.set()
        leading.join(timeout=5)
        time.sleep(0.2)
        receiver.close()
    finally:
        jitter.__exit__(None, None, None)
        stop.set()
        if proc.poll() is None:
            proc.kill()
        grid.close()
        leader.close()
    assert proc.returncode == 0, stderr
    ticks = np.array(sent)
    assert abs(sum(1 for _, m in grid.got if m.type == "clock") - ticks.size) <= 1  # the clock went out on the real port
    notes = note_beats(played)
    arrived = receiver.notes_on()
    assert len(notes) > 20 and (len(arrived) == len(notes) or not jack.realtime), (
        f"{len(arrived)} of {len(notes)} notes arrived ({len(receiver.got)} messages in all); sonify said: {stderr}"
    )
    # Match arrivals to the Score's notes in order per (channel, pitch); the leader's grid time
    # of a beat is interpolated between the times its ticks were sent.
    waiting: dict[tuple[int, int], list[float]] = {}
    for beat, channel, pitch in notes:
        waiting.setdefault((channel, pitch), []).append(beat)
    # A player that falls behind (a loaded machine) holds for whole beats, so the music stays
    # on the leader's grid: a note may come as many beats late as sonify says it held, no more.
    held = re.search(r"(\d+) holds \(([\d.]+) s\)", stderr)
    held_beats = round(float(held.group(2)) * load_preset("pulse").music.tempo / 60.0) if held else 0
    grid_beat = np.arange(ticks.size) / TICKS
    errors, shifts, allowed = [], [], []
    for at, message in arrived:
        beat = waiting[(message.channel, message.note)].pop(0)
        shift = round(float(np.interp(at, ticks, grid_beat)) - beat)  # whole beats held before it
        shifts.append(shift)
        played_at = beat + shift
        if 4.0 <= played_at < 8.0 or played_at >= 12.0:  # one bar after the start, and one bar after the change
            # the grid there is drawn through ticks sent within a beat or so, each as late as the machine made it
            allowed.append(jack.delivery() + jitter.worst(at - 1.0, at))
            errors.append(at - np.interp(played_at * TICKS, np.arange(ticks.size), ticks))
    assert 0 <= min(shifts) and max(shifts) <= held_beats and shifts == sorted(shifts), (shifts, held_beats, stderr)
    errors = np.array(errors)
    assert errors.size > 10
    worst = int(np.argmax(np.abs(errors) - np.array(allowed)))
    assert abs(errors[worst]) <= allowed[worst], (
        f"onsets off the grid by {errors.min() * 1e3:+.1f}..{errors.max() * 1e3:+.1f} ms; "
        f"{errors[worst] * 1e3:+.1f} ms where {allowed[worst] * 1e3:.1f} ms is allowed (a period and the machine's jitter)"
    )
    assert_all_notes_off(receiver.got)


def test_clock_in_with_our_synth_says_why_not():
    done = subprocess.run(
        [sys.executable, "-m", "sonify", "play", "--audio", "--clock-in", "leader"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--clock-in follows a MIDI clock" in done.stderr
