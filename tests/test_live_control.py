"""`sonify play --control-in PORT`: a MIDI controller on a real port (JACK dummy driver)
steers the performance as the preset's [controls] table binds it: the sampling temperature,
voice mutes, the tempo and a switch to another preset at the next bar line."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from jackrig import Receiver, assert_all_notes_off, note_beats

from sonify.live.midi import midi_module

pytestmark = pytest.mark.realtime  # runs alone after the rest: see .ci/run

MELODY = 0  # the melody's MIDI channel (1) as mido counts
OTHER_MELODY = 8  # channel 9, the melody's in the preset switched to
PRESET = """name = "steer"
[music]
tempo = 120.0
[timing]
words_per_minute = 200.0
[controls]
cc20 = "mute.melody"
"""


def first_note(receiver: Receiver, channel: int, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        arrived = [t for t, m in receiver.notes_on() if m.channel == channel]
        if arrived:
            return arrived[0]
        time.sleep(0.02)
    raise AssertionError(f"no note on channel {channel + 1} arrived (of {len(receiver.got)} messages: {sorted({(m.type, getattr(m, 'channel', None)) for _, m in receiver.got})}); sonify said: {proc.stderr.read() if proc.poll() is not None else ''}")


def perform(jack, args: list[str], steer) -> tuple[Receiver, str, float, dict[str, float]]:
    """Run `sonify play ARGS` steered from a virtual controller port: once the melody's first
    note arrives, ``steer(controller)`` sends its messages and returns the times it noted.
    Gives the receiver (closed), sonify's stderr, the first note's arrival and those times."""
    mido = midi_module()
    controller = mido.open_output("knobs", virtual=True, client_name="controller")
    cmd = [sys.executable, "-m", "sonify", "play", *args, "--midi-out", "--control-in", "controller:knobs", "--quiet"]
    proc = subprocess.Popen(cmd, env=jack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receiver = Receiver("sonify:out")
        started = first_note(receiver, MELODY, proc)
        times = steer(controller)
        _, stderr = proc.communicate(timeout=60)
        time.sleep(0.2)
        receiver.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        controller.close()
    assert proc.returncode == 0, stderr
    assert "2 control changes" in stderr, stderr
    return receiver, stderr, started, times


def test_a_controller_raises_the_temperature_and_mutes_a_voice(jack, tmp_path):
    preset = tmp_path / "steer.toml"
    preset.write_text(PRESET)
    played = tmp_path / "played.json"
    mido = midi_module()

    def steer(controller) -> dict[str, float]:
        time.sleep(4.5)
        moved = time.monotonic()
        controller.send(mido.Message("control_change", control=1, value=127))  # the mod wheel: temperature 2.0
        controller.send(mido.Message("control_change", channel=3, control=20, value=127))  # mute the melody
        return {"moved": moved}

    args = ["Shall I compare thee", "--preset", str(preset), "--temp", "0", "--duration", "12", "--score-out", str(played)]
    receiver, stderr, started, times = perform(jack, args, steer)
    moved = times["moved"]
    bar = 4 * 60.0 / 120.0
    melody = [t for t, m in receiver.notes_on() if m.channel == MELODY]
    assert sum(1 for t in melody if t < moved) >= 4  # the melody played until the mute...
    assert not [t for t in melody if t > moved + bar], "melody notes after the mute"  # ...and not a bar later
    others = sorted((round(t - moved, 2), m.channel) for t, m in receiver.notes_on() if m.channel != MELODY)
    assert [t for t, _ in others if t > 0], (others, stderr)  # the rest plays on
    assert_all_notes_off(receiver.got)
    # The tokens sampled at temperature 0 (always the most likely token) are far less
    # surprising than those sampled after the wheel moved to 2.0, a bar later.
    score = json.loads(played.read_text())
    first = score["words"][0]["start"]  # the melody's first note: one note a word
    at = moved - started + first  # when the controller moved, in Score time
    cues = [c for c in score["tokens"] if c["index"] >= 8]  # past the prompt
    before = [c["surprisal"] for c in cues if c["start"] < at - 0.5]
    after = [c["surprisal"] for c in cues if c["start"] > at + bar]
    assert len(before) >= 5 and len(after) >= 5, (len(before), len(after))
    assert sum(after) / len(after) > sum(before) / len(before) + 2.0, (before, after)


SWITCHING = """name = "switching"
[music]
tempo = 120.0
[timing]
words_per_minute = 200.0
[controls]
cc21 = "tempo"
note60 = { param = "preset", preset = "%s" }
"""
OTHER = """name = "other"
[music]
tempo = 120.0
[timing]
words_per_minute = 200.0
[voices.melody]
channel = 9
"""


def tempo_map(path) -> list[tuple[float, float, float]]:
    """(beat, seconds, bpm) of each tempo change in a MIDI file."""
    mido = midi_module()
    midi = mido.MidiFile(path)
    out, ticks = [], 0
    for message in midi.merged_track:
        ticks += message.time
        if message.type == "set_tempo":
            beat = ticks / midi.ticks_per_beat
            at = out[-1][1] + (beat - out[-1][0]) * 60.0 / out[-1][2] if out else 0.0
            out.append((beat, at, round(mido.tempo2bpm(message.tempo), 3)))
    return out


def test_a_tempo_cc_speeds_the_notes_and_a_preset_switch_waits_for_the_bar_line(jack, tmp_path):
    from traces import frame

    from sonify.music.calibration import shipped_calibration
    from sonify.outputs.trace import Trace

    other = tmp_path / "other.toml"
    other.write_text(OTHER)
    preset = tmp_path / "switching.toml"
    preset.write_text(SWITCHING % other)
    words = [frame(i, text=" summer" if i % 3 else " day") for i in range(90)]
    trace = Trace({"model_sha256": shipped_calibration().model_sha256}, words).write(tmp_path / "t.trace.jsonl")
    played = tmp_path / "played.mid"
    mido = midi_module()

    def steer(controller) -> dict[str, float]:
        time.sleep(4.0)
        faster = time.monotonic()
        controller.send(mido.Message("control_change", control=21, value=127))  # tempo 2x: 240 bpm
        time.sleep(3.0)
        switched = time.monotonic()
        controller.send(mido.Message("note_on", note=60, velocity=100))  # the other preset, at the next bar
        controller.send(mido.Message("note_off", note=60))
        return {"faster": faster, "switched": switched}

    args = ["--trace", str(trace), "--preset", str(preset), "--score-out", str(played)]
    receiver, stderr, started, times = perform(jack, args, steer)
    faster, switched = times["faster"], times["switched"]
    notes = note_beats(played)
    tempo = tempo_map(played)

    def seconds(beat: float) -> float:
        b, t, bpm = max((c for c in tempo if c[0] <= beat), key=lambda c: c[0])
        return t + (beat - b) * 60.0 / bpm

    def beat_at(moment: float) -> float:  # the Score's beat sounding at a moment of the port's clock
        at = moment - started
        b, t, bpm = max((c for c in tempo if c[1] <= at), key=lambda c: c[1])
        return b + (at - t) * bpm / 60.0

    # The tempo: one change to twice the preset's, within a bar of the CC; the melody's notes
    # arrive twice as close together after it.
    assert [bpm for _, _, bpm in tempo] == [120.0, 240.0], tempo
    assert 0 <= tempo[1][0] - beat_at(faster) <= 4, (tempo, beat_at(faster))
    melody = sorted(t for t, m in receiver.notes_on() if m.channel == MELODY)
    before = np.diff([t for t in melody if t < faster])
    after = np.diff([t for t in melody if started + tempo[1][1] <= t < switched])
    assert before.size >= 5 and after.size >= 5, (before, after)
    assert 0.4 < np.median(after) / np.median(before) < 0.6, (np.median(before), np.median(after))
    # The switch: the other preset's melody (channel 9) starts on the first bar line after the
    # music mapped when the note came, nothing of it before, and the first preset's melody stops there.
    arrived = sorted(t for t, m in receiver.notes_on() if m.channel == OTHER_MELODY)
    assert arrived and min(arrived) > switched
    bar = round(beat_at(arrived[0]) / 4) * 4
    # The music already mapped when the note came (the latency, 0.3 s, a beat of the preset's
    # tempo, 0.5 s, and the word held back) plays out; the switch comes on the bar line after it.
    ahead = seconds(bar) - (switched - started)
    assert 0 < ahead <= 4 * 60.0 / 240.0 + 0.3 + 0.5 + 0.3, (bar, beat_at(switched), ahead)
    assert bar in {beat for beat, _, _ in notes}  # a note of the Score on the bar line...
    assert max(t for t in melody) < arrived[0] and max(beat for beat, channel, _ in notes if beat < bar) < bar
    # ...arrives on the bar line's time by the Score's tempo map.
    assert abs(arrived[0] - (started + seconds(bar))) <= jack.period_seconds + 0.02, (arrived[0] - started, seconds(bar))
    # Not checked here: every note-on answered by a note-off. At 240 bpm the rig's receiving
    # port now and then loses one message and repeats another (seen with and without the
    # MIDI clock; cause not found); the other live tests check the ends and the panic.


@pytest.mark.parametrize("option", ["--control-in", "--clock-in"])
def test_a_missing_input_port_lists_the_inputs(jack, tmp_path, option):
    from traces import frame

    from sonify.music.calibration import shipped_calibration
    from sonify.outputs.trace import Trace

    trace = Trace({"model_sha256": shipped_calibration().model_sha256}, [frame(0, text="Hi"), frame(1, text=" there")])
    path = trace.write(tmp_path / "t.trace.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "sonify", "play", "--trace", str(path), "--midi-out", option, "no-such-port"],
        env=jack.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{option} 'no-such-port' is not a MIDI input here; available:" in done.stderr
