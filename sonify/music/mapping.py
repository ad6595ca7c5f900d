"""The mapping: a preset turns a sequence of Frames into a Score. Pure; no I/O.

Each voice reads the telemetry the way the parts of a transformer suggest: the melody is
the token itself, the ghosts the alternatives it passed over, the harmony how attention
spreads, the layers the work of each layer, the drone the residual stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SonifyError
from ..model.frame import Frame
from .preset import Drone, Ghosts, Harmony, Layers, Melody, Preset, Voice
from .scales import key_pitch_class, scale_pitches
from .score import Control, Cue, Note, Rest, Score, TempoMap, VoiceInfo, sort_controls, sort_notes
from .signals import LAYER_SIGNALS, Scaling, finite, layer_signal, running_percentile, scalar_signal, scale


@dataclass(frozen=True)
class TokenClock:
    """When each token sounds: onset and length in seconds and beats, and which are line breaks."""

    onset: np.ndarray
    length: np.ndarray
    beat: np.ndarray
    beats: np.ndarray
    rest_after: np.ndarray  # seconds of silence after each token
    newline: np.ndarray  # bool
    end: float


def _param(value: Scaling | float, frames: Sequence[Frame]) -> np.ndarray:
    """A mapped parameter per token: a constant, or its signal scaled."""
    if isinstance(value, Scaling):
        return value.apply(scalar_signal(frames, value.signal))
    return np.full(len(frames), float(value))


def is_newline(text: str) -> bool:
    return "\n" in text


def is_word(text: str) -> bool:
    """Whether a token carries letters or digits (not only spaces and punctuation)."""
    return any(ch.isalnum() for ch in text)


def token_clock(frames: Sequence[Frame], preset: Preset, tempo: TempoMap) -> TokenClock:
    timing = preset.timing
    n = len(frames)
    linger = _param(timing.linger, frames)
    newline = np.array([is_newline(f.text) for f in frames], dtype=bool)
    breaks = np.array([f.text.count("\n") for f in frames], dtype=np.float64)
    if timing.mode == "grid":
        steps = 1.0 + np.rint(linger)
        beat_len = timing.step * steps
        rest_beats = timing.newline_rest * breaks
        beat = np.concatenate([[0.0], np.cumsum(beat_len + rest_beats)])[:n]
        onset = np.array([tempo.seconds(b) for b in beat])
        ends = np.array([tempo.seconds(b) for b in beat + beat_len])
        length = ends - onset
        rest_after = np.array([tempo.seconds(b) for b in beat + beat_len + rest_beats]) - ends
        last = float(beat[-1] + beat_len[-1] + rest_beats[-1]) if n else 0.0
        end = tempo.seconds(last + timing.end_rest)
    else:
        per_char = 60.0 / (timing.words_per_minute * 6.0)
        chars = np.array([len(f.text.strip()) or 1 for f in frames], dtype=np.float64)
        length = np.maximum(timing.min_token, chars * per_char) + linger
        rest_after = timing.newline_rest * breaks
        onset = np.concatenate([[0.0], np.cumsum(length + rest_after)])[:n]
        end = (float(onset[-1] + length[-1] + rest_after[-1]) if n else 0.0) + timing.end_rest
        beat = np.array([tempo.beats(t) for t in onset])
        beat_len = np.array([tempo.beats(t + d) for t, d in zip(onset, length)]) - beat
    return TokenClock(onset, length, beat, np.asarray(beat_len, dtype=np.float64), rest_after, newline, float(end))


def piece_end(frames: Sequence[Frame], preset: Preset) -> float:
    """When the Score of ``frames`` would end (its timing only: cheap)."""
    return token_clock(frames, preset, TempoMap.constant(preset.music.tempo)).end


def shortest_prefix(frames: Sequence[Frame], preset: Preset, seconds: float) -> int:
    """The fewest frames whose Score lasts at least ``seconds`` (all of them if none do)."""
    lo, hi = 1, len(frames)
    while lo < hi:
        mid = (lo + hi) // 2
        if piece_end(frames[:mid], preset) >= seconds:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _nearest(values: np.ndarray, pitches: np.ndarray) -> np.ndarray:
    """The pitch of ``pitches`` (ascending) nearest to each value; monotonic in the value."""
    idx = np.clip(np.searchsorted(pitches, values), 1, len(pitches) - 1)
    lower, upper = pitches[idx - 1], pitches[idx]
    return np.where(values - lower <= upper - values, lower, upper)


def _pitch_grid(preset: Preset, lo: float, hi: float, chromatic: bool = False) -> np.ndarray:
    low, high = int(math.floor(min(lo, hi))), int(math.ceil(max(lo, hi)))
    scale_name = "chromatic" if chromatic else preset.music.scale
    return scale_pitches(preset.music.key, scale_name, max(low, 0), min(high, 127))


def _pitch_values(param: Scaling | float) -> tuple[float, float]:
    return param.range if isinstance(param, Scaling) else (float(param), float(param))


def _velocity(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(finite(values)), 1, 127).astype(int)


def _note(i: int, start: float, duration: float, pitch: int, velocity: int, voice: Voice, name: str, tempo: TempoMap) -> Note:
    start, duration = float(start), float(duration)
    beat = tempo.beats(start)
    return Note(
        time=start,
        duration=duration,
        beat=beat,
        beats=tempo.beats(start + duration) - beat,
        pitch=int(pitch),
        velocity=int(velocity),
        voice=name,
        channel=voice.channel - 1,
        token=int(i),
    )


def melody_notes(frames: Sequence[Frame], v: Melody, preset: Preset, clock: TokenClock, tempo: TempoMap) -> list[Note]:
    if not frames:
        return []
    pitches = _pitch_grid(preset, *_pitch_values(v.pitch), chromatic=v.chromatic)
    pitch = _nearest(finite(_param(v.pitch, frames)), pitches)
    velocity = _velocity(_param(v.velocity, frames))
    length = finite(_param(v.length, frames))
    sounding = ~clock.newline
    if not v.whitespace:
        sounding &= np.array([is_word(f.text) for f in frames], dtype=bool)
    if v.gate is not None:
        signal, above = v.gate
        x = finite(scalar_signal(frames, signal))
        threshold = running_percentile(x, float(above.rstrip("%")), 256) if isinstance(above, str) else above
        sounding &= x >= threshold
    return [
        _note(i, clock.onset[i], length[i] * clock.length[i], pitch[i], velocity[i], v, "melody", tempo)
        for i in np.flatnonzero(sounding)
    ]


def alternatives(frame: Frame, count: int, min_probability: float) -> list[float]:
    """Probabilities of the alternatives a token passed over, most likely first."""
    out = []
    for j, (_, p) in enumerate(frame.top):
        if j == frame.rank - 1 or not (math.isfinite(p) and p > 0.0) or p < min_probability:
            continue
        out.append(float(p))
        if len(out) == count:
            break
    return out


def ghost_notes(frames: Sequence[Frame], v: Ghosts, preset: Preset, clock: TokenClock, tempo: TempoMap) -> list[Note]:
    owners: list[tuple[int, int]] = []
    probs: list[float] = []
    for i, frame in enumerate(frames):
        if clock.newline[i]:
            continue
        for k, p in enumerate(alternatives(frame, v.count, v.min_probability)):
            owners.append((i, k))
            probs.append(p)
    if not probs:
        return []
    p = np.array(probs)
    signals = {"alt_probability": p, "alt_surprisal": -np.log(p)}

    def param(value: Scaling | float) -> np.ndarray:
        if isinstance(value, Scaling):
            return scale(signals[value.signal], value.transform, value.limits, value.range, value.window * max(v.count, 1))
        return np.full(p.size, float(value))

    pitch = _nearest(param(v.pitch), _pitch_grid(preset, *_pitch_values(v.pitch)))
    velocity = _velocity(param(v.velocity))
    notes = []
    for j, (i, k) in enumerate(owners):
        start = clock.onset[i] + (k + 1) * v.strum * clock.length[i]
        notes.append(_note(i, start, v.length * clock.length[i], pitch[j], velocity[j], v, "ghosts", tempo))
    return notes


def _group_param(value: Scaling | float, frames: Sequence[Frame], groups: list[np.ndarray], every: int) -> np.ndarray:
    """A parameter per group of tokens, from the mean of its signal over each group."""
    if not isinstance(value, Scaling):
        return np.full(len(groups), float(value))
    x = finite(scalar_signal(frames, value.signal))
    means = np.array([x[g].mean() for g in groups])
    return scale(means, value.transform, value.limits, value.range, chord_window(value, every))


def chord_window(value: Scaling, every: int) -> int:
    """How many chords a harmony mapping's percentiles look back over.

    At least 32: percentiles of fewer values wander from chord to chord."""
    return max(32, value.window // every)


def chord_groups(n: int, every: int) -> list[np.ndarray]:
    """Token indices of each chord: consecutive runs of ``every`` tokens."""
    return [np.arange(s, min(s + every, n)) for s in range(0, n, every)]


def harmony_notes(frames: Sequence[Frame], v: Harmony, preset: Preset, clock: TokenClock, tempo: TempoMap) -> list[Note]:
    groups = chord_groups(len(frames), v.every)
    if not groups:
        return []
    full_scale = _pitch_grid(preset, 0, 127)
    sizes = np.clip(np.rint(_group_param(v.notes, frames, groups, v.every)), 1, 12).astype(int)
    roots = _nearest(_group_param(v.root, frames, groups, v.every), _pitch_grid(preset, *_pitch_values(v.root)))
    velocity = _velocity(_group_param(v.velocity, frames, groups, v.every))
    notes = []
    for g, tokens in enumerate(groups):
        first, last = tokens[0], tokens[-1]
        start = clock.onset[first]
        span = clock.onset[last] + clock.length[last] + clock.rest_after[last] - start
        base = int(np.searchsorted(full_scale, roots[g]))
        for k in range(sizes[g]):
            idx = base + k * v.stack
            if idx >= len(full_scale):
                break
            notes.append(_note(int(first), start, v.length * span, full_scale[idx], velocity[g], v, "harmony", tempo))
    return notes


def phrases(clock: TokenClock) -> list[tuple[int, float, float]]:
    """(first token, start, end) of each phrase: the stretches between line breaks."""
    out, first = [], None
    for i in range(len(clock.onset)):
        if clock.newline[i]:
            if first is not None:
                out.append((first, clock.onset[first], clock.onset[i]))
            first = None
        elif first is None:
            first = i
    if first is not None:
        last = len(clock.onset) - 1
        out.append((first, clock.onset[first], clock.onset[last] + clock.length[last]))
    return [p for p in out if p[2] > p[1]]


def _changes(values: np.ndarray, clock: TokenClock, controller: int, v: Voice, name: str, tempo: TempoMap) -> list[Control]:
    """One control change per token where the value differs from the one before."""
    out, previous = [], None
    for i, value in enumerate(values):
        if value != previous:
            t = float(clock.onset[i])
            out.append(Control(t, tempo.beats(t), controller, int(value), name, v.channel - 1, i))
            previous = value
    return out


def stop_groups(n_layers: int, stops: int) -> list[np.ndarray]:
    """Layer indices of each stop: contiguous groups, low layers first."""
    return [g for g in np.array_split(np.arange(n_layers), min(stops, n_layers)) if g.size]


def layer_stop_values(frames: Sequence[Frame], v: Layers) -> np.ndarray:
    """(tokens, stops) control values: each layer scaled on its own, averaged within its stop."""
    scaled = v.level.apply(layer_signal(frames, v.level.signal))
    groups = stop_groups(scaled.shape[1], v.stops)
    return np.clip(np.rint(np.stack([scaled[:, g].mean(axis=1) for g in groups], axis=1)), 0, 127).astype(int)


def layer_events(frames: Sequence[Frame], v: Layers, clock: TokenClock, tempo: TempoMap) -> tuple[list[Note], list[Control]]:
    if not frames:
        return [], []
    values = layer_stop_values(frames, v)
    if v.controller + values.shape[1] - 1 > 119:
        raise SonifyError(
            f"voices.layers: {values.shape[1]} stops from controller {v.controller} would pass CC 119; lower controller or stops"
        )
    controls = [c for s in range(values.shape[1]) for c in _changes(values[:, s], clock, v.controller + s, v, "layers", tempo)]
    notes = [_note(i, s, e - s, v.pitch, v.velocity, v, "layers", tempo) for i, s, e in phrases(clock)]
    return notes, controls


def drone_events(
    frames: Sequence[Frame], v: Drone, preset: Preset, clock: TokenClock, tempo: TempoMap
) -> tuple[list[Note], list[Control]]:
    if not frames:
        return [], []
    tonic = (v.octave + 1) * 12 + key_pitch_class(preset.music.key)
    pitches = [tonic, tonic + 7] if v.fifth else [tonic]
    notes = [_note(0, 0.0, clock.end, p, v.velocity, v, "drone", tempo) for p in pitches if p <= 127]
    level = np.clip(np.rint(finite(_param(v.level, frames))), 0, 127).astype(int)
    return notes, _changes(level, clock, v.controller, v, "drone", tempo)


def voice_info(name: str, v: Voice, controllers: tuple[int, ...] = ()) -> VoiceInfo:
    return VoiceInfo(name, name, v.channel - 1, v.program, v.instrument, v.gain, v.pan, v.reverb, v.delay, controllers)


def make_score(frames: Sequence[Frame], preset: Preset, clock: TokenClock | None = None) -> Score:
    """Turn frames into a Score with ``preset``; the same inputs always give the same Score.

    ``clock`` gives the tokens' times from outside (a spoken reading); by default the
    preset's timing sets them."""
    frames = list(frames)
    tempo = TempoMap.constant(preset.music.tempo)
    if clock is None:
        clock = token_clock(frames, preset, tempo)
    elif len(clock.onset) != len(frames):
        raise ValueError(f"the clock times {len(clock.onset)} tokens, but there are {len(frames)} frames")
    notes: list[Note] = []
    controls: list[Control] = []
    infos: list[VoiceInfo] = []
    vs = preset.voices
    if vs.melody.enabled:
        notes += melody_notes(frames, vs.melody, preset, clock, tempo)
        infos.append(voice_info("melody", vs.melody))
    if vs.ghosts.enabled:
        notes += ghost_notes(frames, vs.ghosts, preset, clock, tempo)
        infos.append(voice_info("ghosts", vs.ghosts))
    if vs.harmony.enabled:
        notes += harmony_notes(frames, vs.harmony, preset, clock, tempo)
        infos.append(voice_info("harmony", vs.harmony))
    if vs.layers.enabled:
        layer_notes, layer_controls = layer_events(frames, vs.layers, clock, tempo)
        notes, controls = notes + layer_notes, controls + layer_controls
        n_stops = len(stop_groups(max(len(frames[0].layers.norm), 1), vs.layers.stops)) if frames else vs.layers.stops
        infos.append(voice_info("layers", vs.layers, tuple(range(vs.layers.controller, vs.layers.controller + n_stops))))
    if vs.drone.enabled:
        drone_notes, drone_controls = drone_events(frames, vs.drone, preset, clock, tempo)
        notes, controls = notes + drone_notes, controls + drone_controls
        infos.append(voice_info("drone", vs.drone, (vs.drone.controller,)))
    surprisal, entropy = finite(scalar_signal(frames, "surprisal")), finite(scalar_signal(frames, "entropy"))
    cues = tuple(
        Cue(float(clock.onset[i]), float(clock.length[i]), float(clock.beat[i]), i, f.text, float(surprisal[i]), float(entropy[i]))
        for i, f in enumerate(frames)
    )
    rests = [
        Rest(float(clock.onset[i]), float(clock.length[i] + clock.rest_after[i]), float(clock.beat[i]), "line break", i)
        for i in np.flatnonzero(clock.newline)
    ]
    last_end = float(clock.onset[-1] + clock.length[-1] + clock.rest_after[-1]) if frames else 0.0
    if clock.end > last_end:
        rests.append(Rest(last_end, clock.end - last_end, tempo.beats(last_end), "end", len(frames)))
    return Score(
        notes=sort_notes(notes),
        controls=sort_controls(controls),
        cues=cues,
        rests=tuple(rests),
        tempo=tempo,
        time_signature=preset.music.time_signature,
        voices=tuple(infos),
        end=clock.end,
        key=preset.music.key,
        scale=preset.music.scale,
        preset=preset.name,
    )


__all__ = ["LAYER_SIGNALS", "TokenClock", "make_score", "token_clock"]
