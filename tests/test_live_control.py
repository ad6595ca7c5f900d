"""`sonify play --control-in PORT`: a MIDI controller on a real port (JACK dummy driver)
steers the performance as the preset's [controls] table binds it: the sampling temperature,
voice mutes, hold."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from jackrig import Receiver, assert_all_notes_off, start_jack, stop_jack

from sonify.live.midi import midi_module

MELODY = 0  # the melody's MIDI channel (1) as mido counts
PRESET = """name = "steer"
[music]
tempo = 120.0
[timing]
words_per_minute = 200.0
[controls]
cc20 = "mute.melody"
"""


@pytest.fixture(scope="module")
def jack(tmp_path_factory):
    proc, info = start_jack(tmp_path_factory.mktemp("jack"))
    yield info
    stop_jack(proc)


def first_note(receiver: Receiver, channel: int, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        arrived = [t for t, m in receiver.notes_on() if m.channel == channel]
        if arrived:
            return arrived[0]
        time.sleep(0.02)
    raise AssertionError(f"no note on channel {channel + 1} arrived (of {len(receiver.got)} messages: {sorted({(m.type, getattr(m, 'channel', None)) for _, m in receiver.got})}); sonify said: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_a_controller_raises_the_temperature_and_mutes_a_voice(jack, tmp_path):
    preset = tmp_path / "steer.toml"
    preset.write_text(PRESET)
    played = tmp_path / "played.json"
    mido = midi_module()
    controller = mido.open_output("knobs", virtual=True, client_name="controller")
    cmd = [sys.executable, "-m", "sonify", "play", "Shall I compare thee", "--preset", str(preset), "--midi-out",
           "--control-in", "controller:knobs", "--temp", "0", "--duration", "12", "--quiet", "--score-out", str(played)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=jack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receiver = Receiver("sonify:out")
        started = first_note(receiver, MELODY, proc)
        time.sleep(4.5)
        moved = time.monotonic()
        controller.send(mido.Message("control_change", control=1, value=127))  # the mod wheel: temperature 2.0
        controller.send(mido.Message("control_change", channel=3, control=20, value=127))  # mute the melody
        _, stderr = proc.communicate(timeout=60)
        time.sleep(0.2)
        receiver.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        controller.close()
    assert proc.returncode == 0, stderr
    assert "2 control changes" in stderr, stderr
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
