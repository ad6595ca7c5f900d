"""Audio quality of the synthesizer, per preset: high-frequency energy, aliasing, clicks and
zipper noise, and the level of tones held across chord changes.

    python3 benchmarks/audio_quality.py                    # sonnet 18 (benchmarks/texts), every preset
    python3 benchmarks/audio_quality.py poem.txt --presets default,choral

The shipped model reads the text and each preset makes its Score; printed per preset:

- hf: energy above 16 kHz relative to the total, in dB, of the finished mix
  (``render_audio``: effects, loudness and limiter) (goal <= -40 dB);
- alias: the strongest non-harmonic component relative to its source, in dB. Each distinct
  (voice, pitch) of the Score, at the loudest velocity it has, is rendered alone and dry
  (the voice's bus: instrument and bus filter, no effects), and 0.68 s of it from 50 ms
  after its attack analysed; in its spectrum
  (Blackman-Harris window, 32,768 points) every bin more than 6 bins (+ the instrument's
  detune) away from a multiple of the note's frequency (half of it for the bell, whose
  modulator is at 3.5x) is non-harmonic; the figure is the loudest such bin against the
  loudest bin of the note, the worst over the notes (goal <= -60 dB);
- clicks: on each voice's dry bus over the whole Score, the samples whose second difference
  exceeds CLICK_RATIO x the RMS of the second difference over the surrounding 20 ms, not
  within ONSET_GUARD of a note's start or end in that voice (from the Score), where the
  signal is above -100 dB of the bus's peak, and that do not come again one period of a
  sounding note before or after (a waveform's corner, such as a low sawtooth's wrap
  through its lowpass, does) (goal: 0). A control that steps, or a note that restarts,
  shows here; a smooth glide or an oscillator's own waveform does not;
- held: for every pitch a voice holds across a chord change (an onset of another pitch in
  the same voice), the tone's level as the engine plays it among the voice's notes (its
  steals included), dry, against the same pitch played alone as one note over that span
  (its envelope and a pad's beating cancel out), RMS over whole periods (>= 10 ms) every
  ms from 50 ms before to 50 ms after the change (at least 0.5 s into the tone, past its
  attack); the figure is the worst max - min of the ratio in dB, with how many changes
  (goal <= 1 dB; two notes of the pitch that abut at the change count as one held tone:
  the re-struck common tone a tie removes).

The dry renders are used because the effects smear one note into the next: the figures
then belong to the notes and controls themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy.signal import get_window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = Path(__file__).resolve().parent / "texts" / "sonnet-18.txt"
HF_HZ = 16000.0
ALIAS_POINTS = 32768
ALIAS_GUARD_BINS = 6
CLICK_RATIO = 12.0
CLICK_WINDOW = 0.020
ONSET_GUARD = 0.010
HELD_SPAN = 0.050
HELD_AFTER = 0.5  # a change counts once the tone is past its attack (the pad's is 0.35 s)
DETUNE_CENTS = {"pad": 6.0, "drone": 4.0}  # the detuned saws of these instruments


def high_frequency_db(audio: np.ndarray, rate: int) -> float:
    """Energy above HF_HZ relative to the total (dB), both channels."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64), axis=0)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1.0 / rate)
    total = spectrum.sum()
    return 10 * np.log10(max(spectrum[freqs > HF_HZ].sum(), 1e-30) / max(total, 1e-30))


def dry_buses(score, settings, rate: int | None = None) -> dict[str, np.ndarray]:
    """Each voice's dry bus over the whole Score (and the notes' releases)."""
    from sonify.synth import SynthEngine

    engine = SynthEngine.for_score(score, settings, rate)
    total = max(engine.last_end, round(score.end * engine.sample_rate))
    return engine.dry(total)


