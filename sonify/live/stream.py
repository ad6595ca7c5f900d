"""The Score of a performance as it grows, token by token.

The mapping (``sonify.music.mapping.Mapper``) is causal and keeps a bounded state: each
frame costs the same however long the performance has run, and it releases only events
that can no longer change (a word once the next token shows where it ends; a chord, a
line's organ note or a stanza's drone as opened notes whose end comes later). So a live
performance plays exactly the Score an offline render of the same frames makes.

``GrowingScore`` holds on to a frame only until its token is cued (the sinks that show a
token's telemetry read it then), so its memory does not grow with the performance either,
unless it is asked to ``keep`` every released event for the whole Score at the end.
"""

from __future__ import annotations

from ..model.frame import Frame
from ..music.calibration import Calibration
from ..music.mapping import Mapper, assemble
from ..music.preset import Preset
from ..music.score import Release, Score


class GrowingScore:
    """Feed frames; get back the events that are final.

    After each ``add`` or ``finish``, ``cued`` holds the frames of the tokens that release
    cued (by token index); frames are dropped once cued. With ``keep`` (the default) every
    release is also kept, so ``score`` can give the whole Score; without it the memory
    stays bounded, for a performance of any length."""

    def __init__(self, preset: Preset, calibration: Calibration | None = None, keep: bool = True):
        self.preset = preset
        self.mapper = Mapper(preset, calibration)
        self.keep = keep
        self.tokens = 0  # frames fed so far
        self.waiting: dict[int, Frame] = {}  # frames fed whose token is not cued yet
        self.cued: dict[int, Frame] = {}  # the frames of the latest release's cues
        self.released = Release()  # everything so far (with ``keep``), for the Score at the end
        self.last_time = 0.0  # when the latest released token sounds
        self._score: Score | None = None
        self.switched: tuple[float, str] | None = None  # (seconds, preset) of the latest switch

    def add(self, frames: list[Frame], switch: Preset | None = None, tempo: float | None = None) -> Release:
        """Map ``frames``; with ``switch``, first hand over to that preset at the next bar
        line (``switched`` says where); with ``tempo``, at that many beats a minute."""
        out = Release()
        if switch is not None:
            release, self.mapper = self.mapper.hand_over(switch)
            self.preset = switch
            self.switched = (self.mapper.end, switch.name)
            out.extend(release)
        if tempo is not None:
            self.mapper.set_tempo(tempo)
        for frame in frames:
            self.waiting[self.tokens] = frame
            self.tokens += 1
            out.extend(self.mapper.feed(frame))
        return self._keep(out)

    def finish(self) -> Release:
        """The stream has ended: everything is final now, the open notes close."""
        return self._keep(self.mapper.finish())

    def _keep(self, release: Release) -> Release:
        self.cued = {c.token: self.waiting.pop(c.token) for c in release.cues if c.token in self.waiting}
        if self.keep:
            self.released.extend(release)
            self._score = None
        if release.cues:
            self.last_time = max(self.last_time, max(c.time for c in release.cues))
        return release

    @property
    def end(self) -> float:
        """Where the music released so far ends, in seconds."""
        return self.mapper.end

    @property
    def score(self) -> Score:
        """The Score of everything released so far (built on request; needs ``keep``)."""
        if not self.keep:
            raise RuntimeError("this performance kept no Score (GrowingScore(keep=False))")
        if self._score is None:
            self._score = assemble(self.mapper, self.released)
        return self._score
