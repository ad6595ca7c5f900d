"""The mapping on real traces of the shipped model: time from words, form from the layout, a
singable melody, shadows for ghosts, chords on the beat, and calibrated scaling.

Faithfulness figures per preset (Spearman between each signal and its parameter read back
from the MIDI file) live in ``benchmarks/faithfulness.py``; the tests here hold the rules
that make them possible, on pieces small enough for the suite."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from traces import generated, read

from sonify import AttentionStats, LayerStats
from sonify.live.stream import GrowingScore
from sonify.music.calibration import Calibration, shipped_calibration
from sonify.music.mapping import make_score
from sonify.music.melody import STABLE
from sonify.music.preset import load_preset, preset_names
from sonify.music.scales import in_scale, key_pitch_class
from sonify.music.signals import Scaler, Scaling, unit_signal
from sonify.music.timing import silence_seconds

TEXTS = Path(__file__).parent / "texts"
POEM = (TEXTS / "harbour-lights.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def poem():
    return read(POEM)


@pytest.fixture(scope="module")
def long_generation():
    return generated(1500)


def melody_by_unit(score) -> dict[int, object]:
    """The melody note that starts each word (its first token's note)."""
    first = {n.token: n for n in reversed(score.notes_of("melody"))}
    return {u.index: first[u.tokens[0]] for u in score.words if u.tokens and u.tokens[0] in first}


def test_a_word_is_the_unit_and_its_tokens_share_its_time(poem):
    score = make_score(poem, load_preset("default"))
    cues = {c.token: c for c in score.cues}
    words = score.words
    assert [u.text for u in words][:4] == ["#", "Harbour", "Lights", "The"][1:] or words[0].text == "Harbour"
    for unit in score.units:
        inside = [cues[t] for t in unit.tokens]
        assert all(unit.time - 1e-9 <= c.time and c.time + c.duration <= unit.time + unit.duration + 1e-9 for c in inside)
        assert sum(c.duration for c in inside) == pytest.approx(unit.duration)
    # One melody note per word (the default preset sounds every word), at the word's start.
    notes = melody_by_unit(score)
    assert len(notes) == len(words)
    assert all(notes[u.index].time == pytest.approx(u.time) for u in words)
    assert len(score.notes_of("melody")) == len(words)


def test_tokens_that_decode_to_nothing_take_no_time():
    frames = read("┌──────┐\n│ ✨ ok │\n└──────┘\nend ★\n")
    empty = [f for f in frames if f.text == ""]
    assert len(empty) >= 10  # box drawing and emoji are several byte tokens each
    score = make_score(frames, load_preset("default"))
    assert all(c.duration == 0.0 for c in score.cues if c.text == "")
    # A run of art is one unit, whatever its tokens.
    assert [u.text for u in score.units if u.kind == "art"][:2] == ["┌──────┐", "│"]


@pytest.mark.parametrize("name", preset_names())
def test_runs_of_art_are_condensed_and_the_pace_holds(poem, name):
    preset = load_preset(name)
    score = make_score(poem, preset)
    end_rest = sum(r.duration for r in score.rests if r.reason == "end")
    length = score.end - end_rest
    pace = len(score.words) / length * 60.0
    assert abs(pace / preset.timing.words_per_minute - 1.0) <= 0.2, f"{pace:.1f} words a minute"
    chunks = POEM.split()
    art_chars = sum(len(c) for c in chunks if not any(ch.isalnum() for ch in c)) / sum(len(c) for c in chunks)
    art_time = sum(u.duration for u in score.units if u.kind == "art") / length
    assert art_time <= 1.5 * art_chars
    per_line: dict[int, float] = {}
    for u in score.units:
        if u.kind == "art":
            per_line[u.line] = per_line.get(u.line, 0.0) + u.beats
    assert max(per_line.values()) <= preset.timing.art_max_beats + 1e-9


@pytest.mark.parametrize("name", preset_names())
def test_a_stanza_break_is_a_silence(poem, name):
    preset = load_preset(name)
    score = make_score(poem, preset)
    breaks = [r for r in score.rests if r.reason == "stanza"]
    assert len(breaks) == POEM.count("\n\n")
    for rest in breaks:
        assert rest.duration >= silence_seconds(preset) - 1e-9
        sounding = [n for n in score.notes if n.time < rest.time + rest.duration and n.time + n.duration > rest.time + 1e-6]
        assert not sounding, f"{[(n.voice, n.pitch) for n in sounding]} sound through the break at {rest.time:.2f} s"
    assert sum(m.kind == "stanza" for m in score.marks) == len(breaks)


def test_headings_open_sections_in_new_keys(poem):
    preset = load_preset("default")
    score = make_score(poem, preset)
    sections = [m for m in score.marks if m.kind == "section"]
    assert [m.label for m in sections] == ["# Harbour Lights", "## 1. Morning", "## 2. Evening", "THE LAMPS COME ON"]
    offsets = preset.form.section_keys
    home = key_pitch_class(preset.music.key)
    for m in sections:
        assert key_pitch_class(m.key) == (home + offsets[m.index % len(offsets)]) % 12
    keys = {0: preset.music.key} | {m.index: m.key for m in sections}
    for unit in score.words:
        note = melody_by_unit(score).get(unit.index)
        if note is not None:
            assert in_scale(note.pitch, keys[unit.section], preset.music.scale)


@pytest.mark.parametrize("name", preset_names())
def test_every_pitched_note_is_in_its_sections_scale(poem, name):
    preset = load_preset(name)
    score = make_score(poem, preset)
    starts = sorted((m.time, m.key) for m in score.marks if m.kind == "section")

    def key_at(t: float) -> str:
        return ([k for at, k in starts if at <= t + 1e-9] or [preset.music.key])[-1]

    for note in score.notes:
        if note.voice == "layers" or (note.voice == "melody" and preset.voices.melody.chromatic):
            continue
        assert in_scale(note.pitch, key_at(note.time), preset.music.scale), note


def test_a_line_ends_on_a_stable_degree(poem):
    preset = load_preset("default")
    score = make_score(poem, preset)
    keys = {0: preset.music.key} | {m.index: m.key for m in score.marks if m.kind == "section"}
    notes = melody_by_unit(score)
    ends = [u for u in score.words if u.ends_line]
    assert len(ends) >= 10
    for u in ends:
        assert (notes[u.index].pitch - key_pitch_class(keys[u.section])) % 12 in STABLE


def test_the_melody_is_a_line_one_can_sing(long_generation):
    preset = load_preset("default")
    score = make_score(long_generation, preset)
    pitches = np.array([n.pitch for n in score.notes_of("melody")], float)
    steps = np.abs(np.diff(pitches))
    assert np.corrcoef(pitches[:-1], pitches[1:])[0, 1] >= 0.6
    assert np.mean(steps > 7) <= 0.10
    assert np.mean(steps <= 2) >= 0.4  # mostly by step (or a repeat)
    edges = (pitches == pitches.max()) | (pitches == pitches.min())
    assert np.mean(edges) <= 0.02
    # A surprising word leaps further than a predictable one.
    notes = melody_by_unit(score)
    words = [u for u in score.words if u.index in notes]
    leap = {b.index: abs(notes[b.index].pitch - notes[a.index].pitch) for a, b in zip(words, words[1:]) if a.stanza == b.stanza}
    surprisal = {u.index: unit_signal([long_generation[i] for i in u.tokens], "surprisal") for u in words}
    high = [leap[k] for k in leap if surprisal[k] > np.percentile(list(surprisal.values()), 90)]
    low = [leap[k] for k in leap if surprisal[k] < np.percentile(list(surprisal.values()), 30)]
    assert np.mean(high) > 2 * np.mean(low)


def test_ghosts_are_shadows(long_generation):
    preset = load_preset("default")
    score = make_score(long_generation, preset)
    melody = {n.token: n for n in score.notes_of("melody")}
    ghosts = score.notes_of("ghosts")
    assert 0 < len(ghosts) <= len(melody)
    for ghost in ghosts:
        shadowed = melody[ghost.token]
        assert ghost.velocity < shadowed.velocity
        assert abs(ghost.pitch - shadowed.pitch) <= 12
    assert np.median([abs(g.pitch - melody[g.token].pitch) for g in ghosts]) <= 5


def test_chords_change_on_the_beat_and_hold_common_tones(long_generation):
    preset = load_preset("default")
    score = make_score(long_generation, preset)
    harmony = score.notes_of("harmony")
    onsets = sorted({n.beat for n in harmony})
    assert len(onsets) > 20
    assert np.mean([abs(b - round(b)) < 1e-9 for b in onsets]) >= 0.9
    ends = {(round(n.beat + n.beats, 9), n.pitch) for n in harmony}
    assert not [n for n in harmony if (round(n.beat, 9), n.pitch) in ends], "a common tone was struck again"
    # Chords of 2 to 5 notes, each inside the register.
    lo, hi = preset.voices.harmony.register
    for at in onsets:
        chord = [n.pitch for n in harmony if n.beat <= at < n.beat + n.beats]
        assert 2 <= len(chord) <= 5 and all(lo <= p <= hi + 24 for p in chord)


@pytest.mark.parametrize("name", [n for n in preset_names() if load_preset(n).voices.harmony.enabled])
def test_common_tones_are_tied_in_the_score_and_the_midi_file(long_generation, name):
    """A pitch two chords share is one note across the change: the Score never ends and
    starts it at one moment, and the MIDI file keeps it on (no note-off and note-on of the
    pitch at one tick). The synth then plays it on, its envelope unbroken, which
    benchmarks/audio_quality.py measures as the held tones (tests/test_audio_quality.py)."""
    from sonify.outputs.midifile import score_to_midi

    score = make_score(long_generation, load_preset(name))
    harmony = score.notes_of("harmony")
    onsets = {round(n.beat, 9) for n in harmony}
    held = [n for n in harmony if any(n.beat + 1e-9 < b < n.beat + n.beats - 1e-9 for b in onsets)]
    assert held, "no tone held across a chord change: nothing tested"
    ends = {(round(n.beat + n.beats, 9), n.pitch) for n in harmony}
    assert not [n for n in harmony if (round(n.beat, 9), n.pitch) in ends], "a common tone was struck again"
    track = next(t for t in score_to_midi(score).tracks if t.name == "harmony")
    tick, offs, ons = 0, set(), set()
    for message in track:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            ons.add((tick, message.note))
        elif message.type in ("note_off", "note_on"):
            offs.add((tick, message.note))
    assert len(ons) == len(harmony)
    assert not offs & ons, "an off/on pair of one pitch at one tick"


def test_the_same_words_give_the_same_notes_alone_and_embedded():
    """Calibrated, not re-scaled: a stanza's melody and ghosts depend only on its own words'
    telemetry, not on what came before it (the pace, held over the whole piece, may place
    them at other times)."""
    alone = read("The sea is calm tonight,\nthe tide is full, the moon lies fair.\n")
    before = read("A quite different opening stanza\nwith other words in it.\n")
    blank = dataclasses.replace(before[-1], text="\n", token_id=0)
    embedded = [*before, blank, *alone]
    preset = load_preset("default")
    a, b = make_score(alone, preset), make_score(embedded, preset)
    shift = len(before) + 1

    def notes(score, voice, offset):
        return [(n.token - offset, n.pitch, n.velocity) for n in score.notes_of(voice) if n.token >= offset]

    assert notes(a, "melody", 0) == notes(b, "melody", shift)
    assert notes(a, "ghosts", 0) == notes(b, "ghosts", shift)


def test_calibrated_limits_are_fixed_and_rolling_windows_are_not():
    calibration = shipped_calibration()
    fixed = Scaler(Scaling("surprisal", limits=("5%", "95%"), range=(0.0, 1.0)), calibration)
    rolling = Scaler(Scaling("surprisal", limits=("5%", "95%"), range=(0.0, 1.0), window=16), calibration)
    for value in [1.0] * 20:
        fixed(value), rolling(value)
    # After a run of small values, the same value means the same to the calibrated scaler...
    assert fixed(8.0) == Scaler(fixed.scaling, calibration)(8.0)
    # ... while the rolling window has re-scaled itself.
    assert rolling(8.0) != Scaler(rolling.scaling, calibration)(8.0)
    lo, hi = fixed.describe_limits()
    assert lo == pytest.approx(calibration.percentile("surprisal", 5)) and hi > lo
    # Words the model wrote are scaled against their own table.
    assert fixed.limits("generated") != fixed.limits("read")
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_the_score_grows_token_by_token_as_offline(long_generation):
    frames = long_generation[:400]
    preset = load_preset("default")
    offline = make_score(frames, preset)
    growing = GrowingScore(preset)
    for start in range(0, len(frames), 7):
        growing.add(list(frames[start : start + 7]))
    growing.finish()
    assert growing.score == offline
    assert offline == make_score(list(frames), load_preset("default"))
    assert sorted(c.token for c in offline.cues) == list(range(len(frames)))


def test_gate_lets_only_surprises_sound(long_generation):
    preset = load_preset("glitch")
    score = make_score(long_generation, preset)
    sounded = {n.token for n in score.notes_of("melody")}
    assert 0 < len(sounded) < 0.35 * len(score.words)
    threshold = shipped_calibration().percentile("surprisal", 80, mode="generated")
    for unit in score.words:
        if unit.tokens[0] in sounded:
            assert unit_signal([long_generation[i] for i in unit.tokens], "surprisal") >= threshold


def test_presets_sound_clearly_different(poem):
    fingerprints = {}
    for name in preset_names():
        p = load_preset(name)
        voices = tuple(sorted(v.name for v in make_score(poem, p).voices))
        fingerprints[name] = (p.music.key, p.music.scale, p.music.tempo, p.timing.words_per_minute, voices, p.voices.melody.instrument)
    assert len(set(fingerprints.values())) == len(fingerprints) >= 7


def test_disabled_voices_are_absent(poem):
    preset = load_preset("default")
    quiet = dataclasses.replace(
        preset, voices=dataclasses.replace(preset.voices, ghosts=dataclasses.replace(preset.voices.ghosts, enabled=False))
    )
    score = make_score(poem, quiet)
    assert not score.notes_of("ghosts") and "ghosts" not in {v.name for v in score.voices}


def test_a_remote_source_without_attention_or_layers_falls_back(poem):
    """Frames that say they lack attention and layer telemetry: the layers voice rests, the
    harmony's spread and the drone follow their fallback signals, nothing crashes."""

    empty = {"attention": AttentionStats.empty(), "layers": LayerStats.empty(), "embedding": ()}
    bare = [dataclasses.replace(fr, absent=("attention", "layers", "embedding"), **empty) for fr in poem]
    score = make_score(bare, load_preset("default"))
    assert not score.notes_of("layers") and not score.controls_of("layers")
    assert score.notes_of("harmony") and score.controls_of("drone")
    values = {c.value for c in score.controls_of("drone")}
    assert len(values) > 3 and all(math.isfinite(v) for v in values)
