"""Can a listener read the model back from the music? Each mapping, from the MIDI file alone.

For every preset, the shipped model reads each text (benchmarks/texts/ and any file given)
and also writes a piece of its own (``--generate N`` tokens); each is rendered to a MIDI
file. The MIDI file is then read back with mido, knowing only the preset, and each mapping
the preset declares is compared with the raw signal per word from the trace (Spearman ρ;
goal ≥ 0.9 over a piece of ≥ 600 words):

- melody leap: the size in scale steps of each step of the line ← the word's signal
  (stanza-opening words, which start the line afresh, excluded);
- melody velocity ← its signal;
- ghost distance (scale steps from the melody note) and ghost softness (its velocity ÷ the
  melody note's) ← the alternative's signal;
- harmony tension (the chord's step on the ladder I vi IV ii V vii, read from its notes)
  and spread (semitones from its lowest note to its highest) ← the mean signal of the
  words since the last chord change (a stanza's first chord: its first word);
- layer stops and the drone's level (the control value in force at each word) ← the signal.

Also printed: the melody's lag-1 autocorrelation of pitch (goal ≥ 0.6), the share of
intervals over 7 semitones (≤ 10 %), the share of notes on the register's top or bottom
(≤ 2 %); ghosts per melody note (≤ 1), the share softer than their melody note (100 %),
the median distance to it in semitones (≤ 5); chord onsets on a beat (≥ 90 %), common
tones struck again at a change (0); pitched notes in the section's scale (100 %).

    python3 benchmarks/faithfulness.py                      # every preset, example texts + 1,000 generated tokens
    python3 benchmarks/faithfulness.py poem.txt --presets default,choral
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections import defaultdict
from pathlib import Path

import mido
import numpy as np
from scipy.stats import spearmanr

TEXTS = Path(__file__).resolve().parent / "texts"
GOAL = 0.9


def rho(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 8 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(spearmanr(x[keep], y[keep]).statistic)


class ReadBack:
    """What the MIDI file says: per track its notes (tick, pitch, velocity, end tick), the
    lyrics (one per unit of text), controls, and the sections' keys from the markers."""

    def __init__(self, data: bytes):
        midi = mido.MidiFile(file=io.BytesIO(data))
        self.ticks_per_beat = midi.ticks_per_beat
        self.notes: dict[str, list[tuple[int, int, int, int]]] = {}
        self.controls: dict[str, list[tuple[int, int, int]]] = {}
        self.lyrics: list[tuple[int, str]] = []
        self.markers: list[tuple[int, str]] = []
        for track in midi.tracks:
            now, name, opened = 0, track.name, {}
            notes, controls = [], []
            for message in track:
                now += message.time
                if message.type == "note_on" and message.velocity > 0:
                    opened[message.note] = (now, message.velocity)
                elif message.type in ("note_off", "note_on") and message.note in opened:
                    start, velocity = opened.pop(message.note)
                    notes.append((start, message.note, velocity, now))
                elif message.type == "control_change":
                    controls.append((now, message.control, message.value))
                elif message.type == "lyrics":
                    self.lyrics.append((now, message.text))
                elif message.type == "marker":
                    self.markers.append((now, message.text))
            self.notes[name] = sorted(notes)
            self.controls[name] = controls

    def section_keys(self, home: str) -> list[tuple[int, str]]:
        """(tick, key) from which each section plays."""
        keys = [(0, home)]
        for tick, text in self.markers:
            if text.startswith("section"):
                keys.append((tick, text.rsplit("(", 1)[1].rstrip(")")))
        return keys

    def in_force(self, voice: str, controller: int, ticks: list[int]) -> list[float]:
        """The controller's value in force at each tick (sent only on change)."""
        events = sorted((t, v) for t, c, v in self.controls.get(voice, []) if c == controller)
        out, k, value = [], 0, math.nan
        for tick in ticks:
            while k < len(events) and events[k][0] <= tick:
                value = events[k][1]
                k += 1
            out.append(value)
        return out


