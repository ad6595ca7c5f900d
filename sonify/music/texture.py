"""The texture: runs of art (box drawing, rules, ASCII art, arrows) as a short, soft figure.

A run is not read as words, one step per character: it sounds as one small event, a few
notes spread over the little time the clock gives it (a run the clock gives no time, once a
line's art has had its share, stays silent). Its pitches come from its characters, so the
same art always sounds the same: a rule of ``─`` is one repeated tone, a frame of ``┌─┐``
three.
"""

from __future__ import annotations

from .part import Heard, Key, Part
from .preset import Texture

SHORTEST = 0.05  # seconds: no texture note is shorter


class TexturePart(Part):
    name = "texture"

    def __init__(self, settings: Texture, tempo, out, key: Key):
        super().__init__(settings, tempo, out)
        self.v = settings
        self.key = key

    def stanza_start(self, at: float, key: Key) -> None:
        self.key = key

    def art(self, heard: Heard) -> None:
        if heard.duration <= 0:
            return
        text = heard.placed.text
        grid = self.key.pitches(*self.v.register)
        kinds = list(dict.fromkeys(text))  # its distinct characters, in order
        count = min(self.v.notes, len(kinds), 1 + len(text) // 8)
        span = heard.duration
        token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
        for j in range(count):
            pitch = int(grid[ord(kinds[j]) % len(grid)])
            start = heard.time + j * span / count
            self.play(start, max(span / count, SHORTEST), pitch, self.v.velocity, token)
