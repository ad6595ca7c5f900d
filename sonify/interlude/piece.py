"""Podcast interludes: a finished piece of an exact length, with fades, at podcast loudness,
and, when asked, the text spoken over the music, which ducks under the voice.

With a voice, the music follows the reading: each token sounds when its word is spoken.
The piece ends musically: after the last token the melody and harmony resolve to the
tonic, and the tail fades out to exactly the requested length.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import resample_poly

from ..errors import SonifyError
from ..model.frame import Frame
from ..music.calibration import Calibration
from ..music.mapping import longest_prefix_within, make_score
from ..music.preset import Preset
from ..music.scales import key_pitch_class, scale_pitches
from ..music.score import Note, Score, TempoMap, sort_notes
from ..music.units import Unit
from ..synth.engine import SynthEngine
from ..synth.master import integrated_loudness, master
from .speech import Speech, SpokenWord, voiced_frames

SAMPLE_RATE = 48000
VOICE_ENTRY = 0.5  # seconds after the fade-in before the voice begins
RESOLVE_SECONDS = 2.5
VOICE_OVER_MUSIC_DB = 8.0  # the voice sits this far above the (unducked) music


@dataclass(frozen=True)
class Interlude:
    audio: np.ndarray  # (samples, 2) float32, exactly the requested length
    sample_rate: int
    score: Score
    frames: tuple[Frame, ...]
    words: tuple[SpokenWord, ...]  # spoken words on the piece's timeline (empty without a voice)
    duck_gain: np.ndarray  # the music's gain over time (1 = not ducked), per sample
    music: np.ndarray  # the music before ducking, at the level it entered the mix (before mastering)
    voice_start: float


def token_chars(frames: Sequence[Frame]) -> list[tuple[int, int]]:
    """Each token's span of characters in the concatenated text."""
    spans, at = [], 0
    for f in frames:
        spans.append((at, at + len(f.text)))
        at += len(f.text)
    return spans


class SpokenClock:
    """Places the text's units where a reading speaks them: a word sounds from its spoken
    word's start to its end (the mapping's Clock, in beats of ``tempo``); runs of art, line
    ends and stanza breaks fall in the speaker's pauses and take no time of their own."""

    def __init__(self, words: Sequence[SpokenWord], start: float, tempo: TempoMap):
        self.words = list(words)
        self.starts = [w.char_start for w in self.words]
        self.offset = start
        self.tempo = tempo
        self.position = tempo.beats(start)

    def _at(self, seconds: float) -> float:
        return self.tempo.beats(seconds + self.offset)

    def word(self, unit: Unit, linger: float) -> tuple[float, float]:
        k = bisect.bisect_right(self.starts, unit.char) - 1
        if k >= 0 and unit.char < self.words[k].char_end:
            start, end = max(self._at(self.words[k].start), self.position), self._at(self.words[k].end)
            self.position = max(end, start)
            return start, self.position - start
        return self.position, 0.0

    def art(self, unit: Unit) -> tuple[float, float]:
        return self.position, 0.0

    def line_end(self, words: int) -> tuple[float, float]:
        return self.position, 0.0

    def stanza(self, sounding_until: float = 0.0) -> tuple[float, float]:
        return self.position, 0.0

    def end(self) -> tuple[float, float]:
        return self.position, 0.0


def resolve(score: Score, preset: Preset, at: float, length: float) -> Score:
    """End on the tonic: the melody's last note steps to the nearest tonic, the harmony
    plays the tonic triad, both held for ``length`` seconds from ``at``."""
    tempo = score.tempo
    tonic = key_pitch_class(preset.music.key)
    added: list[Note] = []
    token = len(score.cues)

    def note(pitch: int, velocity: int, voice: str, channel: int) -> Note:
        beat = tempo.beats(at)
        return Note(at, length, beat, tempo.beats(at + length) - beat, pitch, velocity, voice, channel, token)

    melody = score.notes_of("melody")
    if melody and preset.voices.melody.enabled:
        last = melody[-1].pitch
        target = min((p for p in range(last - 12, last + 13) if p % 12 == tonic), key=lambda p: abs(p - last))
        added.append(note(target, max(40, melody[-1].velocity - 10), "melody", melody[-1].channel))
    harmony = score.notes_of("harmony")
    if harmony and preset.voices.harmony.enabled:
        low = min(n.pitch for n in harmony[-6:])
        root = max(p for p in range(low - 12, low + 1) if p % 12 == tonic)
        triad = scale_pitches(preset.music.key, preset.music.scale, root, root + 12)
        for pitch in (root, *[p for p in triad if (p - root) in (3, 4, 7)][:2]):
            added.append(note(int(pitch), harmony[-1].velocity, "harmony", harmony[-1].channel))
    if not added:
        return score
    end = max(score.end, at + length)
    return replace(score, notes=sort_notes(list(score.notes) + added), end=end)


