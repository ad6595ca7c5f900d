"""`sonify play --trace` performs a saved trace in real time through a real MIDI port (JACK
dummy driver) and plays the very Score `sonify score` makes of it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from jackrig import Receiver, assert_all_notes_off

from sonify.live.midi import midi_module
from sonify.outputs.trace import Trace
from sonify.pipeline import Length, OutputSettings, render

pytestmark = pytest.mark.realtime  # runs alone after the rest: see .ci/run


def test_play_trace_plays_the_score_that_score_makes(jack, tmp_path):
    made = render("Shall I compare thee", length=Length(tokens=24), output=OutputSettings(tmp_path / "made", "piece", ("trace",)))
    trace = made.paths["trace"]
    scored = subprocess.run(
        [sys.executable, "-m", "sonify", "score", str(trace), "--preset", "pulse", "--no-audio", "--out", str(tmp_path / "scored")],
        env=jack.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    played_mid, played_json = tmp_path / "played.mid", tmp_path / "played.json"
    cmd = [sys.executable, "-m", "sonify", "play", "--trace", str(trace), "--preset", "pulse", "--midi-out", "--quiet",
           "--latency", "0.2", "--score-out", str(played_mid), "--score-out", str(played_json)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=jack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    receiver = Receiver("sonify:out")
    try:
        _, stderr = proc.communicate(timeout=120)
        time.sleep(0.2)
    finally:
        receiver.close()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and f"played {len(Trace.read(trace).frames)} tokens" in stderr
    # The same Score, byte for byte: its MIDI file (every note and control) and its transcript (every token and word).
    assert played_mid.read_bytes() == (tmp_path / "scored" / "piece.mid").read_bytes()
    assert played_json.read_text() == (tmp_path / "scored" / "piece.json").read_text()
    # ...and it was performed: every note of it arrived at the real port, and none was left sounding.
    notes = sum(1 for m in midi_module().MidiFile(played_mid) if m.type == "note_on" and m.velocity > 0)
    if jack.realtime or jack.period >= 1024:
        assert len(receiver.notes_on()) == notes > 5
    assert_all_notes_off(receiver.got)


def test_play_trace_with_a_missing_file_says_so(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sonify", "play", "--trace", str(tmp_path / "none.trace.jsonl"), "--osc", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "does not exist" in done.stderr


def test_play_trace_and_a_prompt_are_one_too_many(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sonify", "play", "Shall I", "--trace", "t.trace.jsonl", "--osc", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "not two of them" in done.stderr and done.stderr.count("\n") == 1
