"""Musical time from the text: where each word, run of art and rest falls, in beats.

The preset states a pace in words a minute. A word's share of it is ``tempo / pace`` beats
(or, with ``word_length = "letters"``, more for a long word and less for a short one). A
surprising word lingers; line ends rest; runs of art take a little time per character,
capped per line. All of that is borrowed from the pace, and the clock pays it back in two
ways: each word gives up the time the text has so far spent on rests per word (so a text
with many short stanzas moves its words along evenly), and a small share of whatever debt
remains (how far the piece is behind its words' ideal time). So the pace over a whole
text holds. Every word starts on the preset's grid (the rounding error is carried to the
next word, so it does not add up).

A stanza break is a silence of at least ``stanza_rest`` seconds, longer when the reverb and
the echoes need the time to fall 20 dB; the next stanza starts on a whole beat. The silence
is borrowed too, and paid back slowly (a few percent of each word's time), so the words
move evenly rather than rushing after each silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .preset import Preset
from .units import Unit

PAYBACK = 0.06  # share of the remaining debt each word pays back
SETTLING = 8  # words before the rests-per-word estimate is trusted in full
SHORTEST, LONGEST = 0.5, 2.5  # a word's time as a share of its base, before lingering
AVERAGE_LETTERS = 4.5  # of an English word, for word_length = "letters"
RELEASE_ALLOWANCE = 0.1  # seconds for the notes' own release tails within a silence


def silence_seconds(preset: Preset) -> float:
    """How long a stanza break lasts: the preset's rest, or longer when the effects need it.

    When the notes stop, the reverb and the echoes ring on near the mix's level; the silence
    lasts until they have fallen 20 dB (a third of the reverb's −60 dB time; echoes, each
    ``delay_feedback`` times the last, as many repeats as that takes), plus the notes'
    release and 0.4 s of quiet. ``benchmarks/form_report.py`` checks that every stanza
    break then measures 20 dB below the piece's median level for 0.4 s."""
    synth = preset.synth
    echo = 0.0
    if synth.delay_feedback > 0 and any(v.enabled and v.delay > 0 for v in _voices(preset)):
        delay = synth.delay_beats * 60.0 / preset.music.tempo
        echo = delay * math.log(0.1) / math.log(synth.delay_feedback)
    tail = max(synth.reverb_seconds / 3.0, echo)
    return max(preset.timing.stanza_rest, RELEASE_ALLOWANCE + tail + 0.4)


def _voices(preset: Preset):
    return [getattr(preset.voices, name) for name in preset.voices.__dataclass_fields__]


@dataclass
class PaceClock:
    """Places units one after another in beats; see the module's docstring."""

    preset: Preset
    position: float = 0.0  # beats: where the next unit starts
    words: int = 0
    rests: float = 0.0  # beats spent on anything but words (rests, silences, art, lingering)
    carry: float = 0.0  # rounding error of the grid, passed on
    pressure: float = 1.0  # the last word's share of its base time: line rests shrink with it
    line_art: float = 0.0  # art beats spent on the current line
    origin: float = 0.0  # beats: where the first unit starts (a preset switched to mid-piece starts at a bar)

    def __post_init__(self) -> None:
        t = self.preset.timing
        self.step = t.step
        self.base = self.preset.music.tempo / t.words_per_minute
        self.silence = silence_seconds(self.preset) * self.preset.music.tempo / 60.0

    @property
    def debt(self) -> float:
        """Beats the piece is behind the ideal time of the words it has placed."""
        return self.position - self.origin - self.words * self.base

    def _advance(self, raw: float, least_steps: int) -> tuple[float, float]:
        steps = max(least_steps, round((raw + self.carry) / self.step))
        self.carry += raw - steps * self.step
        start, beats = self.position, steps * self.step
        self.position += beats
        return start, beats

    def start_at(self, beat: float) -> None:
        """Place the first unit at ``beat`` (instead of 0)."""
        self.position = self.origin = beat

    def word(self, unit: Unit, linger: float) -> tuple[float, float]:
        """A word: (start, length) in beats. ``linger`` beats are added, and paid back later."""
        weight = 1.0
        if self.preset.timing.word_length == "letters":
            weight = min(max(0.5 + 0.5 * unit.letters / AVERAGE_LETTERS, 0.6), 2.0)
        per_word = self.rests / max(self.words, SETTLING)
        share = weight - (per_word + PAYBACK * (self.debt - 0.0)) / self.base
        share = min(max(share, SHORTEST), LONGEST)
        self.pressure = min(share, 1.0)
        start, beats = self._advance(self.base * share + max(linger, 0.0), 1)
        self.words += 1
        self.rests += max(linger, 0.0)
        return start, beats

    def art(self, unit: Unit) -> tuple[float, float]:
        """A run of art: a little time per character, at most ``art_max_beats`` a line (may be 0)."""
        t = self.preset.timing
        want = min(len(unit.text) * t.art_beats_per_char, max(t.art_max_beats - self.line_art, 0.0))
        steps = math.floor(want / self.step + 1e-9)
        self.line_art += steps * self.step
        start = self.position
        self.position += steps * self.step
        self.rests += steps * self.step
        return start, steps * self.step

    def line_end(self, words: int) -> tuple[float, float]:
        """The rest after a line: ``line_rest`` beats after a line with words (less while the
        words are being hurried to pay back time, on the grid), none after a line of art."""
        self.line_art = 0.0
        start = self.position
        if words:
            steps = round(self.preset.timing.line_rest * self.pressure / self.step)
            self.position += steps * self.step
        self.rests += self.position - start
        return start, self.position - start

    def stanza(self, sounding_until: float = 0.0) -> tuple[float, float]:
        """A stanza break: once the last note has ended (``sounding_until``, beats), the
        silence, to the next whole beat."""
        start = self.position
        self.position = math.ceil(max(self.position, sounding_until) + self.silence - 1e-9)
        self.line_art = 0.0
        self.rests += self.position - start
        return start, self.position - start

    def end(self) -> tuple[float, float]:
        start = self.position
        self.position += self.preset.timing.end_rest
        return start, self.preset.timing.end_rest