def alias_db(score, settings, rate: int) -> tuple[float, str]:
    """The worst non-harmonic component against its note's loudest, over the Score's
    distinct (voice, pitch), and which note it was."""
    from sonify.music.score import Note
    from sonify.synth.instruments import INSTRUMENTS

    loudest: dict[tuple[str, int], int] = {}
    for note in score.notes:
        key = (note.voice, note.pitch)
        loudest[key] = max(loudest.get(key, 0), note.velocity)
    window = get_window("blackmanharris", ALIAS_POINTS)
    bin_hz = rate / ALIAS_POINTS
    freqs = np.arange(ALIAS_POINTS // 2 + 1) * bin_hz
    worst, where = -np.inf, ""
    for (voice, pitch), velocity in sorted(loudest.items()):
        info = score.voice(voice)
        # The window starts past the attack: the corner where a slow attack ends would
        # smear the partials into the bins next to them.
        skip = round((INSTRUMENTS[info.instrument].attack + 0.05) * rate)
        seconds = (skip + ALIAS_POINTS) / rate + 0.05
        note = Note(0.0, seconds, 0.0, 1.0, pitch, velocity, voice, info.channel, 0)
        alone = dataclasses.replace(score, notes=(note,), controls=())
        bus = dry_buses(alone, settings, rate=rate).get(voice)
        if bus is None:
            continue
        x = bus[skip : skip + ALIAS_POINTS].astype(np.float64)
        if x.size < ALIAS_POINTS or not np.any(x):
            continue
        power = np.abs(np.fft.rfft(x * window)) ** 2
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        grid = f0 / 2 if info.instrument == "bell" else f0
        nearest = np.round(freqs / grid) * grid
        spread = freqs * (2 ** (DETUNE_CENTS.get(info.instrument, 0.0) / 1200) - 1)
        harmonic = np.abs(freqs - nearest) <= ALIAS_GUARD_BINS * bin_hz + spread
        harmonic[freqs < 20.0] = True  # DC and sub-audio: not an alias
        level = 10 * np.log10(power[~harmonic].max() / power.max()) if np.any(~harmonic) else -np.inf
        if level > worst:
            worst, where = level, f"{voice} {pitch}"
    return float(worst), where


def _local_rms(d2: np.ndarray, rate: int) -> np.ndarray:
    """RMS of ``d2`` over the CLICK_WINDOW around each millisecond (exact sums per
    millisecond, so a quiet stretch after a loud one is measured as precisely)."""
    ms = round(rate / 1000)
    chunks = -(-d2.size // ms)
    padded = np.zeros(chunks * ms)
    padded[: d2.size] = d2 * d2
    sums = padded.reshape(chunks, ms).sum(axis=1)
    half = round(CLICK_WINDOW * 1000 / 2)
    windowed = np.lib.stride_tricks.sliding_window_view(np.pad(sums, half), 2 * half + 1).sum(axis=1)
    return np.sqrt(windowed / ((2 * half + 1) * ms))


def clicks(score, buses: dict[str, np.ndarray], rate: int) -> int:
    """Samples whose second difference jumps out of its surroundings, away from note edges,
    and not a corner of a waveform (one that comes again a period of a sounding note later
    or earlier, as a low sawtooth's wrap does through its lowpass)."""
    count = 0
    guard = round(ONSET_GUARD * rate)
    for voice, bus in buses.items():
        x = bus.astype(np.float64)
        d2 = np.zeros_like(x)
        d2[1:-1] = x[2:] - 2 * x[1:-1] + x[:-2]
        local = np.repeat(_local_rms(d2, rate), round(rate / 1000))[: x.size]
        floor = 1e-5 * np.abs(x).max()
        flagged = (np.abs(d2) > CLICK_RATIO * local) & (np.abs(x) > floor)
        notes = score.notes_of(voice)
        for note in notes:
            for edge in (note.time, note.time + note.duration):
                s = round(edge * rate)
                flagged[max(s - guard, 0) : s + guard] = False
        for n in np.flatnonzero(flagged):
            sounding = [m for m in notes if m.time * rate <= n <= (m.time + m.duration + 2.0) * rate]
            if not any(_repeats(d2, n, rate / (440.0 * 2 ** ((m.pitch - 69) / 12))) for m in sounding):
                count += 1
    return count


def _repeats(d2: np.ndarray, n: int, period: float) -> bool:
    """Whether a second difference at least half as large as ``d2[n]`` comes one period
    (within 0.4 %, the detuned saws' drift, and 2 samples) before or after ``n``."""
    slack = int(0.004 * period) + 2
    for centre in (n - period, n + period):
        lo, hi = max(int(centre) - slack, 0), min(int(centre) + slack + 1, d2.size)
        if lo < hi and np.abs(d2[lo:hi]).max() >= 0.5 * abs(d2[n]):
            return True
    return False


def held_tones(score, settings, rate: int) -> tuple[float, int]:
    """The worst level change (dB) of a pitch held across a chord change, and how many.

    A chord change is an onset of another pitch in the voice while the tone holds (two
    notes of the pitch that abut there count as one held tone: a re-strike a tie removes).
    The tone is rendered as the engine plays it among the voice's notes (a polyphony limit
    may steal it), through the voice's bus filter, and compared with the same pitch played
    alone as one note over the same span (so its own envelope and the beating of detuned
    oscillators cancel out): the figure is the spread of played / alone in dB."""
    worst, found = 0.0, 0
    span = round(HELD_SPAN * rate)
    for info in score.voices:
        notes = score.notes_of(info.name)
        starts: dict[int, set[int]] = {}
        for n in notes:
            starts.setdefault(round(n.time * rate), set()).add(n.pitch)
        runs: list[tuple[int, int, list]] = []  # (start, end, notes) of each held tone
        for pitch in sorted({n.pitch for n in notes}):
            for n in sorted((n for n in notes if n.pitch == pitch), key=lambda n: n.time):
                s, e = round(n.time * rate), round((n.time + n.duration) * rate)
                if runs and runs[-1][2][0].pitch == pitch and abs(s - runs[-1][1]) <= rate // 1000:
                    runs[-1] = (runs[-1][0], max(e, runs[-1][1]), runs[-1][2] + [n])
                else:
                    if runs and runs[-1][2][0].pitch == pitch and s < runs[-1][1]:
                        runs[-1] = (runs[-1][0], s, runs[-1][2])  # struck again before its end: held until then
                    runs.append((s, e, [n]))
        held = []
        for s, e, group in runs:
            pitch = group[0].pitch
            changes = [t for t, pitches in starts.items() if s + HELD_AFTER * rate < t < e - span and pitches - {pitch}]
            if changes:
                held.append((group, sorted(changes)))
        if not held:
            continue
        from scipy.signal import lfilter

        from sonify.synth import SynthEngine

        # The engine decides its steals as it takes each note up, in the Score's order: take
        # the voice's notes up front in that order (``for_score`` would take them only as it
        # renders) to see the fate of each, and render the tone's notes as it would.
        engine = SynthEngine(settings, score.tempo.changes[0].bpm, score.voices, rate)
        engine.schedule(notes, score.controls)
        total = max(engine.last_end, round(score.end * rate))
        for group, changes in held:
            tone = np.zeros(total)
            playing = [sounding for _, _, sounding in engine.pending if sounding.note in group]
            if len(playing) != len(group):
                raise RuntimeError(
                    f"{info.name} {group[0].pitch}: {len(playing)} of the held tone's {len(group)} notes found in the engine"
                )
            for sounding in playing:
                sound = np.zeros(sounding.end - sounding.start, dtype=np.float32)
                sounding.add_to(sound, 0, sound.size)
                tone[sounding.start : sounding.end] += sound[: total - sounding.start]
            # The reference: the tone as one note from its first start to its last end, alone.
            first = min(group, key=lambda n: n.time)
            end = max(n.time + n.duration for n in group)
            tied = dataclasses.replace(first, duration=end - first.time)
            alone = dry_buses(dataclasses.replace(score, notes=(tied,)), settings, rate=rate)[info.name].astype(np.float64)
            reference = np.zeros(total)
            reference[: min(total, alone.size)] = alone[:total]
            if info.name in engine.bus_filters:
                b, a, _ = engine.bus_filters[info.name]
                tone = lfilter(b.astype(np.float64), a.astype(np.float64), tone)
            period = rate / (440.0 * 2 ** ((first.pitch - 69) / 12))
            width = round(period * np.ceil(0.010 * rate / period))
            played = np.concatenate([[0.0], np.cumsum(tone * tone)])
            expected = np.concatenate([[0.0], np.cumsum(reference * reference)])
            for t in changes:
                at = np.arange(t - span - width // 2, t + span - width // 2, rate // 1000)
                ratio = np.maximum(played[at + width] - played[at], 1e-24) / np.maximum(expected[at + width] - expected[at], 1e-24)
                found += 1
                worst = max(worst, 10 * np.log10(ratio.max() / ratio.min()))
    return float(worst), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", default=str(TEXT))
    parser.add_argument("--presets", default="")
    args = parser.parse_args()

    from sonify import Engine, load_model
    from sonify.music.mapping import make_score
    from sonify.music.preset import load_preset, preset_names
    from sonify.synth import render_audio

    frames = list(Engine(load_model()).read(Path(args.text).read_text()))
    names = args.presets.split(",") if args.presets else preset_names()
    print(f"{Path(args.text).name}: click = |second difference| > {CLICK_RATIO:g} x its RMS over {CLICK_WINDOW * 1000:g} ms,")
    print(f"not within {ONSET_GUARD * 1000:g} ms of a note's start or end; dry voices for alias, clicks and held tones")
    print(f"{'preset':10s} {'hf dB':>7s} {'alias dB':>9s} {'(worst note)':>16s} {'clicks':>7s} {'held dB':>8s} {'held':>5s}")
    for name in names:
        preset = load_preset(name)
        score = make_score(frames, preset)
        rate = preset.synth.sample_rate
        mix = render_audio(score, preset.synth)
        hf = high_frequency_db(mix, rate)
        alias, where = alias_db(score, preset.synth, rate)
        zips = clicks(score, dry_buses(score, preset.synth, rate=rate), rate)
        held, count = held_tones(score, preset.synth, rate)
        print(f"{name:10s} {hf:7.1f} {alias:9.1f} {where:>16s} {zips:7d} {held:8.2f} {count:5d}")


if __name__ == "__main__":
    main()
