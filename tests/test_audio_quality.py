"""benchmarks/audio_quality.py's held-tone measure, on Scores made to hold what it looks for.

The README's quality table comes from that benchmark; nothing ran it, so when the engine
began to take notes up only as it renders (``SynthEngine.for_score``) the measure silently
compared silence with its reference and printed that reference's own swing. Here it must
tell a tied common tone (one note across the chord changes: no change in level) from a
re-struck one (notes that abut at each change: a fade and a new attack), and find every
note of the tone among the engine's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from sonify.music.preset import load_preset
from sonify.music.score import Note, Score, TempoMap, VoiceInfo, sort_notes

SR = 48000
BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "audio_quality.py"


@pytest.fixture(scope="module")
def audio_quality():
    spec = importlib.util.spec_from_file_location("audio_quality", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chords_over(common: list[tuple[float, float]], instrument: str) -> Score:
    """Pitch 60 sounding over ``common`` (start, duration) spans while chords of three other
    pitches change every 0.5 s from 0.1 s to 2.6 s, in one dry voice."""
    tempo = TempoMap.constant(120.0)
    voice = VoiceInfo("harmony", "harmony", 0, 0, instrument, 0.0, 0.0, 0.0, 0.0)
    spans = [(t, d, 60) for t, d in common]
    spans += [(0.1 + 0.5 * k, 0.5, p + (k % 3)) for k in range(6) for p in (52, 55, 64)]
    notes = [
        Note(t, d, tempo.beats(t), tempo.beats(t + d) - tempo.beats(t), p, 90, "harmony", 0, k) for k, (t, d, p) in enumerate(spans)
    ]
    return Score(sort_notes(notes), (), (), (), tempo, (4, 4), (voice,), 3.6)


@pytest.mark.parametrize("instrument", ["organ", "pad"])
def test_held_tones_tell_a_tie_from_a_re_struck_common_tone(audio_quality, instrument):
    settings = dataclasses.replace(load_preset("default").synth, reverb_mix=0.0, delay_feedback=0.0)
    # Changes at 1.1, 1.6, 2.1 and 2.6 s count: at least 0.5 s into the tone, 50 ms before its end.
    tied, count = audio_quality.held_tones(chords_over([(0.1, 3.0)], instrument), settings, SR)
    assert count == 4
    assert tied <= 0.05
    restruck, count = audio_quality.held_tones(chords_over([(0.1, 1.0), (1.1, 1.0), (2.1, 1.0)], instrument), settings, SR)
    assert count == 4  # abutting notes of the pitch: one held tone
    assert restruck > 1.0
