"""The Score as a Standard MIDI File (type 1) that a DAW opens as it is.

Track 1 is the conductor (name, tempo map, time signature, and a marker at each stanza
break and section); then one named track per voice with its program change, notes and
control changes. The words travel as lyric events on the melody's track (or a track of
their own when the melody is off), in UTF-8, so a DAW shows the words where they sound.
"""

from __future__ import annotations

import os
from pathlib import Path

import mido

from ..music.score import Score
from .files import atomic_write

TICKS_PER_BEAT = 480


def _ticks(beat: float) -> int:
    return max(0, round(beat * TICKS_PER_BEAT))


def _track(name: str, events: list[tuple[int, int, mido.Message | mido.MetaMessage]], end_tick: int) -> mido.MidiTrack:
    """A track from (tick, order, message) events: sorted, with delta times and end-of-track."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
    return track


def lyric_texts(score: Score) -> list[tuple]:
    """Each unit of text with what follows it: a space, or a newline at a line's end (as
    karaoke files write it), so the lyrics read as the text's lines."""
    units = score.units
    out = []
    for k, unit in enumerate(units):
        following = "" if k + 1 == len(units) else "\n" if units[k + 1].line != unit.line else " "
        out.append((unit, unit.text + following))
    return out


def score_to_midi(score: Score, title: str = "sonify") -> mido.MidiFile:
    """The Score as a type-1 MidiFile (UTF-8 text)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, charset="utf-8")
    end_tick = _ticks(score.end_beats)
    conductor: list = []
    numerator, denominator = score.time_signature
    conductor.append((0, 0, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)))
    for k, change in enumerate(score.tempo.changes):
        conductor.append((_ticks(change.beat), 1 + k, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(change.bpm))))
    conductor.append((0, 0, mido.MetaMessage("text", text=f"{score.preset} preset, {score.key} {score.scale}")))
    for mark in score.marks:
        label = f"stanza {mark.index}" if mark.kind == "stanza" else f"section {mark.index}: {mark.label} ({mark.key})"
        conductor.append((_ticks(mark.beat), 2, mido.MetaMessage("marker", text=label)))
    midi.tracks.append(_track(title, conductor, end_tick))

    lyrics = [(_ticks(u.beat), 0, mido.MetaMessage("lyrics", text=text)) for u, text in lyric_texts(score)]
    voices = {v.name for v in score.voices}
    for voice in score.voices:
        # Order within a tick: program first, then note-offs, controls, lyrics, note-ons.
        events: list = [(0, 0, mido.Message("program_change", channel=voice.channel, program=voice.program))]
        if voice.name == "melody":
            events += [(t, 3, m) for t, _, m in lyrics]
        held: dict[int, list[int]] = {}  # pitch -> [end tick, index of its note-off event]
        for note in score.notes_of(voice.name):
            start = _ticks(note.beat)
            stop = max(start + 1, _ticks(note.beat + note.beats))
            if note.pitch in held and held[note.pitch][0] > start:
                # Struck again while still held: end the earlier note where this one begins.
                index = held[note.pitch][1]
                events[index] = (start, 1, events[index][2])
            events.append((start, 4, mido.Message("note_on", channel=voice.channel, note=note.pitch, velocity=note.velocity)))
            events.append((stop, 1, mido.Message("note_off", channel=voice.channel, note=note.pitch, velocity=0)))
            held[note.pitch] = [stop, len(events) - 1]
        for control in score.controls_of(voice.name):
            message = mido.Message("control_change", channel=voice.channel, control=control.controller, value=control.value)
            events.append((_ticks(control.beat), 2, message))
        midi.tracks.append(_track(voice.name, events, end_tick))
    if "melody" not in voices and lyrics:
        midi.tracks.append(_track("words", lyrics, end_tick))
    return midi


def write_midi(path: str | os.PathLike, score: Score, title: str = "sonify") -> Path:
    """Write the Score as a MIDI file, atomically."""
    path = Path(path)
    midi = score_to_midi(score, title)
    with atomic_write(path, "wb") as f:
        midi.save(file=f)
    return path
