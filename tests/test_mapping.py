"""The mapping on real traces of the default model: each mapped signal is heard faithfully.

Faithfulness: for every monotonic mapping, the Spearman correlation between the signal and
the parameter read back from the Score is at least 0.9 (with the sign the range gives).
Percentile limits look back over a running window, so the mapping is monotonic once that
window is full; the comparison starts there (WARMUP tokens, the presets' window)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr
from traces import POEM, generated, read

from sonify.music.mapping import alternatives, chord_groups, chord_window, make_score, stop_groups
from sonify.music.preset import load_preset, preset_names
from sonify.music.scales import in_scale
from sonify.music.signals import Scaling, layer_signal, scalar_signal

WARMUP = 256


def rho(x, y) -> float:
    return float(spearmanr(x, y).statistic)


def held(score, voice: str, controller: int, n: int) -> np.ndarray:
    """The value of a controller in force at each token (controls are sent only on change)."""
    sent = {c.token: c.value for c in score.controls_of(voice) if c.controller == controller}
    out, value = [], None
    for i in range(n):
        value = sent.get(i, value)
        out.append(value)
    return np.array(out, dtype=float)


def assert_faithful(signal, parameter, scaling: Scaling, what: str) -> None:
    sign = np.sign(scaling.range[1] - scaling.range[0])
    r = rho(signal, parameter)
    assert sign * r >= 0.9, f"{what}: Spearman {r:.3f} between {scaling.signal} and the parameter"


@pytest.fixture(scope="module")
def frames():
    return generated(1600)


@pytest.mark.parametrize("name", preset_names())
def test_every_mapped_signal_is_faithful(frames, name):
    preset = load_preset(name)
    score = make_score(frames, preset)
    v = preset.voices
    checked = 0
    if v.melody.enabled:
        notes = [n for n in score.notes_of("melody") if n.token >= WARMUP]
        tokens = [n.token for n in notes]
        for param, read_back in (("pitch", lambda n: n.pitch), ("velocity", lambda n: n.velocity)):
            scaling = getattr(v.melody, param)
            if isinstance(scaling, Scaling) and len(notes) > 20:
                assert_faithful(
                    scalar_signal(frames, scaling.signal)[tokens], [read_back(n) for n in notes], scaling, f"melody {param}"
                )
                checked += 1
    if v.ghosts.enabled:
        by_token: dict[int, list] = {}
        for n in score.notes_of("ghosts"):
            by_token.setdefault(n.token, []).append(n)
        probs, pitches, velocities = [], [], []
        for token, notes in by_token.items():
            if token < WARMUP:
                continue
            alts = alternatives(frames[token], v.ghosts.count, v.ghosts.min_probability)
            assert len(alts) == len(notes)
            for p, n in zip(alts, sorted(notes, key=lambda n: n.time)):
                probs.append(p), pitches.append(n.pitch), velocities.append(n.velocity)
        probs = np.array(probs)
        signals = {"alt_probability": probs, "alt_surprisal": -np.log(probs)}
        for scaling, values in ((v.ghosts.pitch, pitches), (v.ghosts.velocity, velocities)):
            assert_faithful(signals[scaling.signal], values, scaling, "ghosts")
            checked += 1
    if v.harmony.enabled:
        chords: dict[int, list[int]] = {}
        for n in score.notes_of("harmony"):
            chords.setdefault(n.token, []).append(n.pitch)
        for param, read_back in (("notes", len), ("root", min)):
            scaling = getattr(v.harmony, param)
            warmup = chord_window(scaling, v.harmony.every) * v.harmony.every
            groups = [g for g in chord_groups(len(frames), v.harmony.every) if g[0] >= warmup]
            signal = scalar_signal(frames, scaling.signal)
            means = [signal[g].mean() for g in groups]
            assert_faithful(means, [read_back(chords[g[0]]) for g in groups], scaling, f"harmony {param}")
            checked += 1
    if v.layers.enabled:
        level = v.layers.level
        signal = layer_signal(frames, level.signal)
        stops = stop_groups(signal.shape[1], v.layers.stops)
        for k, layers in enumerate(stops):
            if len(layers) == 1:  # a stop of one layer follows that layer alone
                values = held(score, "layers", v.layers.controller + k, len(frames))
                assert_faithful(signal[WARMUP:, layers[0]], values[WARMUP:], level, f"layer stop {k}")
                checked += 1
    if v.drone.enabled and isinstance(v.drone.level, Scaling):
        values = held(score, "drone", v.drone.controller, len(frames))
        assert_faithful(scalar_signal(frames, v.drone.level.signal)[WARMUP:], values[WARMUP:], v.drone.level, "drone level")
        checked += 1
    assert checked >= 2


def test_reading_pace_lingers_on_surprising_tokens():
    """In reading mode a token lasts its characters' time plus a linger that rises with surprisal."""
    preset = load_preset("podcast")
    frames = generated(1600)
    score = make_score(frames, preset)
    t = preset.timing
    per_char = 60.0 / (t.words_per_minute * 6.0)
    chars = np.array([len(f.text.strip()) or 1 for f in frames])
    base = np.maximum(t.min_token, chars * per_char)
    linger = np.array([c.duration for c in score.cues]) - base
    assert linger.min() >= -1e-9 and linger.max() <= t.linger.range[1] + 1e-9
    assert_faithful(scalar_signal(frames, "surprisal")[WARMUP:], linger[WARMUP:], t.linger, "linger")


