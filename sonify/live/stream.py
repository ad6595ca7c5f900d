"""The Score of a performance as it grows, token by token.

The mapping (``sonify.music.mapping.Mapper``) is causal and keeps a bounded state: each
frame costs the same however long the performance has run, and it releases only events
that can no longer change (a word once the next token shows where it ends; a chord, a
line's organ note or a stanza's drone as opened notes whose end comes later). So a live
performance plays exactly the Score an offline render of the same frames makes.
"""

from __future__ import annotations

from ..model.frame import Frame
from ..music.calibration import Calibration
from ..music.mapping import Mapper, assemble
from ..music.preset import Preset
from ..music.score import Release, Score


class GrowingScore:
    """Feed frames; get back the events that are final."""

    def __init__(self, preset: Preset, calibration: Calibration | None = None):
        self.preset = preset
        self.mapper = Mapper(preset, calibration)
        self.frames: list[Frame] = []
        self.released = Release()  # everything so far, for the Score at the end
        self.last_time = 0.0  # when the latest released token sounds
        self._score: Score | None = None

    def add(self, frames: list[Frame]) -> Release:
        out = Release()
        for frame in frames:
            self.frames.append(frame)
            out.extend(self.mapper.feed(frame))
        return self._keep(out)

    def finish(self) -> Release:
        """The stream has ended: everything is final now, the open notes close."""
        return self._keep(self.mapper.finish())

    def _keep(self, release: Release) -> Release:
        self.released.extend(release)
        if release.cues:
            self.last_time = max(self.last_time, max(c.time for c in release.cues))
        self._score = None
        return release

    @property
    def end(self) -> float:
        """Where the music released so far ends, in seconds."""
        return self.mapper.end

    @property
    def score(self) -> Score:
        """The Score of everything released so far (built on request)."""
        if self._score is None:
            self._score = assemble(self.mapper, self.released)
        return self._score