def fit_frames(frames: Sequence[Frame], preset: Preset, seconds: float, calibration: Calibration | None = None) -> list[Frame]:
    """The longest prefix of ``frames`` whose music (preset timing) ends by ``seconds``."""
    return list(frames[: max(longest_prefix_within(frames, preset, seconds, calibration), 1)])


def duck_curve(voice: np.ndarray, sample_rate: int, depth_db: float, attack: float = 0.04, release: float = 0.35) -> np.ndarray:
    """The music's gain (linear) while ``voice`` speaks: down ``depth_db`` under the voice,
    back up in the gaps; it starts to fall ``attack`` s before the voice (a look-ahead, the
    voice being known in advance) and rises over ``release`` s after it."""
    voiced, hop = voiced_frames(voice, sample_rate)
    # Bridge the short gaps between words; a pause longer than the release lets it swell.
    bridge = max(1, int(0.15 / 0.01))
    active = maximum_filter1d(voiced.astype(np.uint8), bridge).astype(float)
    per_sample = np.repeat(active, hop)
    per_sample = np.concatenate([per_sample, np.zeros(voice.size - per_sample.size)])
    # Ramps: a moving average over the attack (centred early) and over the release after.
    up = max(1, int(attack * sample_rate))
    down = max(1, int(release * sample_rate))
    ahead = np.concatenate([per_sample[up:], np.zeros(up)])
    spread = np.maximum(per_sample, ahead)
    kernel = np.ones(down) / down
    smooth = np.convolve(spread, kernel)[: spread.size]
    amount = np.clip(np.maximum(smooth, _ramp_into(spread, up)), 0.0, 1.0)
    return (10.0 ** (-depth_db * amount / 20.0)).astype(np.float32)


def _ramp_into(active: np.ndarray, length: int) -> np.ndarray:
    """A linear ramp from 0 to 1 over ``length`` samples ending where ``active`` begins."""
    kernel = np.ones(length) / length
    return np.convolve(active, kernel)[length - 1 : length - 1 + active.size]


def _fade(n: int, sample_rate: int, fade_in: float, fade_out: float) -> np.ndarray:
    gain = np.ones(n, dtype=np.float32)
    a = min(n, int(round(fade_in * sample_rate)))
    b = min(n, int(round(fade_out * sample_rate)))
    if a:
        gain[:a] = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, a, dtype=np.float32))
    if b:
        gain[n - b :] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, b, dtype=np.float32))
    return gain


def _loudness_gain(audio: np.ndarray, rate: int, target: float) -> float:
    measured = integrated_loudness(audio, rate)
    return 1.0 if not math.isfinite(measured) else 10.0 ** ((target - measured) / 20.0)


@dataclass(frozen=True)
class InterludeSettings:
    """The shape of an interlude: its exact length, its loudness (LUFS) and true-peak
    ceiling (dBTP), the fades, and how far the music ducks under a voice (dB)."""

    duration: float
    loudness: float = -16.0
    ceiling: float = -1.0
    fade_in: float = 1.0
    fade_out: float = 3.0
    duck_db: float = 9.0

    def __post_init__(self) -> None:
        duration, fade_in, fade_out = self.duration, self.fade_in, self.fade_out
        if not duration > 0 or not math.isfinite(duration):
            raise SonifyError(f"--duration has to be a positive number of seconds, but is {duration:g}")
        if fade_in < 0 or fade_out < 0 or fade_in + fade_out >= duration:
            raise SonifyError(f"the fades ({fade_in:g} s in, {fade_out:g} s out) must be shorter than the piece ({duration:g} s)")


