"""The Score of a performance as it grows, token by token.

The mapping is causal (limits look back, the clock adds up), so the events a token makes do
not change when later tokens arrive, with three exceptions that this module waits for: a
chord needs its whole group of tokens, a layers note ends at the next line break, and the
drone ends with the piece. Events are released only once final, so a live performance plays
exactly the Score an offline render of the same frames makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.frame import Frame
from ..music.mapping import make_score
from ..music.preset import Preset
from ..music.score import Control, Cue, Note, Score


@dataclass
class Release:
    """What became final since the last call: notes with known ends, notes still open
    (their note-off comes later), the note-offs of open notes, controls and cues."""

    notes: list[Note] = field(default_factory=list)
    opened: list[Note] = field(default_factory=list)  # start known, end not yet
    closed: list[Note] = field(default_factory=list)  # open notes, now with their end
    controls: list[Control] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)


def _key(note: Note) -> tuple:
    return (note.voice, note.pitch, note.token, note.time)


class GrowingScore:
    """Feed frames; get back the events that are final."""

    def __init__(self, preset: Preset):
        self.preset = preset
        self.frames: list[Frame] = []
        self.released_notes: set[tuple] = set()
        self.open: dict[tuple, Note] = {}  # key without duration -> note as first seen
        self.released_controls = 0
        self.released_cues = 0
        self.score: Score | None = None

    def add(self, frames: list[Frame]) -> Release:
        self.frames.extend(frames)
        return self._release(final=False)

    def finish(self) -> Release:
        """The stream has ended: everything is final now, the open notes close."""
        return self._release(final=True)

    def _settled_tokens(self) -> int:
        """Tokens whose notes and controls can no longer change."""
        n = len(self.frames)
        harmony = self.preset.voices.harmony
        if harmony.enabled:
            n = (n // harmony.every) * harmony.every  # only whole chord groups
        return n

    def _release(self, final: bool) -> Release:
        out = Release()
        if not self.frames:
            return out
        self.score = score = make_score(self.frames, self.preset)
        settled = len(self.frames) if final else self._settled_tokens()
        last_start = score.cues[-1].time + score.cues[-1].duration if score.cues else 0.0
        for note in score.notes:
            key = _key(note)
            if key in self.released_notes:
                continue
            # Notes that run to the end of what is known may still grow (drone, layers' last phrase).
            open_ended = note.voice in ("drone", "layers") and note.time + note.duration >= last_start - 1e-9
            if key in self.open:
                if final or not open_ended:
                    out.closed.append(note)
                    del self.open[key]
                    self.released_notes.add(key)
                continue
            if note.token >= settled:
                continue
            if open_ended and not final:
                self.open[key] = note
                out.opened.append(note)
            else:
                out.notes.append(note)
                self.released_notes.add(key)
        controls = [c for c in score.controls if c.token < settled]
        out.controls = controls[self.released_controls :]
        self.released_controls = len(controls)
        cues = [c for c in score.cues if c.token < settled]
        out.cues = cues[self.released_cues :]
        self.released_cues = len(cues)
        return out
