"""The mapping: a preset turns a stream of Frames into a Score. Pure; no I/O.

The text is read as the model wrote it, token by token (``units``): its words, its runs of
art, its line ends, stanza breaks and headings. The clock (``timing``) places each in time
at the preset's pace; then the voices hear it in order: the melody the word itself
(``melody``), the ghosts the alternatives it passed over (``ghosts``), the harmony the
model's uncertainty and attention (``harmony``), the layers the work of each layer and the
drone the residual stream (``held``), the texture the runs of art (``texture``). Every
signal is scaled against the model's calibration, so the same telemetry sounds the same
anywhere.

The ``Mapper`` is causal and keeps a bounded state: fed one frame at a time, it gives the
events that became final (a word's once the next token shows where it ends), so a live
performance and an offline render make the same Score, at a constant cost per token.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from ..model.frame import Frame
from .calibration import Calibration, shipped_calibration
from .event_table import EventTable, sorted_table
from .ghosts import GhostPart
from .harmony import HarmonyPart
from .held import DronePart, LayersPart
from .melody import MelodyPart
from .part import Heard, Key, Mapped, Part, home_key
from .preset import Preset, Voice
from .score import CONTROL_ORDER, NOTE_ORDER, Control, Cue, Mark, Note, Placed, Release, Rest, Score, TempoMap, VoiceInfo
from .texture import TexturePart
from .timing import PaceClock
from .units import LineEnd, SectionStart, Segmenter, StanzaBreak, Unit


class Clock(Protocol):
    """Where units and rests fall, in beats (``timing.PaceClock``, or a spoken reading's)."""

    position: float

    def word(self, unit: Unit, linger: float) -> tuple[float, float]: ...

    def art(self, unit: Unit) -> tuple[float, float]: ...

    def line_end(self, words: int) -> tuple[float, float]: ...

    def stanza(self, sounding_until: float = 0.0) -> tuple[float, float]: ...

    def end(self) -> tuple[float, float]: ...


# The kinds of event a Release gathers, by its field.
RELEASED = {
    "notes": Note, "opened": Note, "closed": Note, "controls": Control, "cues": Cue, "units": Placed, "marks": Mark,
    "rests": Rest,
}  # fmt: skip


def voice_info(name: str, v: Voice, controllers: tuple[int, ...] = ()) -> VoiceInfo:
    return VoiceInfo(name, name, v.channel - 1, v.program, v.instrument, v.gain, v.pan, v.reverb, v.delay, controllers)


class Mapper:
    """Frames in, one at a time; the Score's events out, as soon as they are final."""

    def __init__(self, preset: Preset, calibration: Calibration | None = None, clock: Clock | None = None):
        """Frames are placed by ``clock`` (default: the preset's pace, ``PaceClock``)."""
        self.preset = preset
        self.calibration = calibration or shipped_calibration()
        self.tempo = TempoMap.constant(preset.music.tempo)
        self.clock: Clock = clock or PaceClock(preset)
        self.segmenter = Segmenter()
        self.earlier: tuple[VoiceInfo, ...] = ()  # the voices of the presets played before this one
        self.home = home_key(preset.music.key, preset.music.scale)
        self.key = self.home
        self.linger = Mapped(preset.timing.linger, self.calibration)
        self.frames: dict[int, Frame] = {}  # frames whose unit is not complete yet
        self.held: Unit | None = None  # the last word, until it is known whether it ends its line
        self.stanza = self.section = 0
        self.line_words = 0
        self.stanza_open = False
        self.sounding_until = 0.0  # seconds: when the last note released so far ends
        self._last_cue = (0.0, 0.0)
        self.count = 0
        self.release = Release()
        self.parts: list[Part] = []
        self.melody: MelodyPart | None = None

    # ---------------------------------------------------------------- public

    def feed(self, frame: Frame) -> Release:
        """Take the next frame; return what became final."""
        self._note_ends()
        self.release = Release()
        if not self.parts:
            self._make_parts(frame)
        index = self.count
        self.count += 1
        self.frames[index] = frame
        for event in self.segmenter.feed(index, frame.text):
            self._event(event)
        if frame.text and not frame.text.strip():  # whitespace: no unit, no time of its own
            self._cue(index, frame, self._now(), 0.0)
            del self.frames[index]
        return self.release

    def finish(self) -> Release:
        """The stream has ended: everything still open closes."""
        self.release = Release()
        for event in self.segmenter.finish():
            self._event(event)
        self._flush(ends_line=True)
        for index, frame in sorted(self.frames.items()):  # tokens that decoded to nothing at the very end
            self._cue(index, frame, self._now(), 0.0)
        self.frames.clear()
        at = self._now()
        for part in self.parts:
            part.finish(at)
        start, beats = self.clock.end()
        if beats > 0:
            self.release.rests.append(Rest(self._seconds(start), self._seconds(start + beats) - self._seconds(start), start, "end", self.count))
        return self.release

    @property
    def end(self) -> float:
        """The end of the music so far, in seconds."""
        return self._now()

    def set_tempo(self, bpm: float) -> None:
        """From the next unit on, ``bpm`` beats a minute (the words' pace in beats stays, so
        their pace in seconds moves with the tempo); the music so far keeps its time."""
        self.tempo.change(self.clock.position, bpm)

    def hand_over(self, preset: Preset) -> tuple[Release, Mapper]:
        """Switch to ``preset`` at the next bar line: the word held back is placed, this
        preset's held notes end at the bar line, and the returned Mapper plays on from there
        with ``preset`` (the same text, token count, tempo map and Score). Needs the pace clock.
        Returns what became final here and the new Mapper."""
        if not isinstance(self.clock, PaceClock):
            raise TypeError("only a piece placed by its preset's pace can switch presets")
        self._note_ends()
        self.release = Release()
        self._flush(ends_line=False)
        at, position = self._now(), self.clock.position
        bar = self.preset.music.time_signature[0]
        line = math.ceil(position / bar - 1e-9) * bar
        for part in self.parts:
            part.finish(self._seconds(line))
        if line > position:
            self.release.rests.append(Rest(at, self._seconds(line) - at, position, "switch", self.count - 1))
        self.clock.position = line
        after = Mapper(preset, self.calibration)
        after.tempo = self.tempo
        after.tempo.change(line, preset.music.tempo)
        after.clock.start_at(line)  # type: ignore[attr-defined]
        after.segmenter, after.frames, after.count = self.segmenter, self.frames, self.count
        after.stanza, after.section, after.sounding_until, after._last_cue = self.stanza, self.section, self.sounding_until, self._last_cue
        after.earlier = self.voices()
        return self.release, after

    def voices(self) -> tuple[VoiceInfo, ...]:
        """The voices that play (those of the presets switched from first, a voice's latest settings winning)."""
        if self.earlier:
            latest = {v.name: v for v in self._voices()}
            return tuple(latest.pop(v.name, v) for v in self.earlier) + tuple(latest.values())
        return self._voices()

    def _voices(self) -> tuple[VoiceInfo, ...]:
        infos = []
        for part in self.parts:
            controllers = ()
            if isinstance(part, LayersPart):
                controllers = part.controllers
            elif isinstance(part, DronePart):
                controllers = (part.v.controller,)
            infos.append(voice_info(part.name, part.settings, controllers))
        return tuple(infos)

    # --------------------------------------------------------------- private

    def _make_parts(self, first: Frame) -> None:
        vs, cal, out = self.preset.voices, self.calibration, lambda: self.release
        if vs.melody.enabled or vs.ghosts.enabled:
            self.melody = MelodyPart(vs.melody, self.tempo, out, cal, self.key)
            if vs.melody.enabled:
                self.parts.append(self.melody)
        if vs.ghosts.enabled:
            self.parts.append(GhostPart(vs.ghosts, self.tempo, out, cal, self.melody))
        if vs.harmony.enabled:
            self.parts.append(HarmonyPart(vs.harmony, self.tempo, out, cal, self.key))
        if vs.layers.enabled:
            self.parts.append(LayersPart(vs.layers, self.tempo, out, cal, self.key, self.home, len(first.layers.update)))
        if vs.drone.enabled:
            self.parts.append(DronePart(vs.drone, self.tempo, out, cal, self.key))
        if vs.texture.enabled:
            self.parts.append(TexturePart(vs.texture, self.tempo, out, self.key))
        # A muted melody still walks its line: the ghosts shadow it.
        self._listeners = self.parts if self.melody in self.parts else [self.melody, *self.parts] if self.melody else self.parts

    def _note_ends(self) -> None:
        """Remember when the notes of the last release end (a stanza's silence waits for them)."""
        ends = [n.time + n.duration for n in self.release.notes + self.release.closed]
        if ends:
            self.sounding_until = max(self.sounding_until, max(ends))

    def _seconds(self, beat: float) -> float:
        return self.tempo.seconds(beat)

    def _now(self) -> float:
        return self._seconds(self.clock.position)

    def _event(self, event) -> None:
        if isinstance(event, Unit):
            self._flush(ends_line=False)
            if event.is_word:
                self.held = event
            else:
                self._art(event)
        elif isinstance(event, LineEnd):
            self._flush(ends_line=True)
            at = self._now()
            start, beats = self.clock.line_end(self.line_words)
            rest = self._seconds(start + beats) - self._seconds(start)
            for part in self._listeners:
                part.line_end(at, rest)
            if beats > 0:
                self.release.rests.append(Rest(at, rest, start, "line end", self.count - 1))
            self.line_words = 0
        elif isinstance(event, StanzaBreak):
            self._flush(ends_line=True)
            self._stanza_break()
        elif isinstance(event, SectionStart):
            self.section += 1
            offsets = self.preset.form.section_keys
            tonic = (self.home.tonic + offsets[self.section % len(offsets)]) % 12
            self.key = Key(tonic, self.home.scale)
            now = self._now()
            self.release.marks.append(Mark(now, self.clock.position, "section", event.title, self.section, self.key.name))

    def _stanza_break(self) -> None:
        at = self._now()
        for part in self._listeners:
            part.stanza_end(at)
        self._note_ends()
        start, beats = self.clock.stanza(self.tempo.beats(self.sounding_until))
        # The silence begins once the last note has ended (a long note may outlast its word).
        quiet = max(at, self.sounding_until)
        self.release.rests.append(Rest(quiet, self._seconds(start + beats) - quiet, self.tempo.beats(quiet), "stanza", self.count - 1))
        self.stanza += 1
        self.release.marks.append(Mark(quiet, self.tempo.beats(quiet), "stanza", "", self.stanza))
        self.stanza_open = False

    def _open_stanza(self) -> None:
        if not self.stanza_open:
            at = self._now()
            for part in self._listeners:
                part.stanza_start(at, self.key)
            self.stanza_open = True

    def _take_frames(self, unit: Unit) -> dict[int, Frame]:
        return {i: self.frames.pop(i) for i in unit.tokens if i in self.frames}

    def _flush(self, ends_line: bool) -> None:
        if self.held is None:
            return
        unit, self.held = self.held, None
        self._open_stanza()
        frames = self._take_frames(unit)
        linger = self.linger(_probe(list(frames.values()))) if frames else 0.0
        start, beats = self.clock.word(unit, 0.0 if linger is None or not math.isfinite(linger) else linger)
        heard = Heard(self._placed(unit, frames, start, beats, ends_line), list(frames.values()), ends_line)
        self.line_words += 1
        for part in self._listeners:
            part.word(heard)

    def _art(self, unit: Unit) -> None:
        self._open_stanza()
        frames = self._take_frames(unit)
        start, beats = self.clock.art(unit)
        heard = Heard(self._placed(unit, frames, start, beats, False), list(frames.values()))
        for part in self._listeners:
            part.art(heard)

    def _placed(self, unit: Unit, frames: dict[int, Frame], start: float, beats: float, ends_line: bool) -> Placed:
        time, end = self._seconds(start), self._seconds(start + beats)
        placed = Placed(unit.index, unit.kind, unit.text, time, end - time, start, beats, unit.tokens, unit.line,
                        self.stanza, self.section, ends_line)  # fmt: skip
        self.release.units.append(placed)
        # The unit's time is shared by the tokens that wrote characters; a token that decoded
        # to nothing (part of a character) takes none, at the time of the character it began.
        writing = [t for t in unit.tokens if t in frames and frames[t].text]
        share = (end - time) / max(len(writing), 1)
        at = time
        for token in unit.tokens:
            if token in frames:
                length = share if frames[token].text else 0.0
                self._cue(token, frames[token], at, length)
                at += length
        return placed

    def _cue(self, token: int, frame: Frame, at: float, duration: float) -> None:
        # NaN and inf (a broken model) stand in as the last finite value, as in the mapping.
        surprisal = -frame.logprob if math.isfinite(frame.logprob) else self._last_cue[0]
        entropy = frame.entropy if math.isfinite(frame.entropy) else self._last_cue[1]
        self._last_cue = (surprisal, entropy)
        self.release.cues.append(Cue(float(at), float(duration), self.tempo.beats(at), token, frame.text, surprisal, entropy))


def _probe(frames: list[Frame]) -> Heard:
    """A unit's signals before it is placed (the clock needs its surprisal to know how long it lingers)."""
    return Heard(Placed(0, "word", "", 0.0, 0.0, 0.0, 0.0, (), 0, 0, 0), frames)


def collect(releases: Iterable[Release]) -> Release:
    """Everything a sequence of releases gave, the opened notes replaced by their closed
    versions; each kind of event gathered in an ``EventTable`` as it comes, so the events
    of a long piece never all exist as objects at once."""
    total = Release(**{name: EventTable(kind) for name, kind in RELEASED.items()})
    for release in releases:
        total.extend(release)
    return total


def assemble(mapper: Mapper, total: Release) -> Score:
    """The Score of everything ``mapper`` released (``total``: the releases collected), its
    events held by column (``EventTable``), so a long piece's Score stays small."""
    return Score(
        notes=sorted_table(Note, itertools.chain(total.notes, total.closed), NOTE_ORDER),
        controls=sorted_table(Control, total.controls, CONTROL_ORDER),
        cues=sorted_table(Cue, total.cues, ("time", "token")),
        rests=sorted_table(Rest, total.rests, ("time", "token")),
        tempo=mapper.tempo,
        time_signature=mapper.preset.music.time_signature,
        voices=mapper.voices(),
        end=mapper.end,
        key=mapper.preset.music.key,
        scale=mapper.preset.music.scale,
        preset=mapper.preset.name,
        units=EventTable(Placed, total.units),
        marks=EventTable(Mark, total.marks),
    )


def make_score(
    frames: Sequence[Frame], preset: Preset, calibration: Calibration | None = None, clock: Clock | None = None
) -> Score:
    """Turn frames into a Score with ``preset``; the same inputs always give the same Score.

    ``calibration`` is the model's (default: the shipped model's); ``clock`` places the
    units from outside (a spoken reading), by default the preset's pace does."""
    mapper = Mapper(preset, calibration, clock)
    return assemble(mapper, collect(_releases(mapper, frames)))


def _releases(mapper: Mapper, frames: Iterable[Frame]) -> Iterator[Release]:
    """What ``mapper`` releases fed ``frames``, one at a time, then at their end."""
    for frame in frames:
        yield mapper.feed(frame)
    yield mapper.finish()


def piece_end(frames: Sequence[Frame], preset: Preset, calibration: Calibration | None = None) -> float:
    """When the Score of ``frames`` would end."""
    return make_score(frames, preset, calibration).end


def shortest_prefix(frames: Sequence[Frame], preset: Preset, seconds: float, calibration: Calibration | None = None) -> int:
    """The fewest frames whose Score lasts at least ``seconds`` (all of them if none do)."""
    mapper = Mapper(preset, calibration)
    for i, frame in enumerate(frames):
        mapper.feed(frame)
        if mapper.end >= seconds:
            return i + 1
    return len(frames)


def longest_prefix_within(frames: Sequence[Frame], preset: Preset, seconds: float, calibration: Calibration | None = None) -> int:
    """The most frames whose Score (its last rest included) ends by ``seconds``."""
    lo, hi = 0, len(frames)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if make_score(frames[:mid], preset, calibration).end <= seconds:
            lo = mid
        else:
            hi = mid - 1
    return lo


__all__ = ["Clock", "Mapper", "assemble", "collect", "longest_prefix_within", "make_score", "piece_end", "shortest_prefix"]