def make_interlude(
    frames: Sequence[Frame],
    preset: Preset,
    settings: InterludeSettings,
    speech: Speech | None = None,
    calibration: Calibration | None = None,
) -> Interlude:
    """An interlude of exactly ``settings.duration`` seconds at 48 kHz from ``frames`` (and
    a spoken reading of their text, if ``speech`` is given)."""
    duration, fade_in, fade_out = settings.duration, settings.fade_in, settings.fade_out
    total = int(round(duration * SAMPLE_RATE))
    music_end = duration - fade_out  # the last phrase resolves by here; the tail fades after
    if speech is not None:
        start = fade_in + VOICE_ENTRY
        if reading_length(speech) > reading_room(settings):
            raise SonifyError(
                f"the reading takes {reading_length(speech):.2f} s, too long for a {duration:g} s interlude with these fades "
                f"(room for {reading_room(settings):.2f} s); give a longer --duration or a shorter text"
            )
        clock = SpokenClock(speech.words, start, TempoMap.constant(preset.music.tempo))
        score = make_score(frames, preset, calibration, clock=clock)
        words = tuple(SpokenWord(w.text, w.char_start, w.char_end, w.start + start, w.end + start) for w in speech.words)
        last = score.end
    else:
        start = 0.0
        frames = fit_frames(frames, preset, music_end - 1.0, calibration)
        score = make_score(frames, preset, calibration)
        words = ()
        last = max((u.time + u.duration for u in score.units), default=0.0)
    resolve_at = min(last, music_end - 0.5)
    score = resolve(score, preset, resolve_at, max(0.5, min(RESOLVE_SECONDS, music_end - resolve_at)))
    score = replace(score, end=duration)
    engine = SynthEngine.for_score(score, preset.synth, SAMPLE_RATE)
    music = np.concatenate(list(engine.blocks(total, 131072))) if total else np.zeros((0, 2), dtype=np.float32)
    music *= _fade(total, SAMPLE_RATE, fade_in, fade_out)[:, None]
    duck = np.ones(total, dtype=np.float32)
    mix = music
    if speech is not None:
        voice = resample_poly(speech.audio.astype(np.float64), SAMPLE_RATE, speech.sample_rate).astype(np.float32)
        placed = np.zeros(total, dtype=np.float32)
        at = int(round(start * SAMPLE_RATE))
        placed[at : at + voice.size] = voice[: max(0, total - at)]
        # Levels before the mix: the voice a fixed step above the music, then both together
        # to the target loudness.
        music_gain = _loudness_gain(music, SAMPLE_RATE, -20.0 - VOICE_OVER_MUSIC_DB)
        voice_gain = _loudness_gain(placed[:, None].repeat(2, axis=1), SAMPLE_RATE, -20.0)
        music = music * np.float32(music_gain)
        duck = duck_curve(placed, SAMPLE_RATE, settings.duck_db)
        mix = music * duck[:, None] + (placed * np.float32(voice_gain))[:, None]
    finished = master(mix, SAMPLE_RATE, settings.loudness, settings.ceiling)
    return Interlude(finished, SAMPLE_RATE, score, tuple(frames), words, duck, music, start)


def reading_room(settings: InterludeSettings) -> float:
    """The seconds a reading may be heard: it begins ``VOICE_ENTRY`` after the fade-in and ends
    half a second before the music resolves, ``fade_out`` before the end."""
    return settings.duration - settings.fade_out - 0.5 - settings.fade_in - VOICE_ENTRY


def reading_length(speech: Speech) -> float:
    """How long a reading is heard: until its last word ends (the silence a synthesizer leaves
    after it is not heard, and the music may fade over it)."""
    return speech.words[-1].end if speech.words else speech.duration


def cut_to_fit(speech: Speech, seconds: float) -> int:
    """How many characters of the text can be spoken within ``seconds`` (whole words)."""
    fitting = [w for w in speech.words if w.end <= seconds]
    if not fitting:
        return 0
    text = speech.text
    end = fitting[-1].char_end
    while end < len(text) and not text[end].isspace():
        end += 1  # keep the word's punctuation
    return end


def fit_reading(speech: Speech, speak: Callable[[str], Speech], seconds: float) -> Speech | None:
    """The reading (``speak(text)``) of the longest start of ``speech.text``, in whole words,
    heard within ``seconds``; None when not even the first word fits. A shorter text is read
    anew and can come out longer than the same words were within the whole (its last word now
    ends a sentence), so it is measured again, and cut again until it fits."""
    while reading_length(speech) > seconds:
        # the last word does not fit: it goes, even where no space parts it from the one before
        keep = min(cut_to_fit(speech, seconds), speech.words[-1].char_start if speech.words else 0)
        if keep == 0 or not speech.text[:keep].strip():
            return None
        speech = speak(speech.text[:keep])
    return speech


def frames_within(frames: Sequence[Frame], chars: int) -> list[Frame]:
    """The frames whose text lies within the first ``chars`` characters."""
    return [f for f, (_, b) in zip(frames, token_chars(frames)) if b <= chars]


def chapters_json(words: Sequence[SpokenWord], text: str, title: str) -> str:
    """Podcasting 2.0 JSON chapters: one per line of the spoken text."""
    import json

    chapters, line_start = [], 0
    for line in text.splitlines(keepends=True):
        inside = [w for w in words if line_start <= w.char_start < line_start + len(line)]
        if inside and line.strip():
            chapters.append({"startTime": round(inside[0].start, 3), "title": line.strip()})
        line_start += len(line)
    return json.dumps({"version": "1.2.0", "title": title, "chapters": chapters}, ensure_ascii=False, indent=1) + "\n"


def words_json(words: Sequence[SpokenWord]) -> str:
    import json

    data = [
        {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3), "chars": [w.char_start, w.char_end]} for w in words
    ]
    return json.dumps({"words": data}, ensure_ascii=False, indent=1) + "\n"