def test_grid_linger_gives_surprising_tokens_an_extra_step():
    preset = load_preset("default")
    frames = generated(1600)
    score = make_score(frames, preset)
    steps = np.rint(np.array([c.duration for c in score.cues]) * preset.music.tempo / 60.0 / preset.timing.step).astype(int)
    surprisal = scalar_signal(frames, "surprisal")
    assert set(steps) == {1, 2}
    long, short = surprisal[steps == 2], surprisal[steps == 1]
    assert np.median(long) > np.percentile(short, 90)


@pytest.mark.parametrize("name", preset_names())
def test_pitched_notes_are_in_the_scale(frames, name):
    preset = load_preset(name)
    score = make_score(frames, preset)
    for note in score.notes:
        if note.voice == "layers" or (note.voice == "melody" and preset.voices.melody.chromatic):
            continue
        assert in_scale(note.pitch, preset.music.key, preset.music.scale), note
    assert all(0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 for n in score.notes)


def test_score_is_deterministic_and_time_sorted(frames):
    preset = load_preset("default")
    a, b = make_score(frames, preset), make_score(list(frames), load_preset("default"))
    assert a == b
    times = [n.time for n in a.notes]
    assert times == sorted(times)
    assert [c.time for c in a.controls] == sorted(c.time for c in a.controls)
    assert all(n.time + n.duration <= a.end + 1e-9 for n in a.notes)


def test_times_in_seconds_and_beats_agree(frames):
    preset = load_preset("pulse")
    score = make_score(frames, preset)
    spb = 60.0 / preset.music.tempo
    for n in score.notes[:500]:
        assert n.beat * spb == pytest.approx(n.time, abs=1e-9)
        assert n.beats * spb == pytest.approx(n.duration, abs=1e-9)
    # On the grid every token starts on a step.
    for cue in score.cues:
        assert cue.beat / preset.timing.step == pytest.approx(round(cue.beat / preset.timing.step), abs=1e-9)


def test_line_breaks_and_the_end_are_rests():
    frames = read(POEM)
    preset = load_preset("default")
    score = make_score(frames, preset)
    breaks = [i for i, f in enumerate(frames) if "\n" in f.text]
    assert [r.token for r in score.rests if r.reason == "line break"] == breaks
    end = [r for r in score.rests if r.reason == "end"]
    assert len(end) == 1 and end[0].time + end[0].duration == pytest.approx(score.end)
    melody_tokens = {n.token for n in score.notes_of("melody")}
    assert not melody_tokens & set(breaks)
    # Nothing in the melody sounds during a line-break rest.
    for rest in score.rests:
        assert not any(rest.time <= n.time < rest.time + rest.duration for n in score.notes_of("melody"))


def test_cues_carry_every_token_in_order(frames):
    score = make_score(frames, load_preset("default"))
    assert "".join(c.text for c in score.cues) == "".join(f.text for f in frames)
    assert [c.token for c in score.cues] == list(range(len(frames)))


def test_gate_lets_only_surprises_sound(frames):
    preset = load_preset("glitch")
    score = make_score(frames, preset)
    surprisal = scalar_signal(frames, "surprisal")
    sounded = sorted({n.token for n in score.notes_of("melody")})
    assert 0 < len(sounded) < 0.25 * len(frames)
    assert np.median(surprisal[sounded]) > np.percentile(surprisal, 85)


def test_presets_sound_clearly_different(frames):
    """Each preset differs from every other in key, scale, tempo or timing, and in what plays."""
    fingerprints = {}
    for name in preset_names():
        p = load_preset(name)
        score = make_score(frames[:300], p)
        voices = tuple(sorted(v.name for v in score.voices))
        fingerprints[name] = (
            p.music.key,
            p.music.scale,
            p.music.tempo,
            p.timing.mode,
            p.timing.step,
            voices,
            p.voices.melody.instrument,
        )
    assert len(set(fingerprints.values())) == len(fingerprints)
    assert len(fingerprints) >= 7


def test_disabled_voices_are_absent(frames):
    preset = load_preset("default")
    quiet = dataclasses.replace(
        preset, voices=dataclasses.replace(preset.voices, ghosts=dataclasses.replace(preset.voices.ghosts, enabled=False))
    )
    score = make_score(frames[:200], quiet)
    assert not score.notes_of("ghosts") and "ghosts" not in {v.name for v in score.voices}
