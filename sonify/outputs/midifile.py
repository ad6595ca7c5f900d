"""The Score as a Standard MIDI File (type 1) that a DAW opens as it is.

Track 1 is the conductor (name, tempo map, time signature, and a marker at each stanza
break and section); then one named track per voice with its program change, notes and
control changes. The words travel as lyric events on the melody's track (or a track of
their own when the melody is off), in UTF-8, so a DAW shows the words where they sound.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import mido
import numpy as np

from ..music.score import Score
from .files import atomic_write

TICKS_PER_BEAT = 480


def _ticks(beat: float) -> int:
    return max(0, round(beat * TICKS_PER_BEAT))


class _Track:
    """A track's events held as columns (tick, order within the tick, what message), made
    into mido messages only as the track is iterated: sorted by tick then order (ties keep
    the order they were added in), with delta times, a name first and end-of-track last.
    An hour's piece has some 100,000 events; as messages they would all be alive at once."""

    PROGRAM, NOTE_ON, NOTE_OFF, CONTROL, LYRIC, META = range(6)

    def __init__(self, name: str, end_tick: int, channel: int = 0, texts: Sequence[str] | None = None):
        self.name, self.end_tick, self.channel = name, end_tick, channel
        self.texts = texts  # the lyrics, by unit
        self.ticks, self.orders, self.kinds = array("q"), array("b"), array("b")
        self.a, self.b = array("q"), array("q")
        self.metas: list[mido.MetaMessage] = []

    def add(self, tick: int, order: int, kind: int, a: int = 0, b: int = 0) -> int:
        """Add an event; returns its index (to move its tick later with ``ticks[index] = ...``)."""
        self.ticks.append(tick)
        self.orders.append(order)
        self.kinds.append(kind)
        self.a.append(a)
        self.b.append(b)
        return len(self.ticks) - 1

    def add_meta(self, tick: int, order: int, message: mido.MetaMessage) -> None:
        self.metas.append(message)
        self.add(tick, order, self.META, len(self.metas) - 1)

    def _message(self, i: int, time: int) -> mido.Message | mido.MetaMessage:
        kind, a, b, channel = self.kinds[i], self.a[i], self.b[i], self.channel
        if kind == self.NOTE_ON:
            return mido.Message("note_on", channel=channel, note=a, velocity=b, time=time)
        if kind == self.NOTE_OFF:
            return mido.Message("note_off", channel=channel, note=a, velocity=0, time=time)
        if kind == self.CONTROL:
            return mido.Message("control_change", channel=channel, control=a, value=b, time=time)
        if kind == self.LYRIC:
            return mido.MetaMessage("lyrics", text=self.texts[a], time=time)  # type: ignore[index]
        if kind == self.PROGRAM:
            return mido.Message("program_change", channel=channel, program=a, time=time)
        return self.metas[a].copy(time=time)

    def __iter__(self) -> Iterator[mido.Message | mido.MetaMessage]:
        yield mido.MetaMessage("track_name", name=self.name, time=0)
        ticks = np.frombuffer(self.ticks, dtype=np.int64)
        now = 0
        for i in np.lexsort((np.frombuffer(self.orders, dtype=np.int8), ticks)) if len(ticks) else ():
            tick = int(ticks[i])
            yield self._message(int(i), tick - now)
            now = tick
        yield mido.MetaMessage("end_of_track", time=max(self.end_tick - now, 0))


class _Lyrics(Sequence[str]):
    """Each unit of text with what follows it: a space, or a newline at a line's end (as
    karaoke files write it), so the lyrics read as the text's lines."""

    def __init__(self, score: Score):
        self.units = score.units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, k):  # type: ignore[override]
        unit = self.units[k]
        following = "" if k + 1 == len(self.units) else "\n" if self.units[k + 1].line != unit.line else " "
        return unit.text + following


def _tracks(score: Score, title: str) -> list[_Track]:
    """The Score's tracks (the conductor, then one per voice, then the words where no melody holds them)."""
    end_tick = _ticks(score.end_beats)
    conductor = _Track(title, end_tick)
    numerator, denominator = score.time_signature
    conductor.add_meta(0, 0, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator))
    for k, change in enumerate(score.tempo.changes):
        conductor.add_meta(_ticks(change.beat), 1 + k, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(change.bpm)))
    conductor.add_meta(0, 0, mido.MetaMessage("text", text=f"{score.preset} preset, {score.key} {score.scale}"))
    for mark in score.marks:
        label = f"stanza {mark.index}" if mark.kind == "stanza" else f"section {mark.index}: {mark.label} ({mark.key})"
        conductor.add_meta(_ticks(mark.beat), 2, mido.MetaMessage("marker", text=label))
    tracks = [conductor]

    texts = _Lyrics(score)
    voices = {v.name for v in score.voices}
    for voice in score.voices:
        # Order within a tick: program first, then note-offs, controls, lyrics, note-ons.
        track = _Track(voice.name, end_tick, voice.channel, texts)
        track.add(0, 0, _Track.PROGRAM, voice.program)
        if voice.name == "melody":
            for k, unit in enumerate(score.units):
                track.add(_ticks(unit.beat), 3, _Track.LYRIC, k)
        held: dict[int, tuple[int, int]] = {}  # pitch -> (end tick, index of its note-off event)
        for note in score.notes:
            if note.voice != voice.name:
                continue
            start = _ticks(note.beat)
            stop = max(start + 1, _ticks(note.beat + note.beats))
            if note.pitch in held and held[note.pitch][0] > start:
                # Struck again while still held: end the earlier note where this one begins.
                track.ticks[held[note.pitch][1]] = start
            track.add(start, 4, _Track.NOTE_ON, note.pitch, note.velocity)
            held[note.pitch] = (stop, track.add(stop, 1, _Track.NOTE_OFF, note.pitch))
        for control in score.controls:
            if control.voice == voice.name:
                track.add(_ticks(control.beat), 2, _Track.CONTROL, control.controller, control.value)
        tracks.append(track)
    if "melody" not in voices and len(score.units):
        words = _Track("words", end_tick, texts=texts)
        for k, unit in enumerate(score.units):
            words.add(_ticks(unit.beat), 0, _Track.LYRIC, k)
        tracks.append(words)
    return tracks


def score_to_midi(score: Score, title: str = "sonify") -> mido.MidiFile:
    """The Score as a type-1 MidiFile (UTF-8 text)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, charset="utf-8")
    midi.tracks.extend(mido.MidiTrack(track) for track in _tracks(score, title))
    return midi


def save_midi(score: Score, f: IO[bytes], title: str = "sonify") -> None:
    """Write ``score_to_midi``'s file into ``f``, each track's messages made as they are
    written (the file's bytes are those of ``score_to_midi(score, title).save(file=f)``)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, charset="utf-8")
    midi.tracks = _tracks(score, title)  # mido's writer only iterates a track
    midi.save(file=f)


def write_midi(path: str | os.PathLike, score: Score, title: str = "sonify") -> Path:
    """Write the Score as a MIDI file, atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        save_midi(score, f, title)
    return path
