"""The texture: runs of art (box drawing, rules, ASCII art, arrows) as a short, soft figure.

A run is not read as words, one step per character: it sounds as one small event, a few
notes spread over the little time the clock gives it (or a single grace note when it takes
none). Its pitches come from its characters, so the same art always sounds the same: a rule
of ``─`` is one repeated tone, a frame of ``┌─┐`` three.
"""

from __future__ import annotations

from .part import Heard, Key, Part
from .preset import Texture

GRACE = 0.08  # seconds a run that takes no time still sounds


class TexturePart(Part):
    name = "texture"

    def __init__(self, settings: Texture, tempo, out, key: Key):
        super().__init__(settings, tempo, out)
        self.v = settings
        self.key = key

    def stanza_start(self, at: float, key: Key) -> None:
        self.key = key

    def art(self, heard: Heard) -> None:
        text = heard.placed.text
        grid = self.key.pitches(*self.v.register)
        kinds = list(dict.fromkeys(text))  # its distinct characters, in order
        count = min(self.v.notes, len(kinds), 1 + len(text) // 8)
        span = heard.duration if heard.duration > 0 else GRACE
        token = heard.placed.tokens[0] if heard.placed.tokens else heard.placed.index
        for j in range(count):
            pitch = int(grid[ord(kinds[j]) % len(grid)])
            start = heard.time + j * span / count
            self.play(start, max(span / count, GRACE), pitch, self.v.velocity, token)
