"""The Score: the timed musical events a preset makes of a trace.

Every sink (MIDI file, synthesizer, live port, transcript) plays the same Score, so they
agree on what sounds when. Events are small frozen dataclasses with slots (a piece holds
several per token: an hour's Score should not carry a dict per event); times are given
both in seconds and in beats of the Score's tempo map. ``token`` ties each event to the
index of the frame that caused it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any


@dataclass(frozen=True, slots=True)
class Tempo:
    """From ``beat`` (at ``time`` seconds) on, the tempo is ``bpm`` quarter notes a minute."""

    beat: float
    time: float
    bpm: float


@dataclass(frozen=True, slots=True)
class Note:
    time: float
    duration: float
    beat: float
    beats: float
    pitch: int
    velocity: int
    voice: str
    channel: int
    token: int


@dataclass(frozen=True, slots=True)
class Control:
    """A continuous signal as a MIDI control change (``value`` 0..127)."""

    time: float
    beat: float
    controller: int
    value: int
    voice: str
    channel: int
    token: int


@dataclass(frozen=True, slots=True)
class Cue:
    """When a token's text is shown or heard: from ``time`` for ``duration`` seconds."""

    time: float
    duration: float
    beat: float
    token: int
    text: str
    surprisal: float
    entropy: float


@dataclass(frozen=True, slots=True)
class Placed:
    """A unit of the text (a word, or a run of art) where it sounds: from ``time`` for
    ``duration`` seconds, in ``line``, ``stanza`` and ``section`` of the text; ``tokens``
    are the frames that wrote it."""

    index: int
    kind: str  # "word" or "art"
    text: str
    time: float
    duration: float
    beat: float
    beats: float
    tokens: tuple[int, ...]
    line: int
    stanza: int
    section: int
    ends_line: bool = False


@dataclass(frozen=True, slots=True)
class Mark:
    """A boundary of the form: ``kind`` "stanza" (a blank line) or "section" (after a
    heading, whose text is ``label``; the section plays in ``key``)."""

    time: float
    beat: float
    kind: str
    label: str
    index: int  # the stanza's or section's number
    key: str = ""


@dataclass(frozen=True, slots=True)
class Rest:
    """A silence in the melody, with why: a line end, a stanza break or the end of the text."""

    time: float
    duration: float
    beat: float
    reason: str
    token: int


@dataclass(frozen=True)
class VoiceInfo:
    """What a sink needs to know of a voice: its channel, program, instrument and mix."""

    name: str
    kind: str
    channel: int
    program: int
    instrument: str
    gain: float
    pan: float
    reverb: float
    delay: float
    controllers: tuple[int, ...] = ()


@dataclass
class TempoMap:
    """Piecewise-constant tempo: converts beats to seconds and back. A live performance adds
    changes as it goes (``change``); what was mapped before a change keeps its time."""

    changes: tuple[Tempo, ...]

    def change(self, beat: float, bpm: float) -> None:
        """From ``beat`` on (not before the last change), ``bpm`` beats a minute."""
        last = self.changes[-1]
        if beat < last.beat:
            raise ValueError(f"a tempo change at beat {beat:g} comes before the last one, at {last.beat:g}")
        if bpm == last.bpm:
            return
        if beat == last.beat and len(self.changes) > 1 and self.changes[-2].bpm == bpm:
            self.changes = self.changes[:-1]  # the change undone before any beat passed
        elif beat == last.beat:
            self.changes = self.changes[:-1] + (Tempo(last.beat, last.time, float(bpm)),)
        else:
            self.changes = self.changes + (Tempo(float(beat), self.seconds(beat), float(bpm)),)

    @classmethod
    def constant(cls, bpm: float) -> TempoMap:
        return cls((Tempo(0.0, 0.0, float(bpm)),))

    def _segment_by_beat(self, beat: float) -> Tempo:
        i = bisect.bisect_right([c.beat for c in self.changes], beat) - 1
        return self.changes[max(i, 0)]

    def _segment_by_time(self, time: float) -> Tempo:
        i = bisect.bisect_right([c.time for c in self.changes], time) - 1
        return self.changes[max(i, 0)]

    def seconds(self, beat: float) -> float:
        seg = self._segment_by_beat(beat)
        return seg.time + (beat - seg.beat) * 60.0 / seg.bpm

    def beats(self, time: float) -> float:
        seg = self._segment_by_time(time)
        return seg.beat + (time - seg.time) * seg.bpm / 60.0

    def bpm_at(self, time: float) -> float:
        return self._segment_by_time(time).bpm