def key_at(keys: list[tuple[int, str]], tick: int) -> str:
    return [k for t, k in keys if t <= tick][-1]


def scale_grid(key: str, scale: str):
    from sonify.music.scales import scale_pitches

    return scale_pitches(key, scale, 0, 127)


def steps_between(grid: np.ndarray, a: int, b: int) -> int:
    return int(np.searchsorted(grid, b) - np.searchsorted(grid, a))


def chord_tension(pitches: set[int], key: str, scale: str) -> int | None:
    """The step of the tension ladder (I vi IV ii V vii) whose stacked thirds these notes are."""
    from sonify.music.harmony import ladder
    from sonify.music.scales import key_pitch_class

    tonic = key_pitch_class(key)
    classes = sorted({int(p) % 12 for p in scale_grid(key, scale)}, key=lambda pc: (pc - tonic) % 12)
    n, have = len(classes), {p % 12 for p in pitches}
    for step, root in enumerate(ladder(n)):
        if {classes[(root + 2 * k) % n] for k in range(len(have))} == have:
            return step
    return None


def words_of(frames, units):
    """Per word unit: its frames (the mapping's own grouping of the trace)."""
    return [[frames[i] for i in u.tokens] for u in units]


def analyse(frames, preset, calibration) -> dict:
    """Every figure for one piece: map, write the MIDI file, read it back."""
    from sonify.music.calibration import shipped_calibration
    from sonify.music.mapping import make_score
    from sonify.music.signals import alternatives, unit_layer_signal, unit_signal
    from sonify.outputs.midifile import score_to_midi

    calibration = calibration or shipped_calibration()
    score = make_score(frames, preset, calibration)
    buffer = io.BytesIO()
    score_to_midi(score).save(file=buffer)
    midi = ReadBack(buffer.getvalue())
    tpb = midi.ticks_per_beat
    units = list(score.units)
    lyric_ticks = [t for t, _ in midi.lyrics]
    assert len(lyric_ticks) == len(units), "one lyric per unit of text"
    words = [k for k, u in enumerate(units) if u.kind == "word"]
    unit_frames = words_of(frames, units)
    keys = midi.section_keys(preset.music.key)
    scale = preset.music.scale
    v = preset.voices
    out: dict = {"words": len(words), "rho": {}}

    def signal(k: int, name: str) -> float:
        return unit_signal(unit_frames[k], name)

    # Melody: the note that starts at each word's lyric tick.
    melody = midi.notes.get("melody", [])
    by_tick = {}
    for note in melody:
        by_tick.setdefault(note[0], note)
    sounded = [(k, by_tick[lyric_ticks[k]]) for k in words if lyric_ticks[k] in by_tick]
    if v.melody.enabled and len(sounded) > 8:
        pitches = np.array([n[1] for _, n in sounded], float)
        intervals = np.diff(pitches)
        out["autocorrelation"] = float(np.corrcoef(pitches[:-1], pitches[1:])[0, 1]) if pitches.size > 2 else math.nan
        out["leaps_over_7"] = float(np.mean(np.abs(intervals) > 7)) if intervals.size else math.nan
        lo, hi = v.melody.register
        out["edges"] = float(np.mean((pitches == pitches.min()) & (pitches <= lo + 2) | (pitches == pitches.max()) & (pitches >= hi - 2)))
        leap_x, leap_y = [], []
        for (k0, n0), (k1, n1) in zip(sounded, sounded[1:]):
            if units[k1].stanza != units[k0].stanza or not hasattr(v.melody.leap, "signal"):
                continue
            grid = scale_grid(key_at(keys, n1[0]), "chromatic" if v.melody.chromatic else scale)
            leap_x.append(signal(k1, v.melody.leap.signal))
            leap_y.append(abs(steps_between(grid, n0[1], n1[1])))
        if hasattr(v.melody.leap, "signal"):
            out["rho"]["melody leap"] = rho(leap_x, leap_y) * np.sign(v.melody.leap.range[1] - v.melody.leap.range[0])
        if hasattr(v.melody.velocity, "signal"):
            x = [signal(k, v.melody.velocity.signal) for k, _ in sounded]
            out["rho"]["melody velocity"] = rho(x, [n[2] for _, n in sounded]) * np.sign(v.melody.velocity.range[1] - v.melody.velocity.range[0])
    # Ghosts: notes starting after a melody note inside its word, matched to the alternatives in order.
    ghosts = midi.notes.get("ghosts", [])
    if v.ghosts.enabled and ghosts:
        at_word = defaultdict(list)
        starts = np.array(lyric_ticks)
        for note in ghosts:
            k = int(np.searchsorted(starts, note[0], side="right")) - 1
            at_word[k].append(note)
        distance_x, distance_y, soft_x, soft_y, semis, softer = [], [], [], [], [], []
        for k, notes in at_word.items():
            main = by_tick.get(lyric_ticks[k])
            if main is None:
                continue
            close = [a for a in alternatives(unit_frames[k][0], v.ghosts.count) if a.gap <= v.ghosts.max_gap]
            grid = scale_grid(key_at(keys, main[0]), scale)
            for alt, note in zip(close, sorted(notes)):
                distance_x.append(alt.signal(v.ghosts.distance.signal))
                distance_y.append(abs(steps_between(grid, main[1], note[1])))
                soft_x.append(alt.signal(v.ghosts.softer.signal))
                soft_y.append(note[2] / main[2])
                semis.append(abs(note[1] - main[1]))
                softer.append(note[2] < main[2])
        out["ghosts_per_note"] = len(ghosts) / max(len(sounded), 1)
        out["ghosts_softer"] = float(np.mean(softer)) if softer else math.nan
        out["ghost_median_semitones"] = float(np.median(semis)) if semis else math.nan
        out["rho"]["ghost distance"] = rho(distance_x, distance_y) * np.sign(v.ghosts.distance.range[1] - v.ghosts.distance.range[0])
        out["rho"]["ghost softness"] = rho(soft_x, soft_y) * np.sign(v.ghosts.softer.range[1] - v.ghosts.softer.range[0])
    # Harmony: the chord sounding from each change; the words since the change before.
    harmony = midi.notes.get("harmony", [])
    if v.harmony.enabled and harmony:
        onsets = sorted({n[0] for n in harmony})
        sounding = [{n[1] for n in harmony if n[0] <= t < n[3]} for t in onsets]
        beats = [t / tpb for t in onsets]
        out["chords_on_beat"] = float(np.mean([abs(b - round(b)) < 1e-6 for b in beats]))
        restruck = 0
        for note in harmony:
            restruck += any(other[3] == note[0] and other[1] == note[1] for other in harmony)
        out["restruck"] = restruck
        fx, fy, sx, sy = [], [], [], []
        word_ticks = [lyric_ticks[k] for k in words]

        def stanza_at(t: int) -> int | None:
            following = [k for k, wt in zip(words, word_ticks) if wt >= t]
            return units[following[0]].stanza if following else None

        previous = None
        for t, pitches in zip(onsets, sounding):
            if previous is None or stanza_at(previous) != stanza_at(t):
                span = [k for k, wt in zip(words, word_ticks) if wt == t]
            else:
                span = [k for k, wt in zip(words, word_ticks) if previous <= wt < t]
            previous = t
            if not span:
                continue
            tension = chord_tension(pitches, key_at(keys, t), scale)
            if hasattr(v.harmony.tension, "signal") and tension is not None:
                fx.append(np.nanmean([signal(k, v.harmony.tension.signal) for k in span]))
                fy.append(tension)
            if hasattr(v.harmony.spread, "signal"):
                sx.append(np.nanmean([signal(k, v.harmony.spread.signal) for k in span]))
                sy.append(max(pitches) - min(pitches))
        if fx:
            out["rho"]["harmony tension"] = rho(fx, fy)
        if sx:
            out["rho"]["harmony spread"] = rho(sx, sy)
    # Layers and drone: the control in force at each word.
    ticks = [lyric_ticks[k] for k in words]
    if v.layers.enabled and midi.controls.get("layers"):
        from sonify.music.held import stop_groups

        table = np.array([unit_layer_signal(unit_frames[k], v.layers.level.signal) for k in words])
        stops = stop_groups(table.shape[1], v.layers.stops)
        values = []
        for s, layers in enumerate(stops):
            if len(layers) == 1:
                values.append(rho(table[:, layers[0]], midi.in_force("layers", v.layers.controller + s, ticks)))
        if values:
            out["rho"]["layer stops (worst)"] = float(np.nanmin(values))
    if v.drone.enabled and hasattr(v.drone.level, "signal") and midi.controls.get("drone"):
        x = [signal(k, v.drone.level.signal) for k in words]
        out["rho"]["drone level"] = rho(x, midi.in_force("drone", v.drone.controller, ticks)) * np.sign(v.drone.level.range[1] - v.drone.level.range[0])
    # Every pitched note in its section's scale.
    inside = total = 0
    for voice, notes in midi.notes.items():
        if voice in ("layers",) or (voice == "melody" and v.melody.chromatic) or voice not in {i.name for i in score.voices}:
            continue
        for note in notes:
            grid = set(scale_grid(key_at(keys, note[0]), scale).tolist())
            inside += note[1] in grid
            total += 1
    out["in_scale"] = inside / max(total, 1)
    return out