@dataclass(frozen=True)
class Score:
    """A piece: time-sorted notes, controls, cues and rests, a tempo map and its voices.

    The events are sequences: tuples, or (from the mapping) ``EventTable``s that hold them
    by column and equal the tuples of the same events.

    ``end`` is when the music ends, in seconds (the last rest included); a synthesizer
    renders its tail after that.
    """

    notes: Sequence[Note]
    controls: Sequence[Control]
    cues: Sequence[Cue]
    rests: Sequence[Rest]
    tempo: TempoMap
    time_signature: tuple[int, int]
    voices: tuple[VoiceInfo, ...]
    end: float
    key: str = "C"
    scale: str = "major"
    preset: str = "default"
    units: Sequence[Placed] = ()
    marks: Sequence[Mark] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def voice(self, name: str) -> VoiceInfo:
        for v in self.voices:
            if v.name == name:
                return v
        raise KeyError(name)

    def notes_of(self, voice: str) -> tuple[Note, ...]:
        return tuple(n for n in self.notes if n.voice == voice)

    def controls_of(self, voice: str) -> tuple[Control, ...]:
        return tuple(c for c in self.controls if c.voice == voice)

    @property
    def end_beats(self) -> float:
        return self.tempo.beats(self.end)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the whole Score."""
        return {
            "preset": self.preset,
            "key": self.key,
            "scale": self.scale,
            "end": self.end,
            "time_signature": list(self.time_signature),
            "tempo": [asdict(t) for t in self.tempo.changes],
            "voices": [asdict(v) for v in self.voices],
            "notes": [asdict(n) for n in self.notes],
            "controls": [asdict(c) for c in self.controls],
            "cues": [asdict(c) for c in self.cues],
            "rests": [asdict(r) for r in self.rests],
            "units": [asdict(u) for u in self.units],
            "marks": [asdict(m) for m in self.marks],
        }

    @property
    def words(self) -> tuple[Placed, ...]:
        """The placed units that are words (not art)."""
        return tuple(u for u in self.units if u.kind == "word")


NOTE_ORDER = ("time", "voice", "pitch", "token")  # notes in a fixed order: ties never reorder
CONTROL_ORDER = ("time", "voice", "controller", "token")


def sort_notes(notes: list[Note]) -> tuple[Note, ...]:
    """Notes in a fixed order: by time, then voice, pitch and token (ties never reorder)."""
    return tuple(sorted(notes, key=attrgetter(*NOTE_ORDER)))


def sort_controls(controls: list[Control]) -> tuple[Control, ...]:
    return tuple(sorted(controls, key=attrgetter(*CONTROL_ORDER)))


@dataclass
class Release:
    """Events of a growing Score that have become final: notes with known ends, notes
    whose start is known but not yet their end (``opened``, duration 0), the full versions
    of earlier opened notes (``closed``), controls, cues, placed units, marks and rests."""

    notes: list[Note] = field(default_factory=list)
    opened: list[Note] = field(default_factory=list)
    closed: list[Note] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    units: list[Placed] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    rests: list[Rest] = field(default_factory=list)

    def extend(self, other: Release) -> None:
        for name in ("notes", "opened", "closed", "controls", "cues", "units", "marks", "rests"):
            getattr(self, name).extend(getattr(other, name))