def show(name: str, figures: dict, long_enough: bool) -> bool:
    rhos = figures["rho"]
    low = {k: r for k, r in rhos.items() if not (r >= GOAL)}
    parts = [f"{k} {r:+.2f}" for k, r in rhos.items()]
    melody = (
        f"autocorr {figures.get('autocorrelation', math.nan):.2f}, >7 st {figures.get('leaps_over_7', math.nan):.1%}, "
        f"edges {figures.get('edges', math.nan):.1%}"
    )
    extra = []
    if "ghosts_per_note" in figures:
        extra.append(
            f"ghosts/note {figures['ghosts_per_note']:.2f}, softer {figures['ghosts_softer']:.0%}, "
            f"median {figures['ghost_median_semitones']:.0f} st"
        )
    if "chords_on_beat" in figures:
        extra.append(f"chords on beat {figures['chords_on_beat']:.0%}, re-struck {figures['restruck']}")
    extra.append(f"in scale {figures['in_scale']:.1%}")
    print(f"  {name:9s} {figures['words']:5d} words  " + "; ".join(parts))
    print(f"  {'':9s} {melody}; " + "; ".join(extra))
    ok = figures["in_scale"] == 1.0
    if long_enough:
        ok &= not low
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", type=Path, help="text files (default: benchmarks/texts/*)")
    parser.add_argument("--presets", default="", help="comma-separated presets (default: all)")
    parser.add_argument("--generate", type=int, default=1000, metavar="N", help="also a generated piece of N tokens (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sonify import Engine, SamplerSettings, load_model, load_preset, preset_names

    presets = [p for p in args.presets.split(",") if p] or preset_names()
    engine = Engine(load_model())
    pieces = [(p.name, list(engine.read(p.read_text(encoding="utf-8")))) for p in (args.texts or sorted(TEXTS.glob("*")))]
    if args.generate:
        frames = engine.generate("", max_tokens=args.generate, sampler=SamplerSettings(), seed=args.seed, stop_at_eos=False)
        pieces.append((f"generated ({args.generate} tokens, seed {args.seed})", list(frames)))
    ok = True
    for title, frames in pieces:
        print(f"\n{title}")
        for name in presets:
            figures = analyse(frames, load_preset(name), None)
            ok &= show(name, figures, figures["words"] >= 600)
    print(f"\nρ goal ≥ {GOAL} on pieces of ≥ 600 words: " + ("met" if ok else "missed somewhere above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
