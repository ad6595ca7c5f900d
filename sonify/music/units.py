"""The text's own units: words, runs of non-word characters, and the breaks of its layout.

The musical unit is the word, not the token. A **word** is a run of non-space characters
holding at least one letter or digit, with the punctuation attached to it (``day?``,
``summer's``, ``(1.``); its sub-word tokens share its time. A run of non-space characters
with no letter or digit (box drawing, rules, arrows, bullets, ASCII art) is **art**. Tokens
that decode to nothing (an incomplete UTF-8 character) belong to the unit their bytes end
up in; tokens of only whitespace belong to no unit.

The layout gives the form: a newline ends a **line**; one or more blank lines make a
**stanza** break; a **heading** is a short line set off by blank lines that is numbered
(``I.``, ``2.``, ``Part II``), a Markdown heading (``# ...``), in capitals, in title case,
or underlined (a following line of ``===`` or ``---``). A heading opens a new **section**.

The segmenter is causal: fed one token at a time, it gives each unit as soon as it is
complete, which is when a later token starts with a space or a newline. A stanza break is
known at its blank line, a heading at the blank line (or underline) after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEADING_WORDS = 8
_ROMAN = re.compile(r"^[IVXLC]+[.):]?$")
_NUMBERED = re.compile(r"^\(?\d{1,3}[.):]?$")
_PART = re.compile(r"^(part|chapter|book|canto|section|act|scene)$", re.IGNORECASE)
_SMALL_WORDS = {"a", "an", "the", "of", "and", "or", "in", "on", "to", "for", "at", "by", "with", "from", "as", "is"}
_UNDERLINE = re.compile(r"^(=|-|~){3,}$")


@dataclass(frozen=True)
class Unit:
    """A word or a run of art, with the frames (token positions) that wrote it."""

    kind: str  # "word" or "art"
    text: str
    tokens: tuple[int, ...]
    line: int  # the line of the text it stands on (0-based)
    index: int  # its position among all units
    char: int = 0  # where its text starts in the whole text (characters)

    @property
    def is_word(self) -> bool:
        return self.kind == "word"

    @property
    def letters(self) -> int:
        return sum(ch.isalnum() for ch in self.text)


@dataclass(frozen=True)
class LineEnd:
    """A line of the text ended. ``words`` counts its words (0: a line of art only)."""

    line: int
    words: int
    text: str


@dataclass(frozen=True)
class StanzaBreak:
    """One or more blank lines: the stanza before ends here."""

    line: int


@dataclass(frozen=True)
class SectionStart:
    """A heading was read (``title``); what follows is a new section."""

    line: int
    title: str


Event = Unit | LineEnd | StanzaBreak | SectionStart


def is_heading(text: str) -> bool:
    """Whether a line, set off by blank lines, reads as a heading (see the module's rules)."""
    chunks = text.split()
    words = [c for c in chunks if any(ch.isalnum() for ch in c)]
    if not words or len(words) > MAX_HEADING_WORDS:
        return False
    if chunks[0].startswith("#"):
        return True
    first = words[0]
    if _ROMAN.match(first) or _NUMBERED.match(first) or _PART.match(first.strip(".:")):
        return True
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) >= 2 and all(ch.isupper() for ch in letters):
        return True
    if text.rstrip()[-1:] in ",;.!?" or len(letters) < 3:
        return False
    return all(w[0].isupper() or not w[0].isalpha() or w.lower() in _SMALL_WORDS for w in words) and words[0][0].isupper()


def is_underline(text: str) -> bool:
    return bool(_UNDERLINE.match(text.strip()))


@dataclass
class _Line:
    chars: list[str] = field(default_factory=list)
    words: int = 0
    has_chunk: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chars).strip()


class Segmenter:
    """Turns a stream of token texts into units and layout events, causally."""

    def __init__(self) -> None:
        self.units = 0
        self.line = 0
        self._chunk: list[str] = []
        self._chunk_tokens: list[int] = []
        self._chunk_char = 0
        self.chars = 0  # characters read so far
        self._pending: list[int] = []  # tokens that decoded to nothing yet
        self._current = _Line()
        self._previous_text: str | None = None  # the last non-blank line, while no blank line followed
        self._after_blank = True  # the current line follows a blank line (or the start)
        self._previous_after_blank = False
        self._blank_seen = False  # a blank line already ended the stanza

    def feed(self, index: int, text: str) -> list[Event]:
        """The events token ``index`` (decoding to ``text``) completes."""
        if text == "":
            self._pending.append(index)
            return []
        out: list[Event] = []
        for ch in text:
            self.chars += 1
            if ch.isspace():
                self._close_chunk(out)
                if ch == "\n":
                    self._newline(out)
                else:
                    self._current.chars.append(ch)
                continue
            if not self._chunk:
                self._chunk_tokens = [*self._pending, index]
                self._pending = []
                self._chunk_char = self.chars - 1
            elif self._chunk_tokens[-1] != index:
                self._chunk_tokens.append(index)
            self._chunk.append(ch)
            self._current.chars.append(ch)
        return out

    def finish(self) -> list[Event]:
        """The stream has ended: the last unit and line close."""
        out: list[Event] = []
        self._close_chunk(out)
        if self._current.has_chunk:
            self._end_line(out)
        return out

    def _close_chunk(self, out: list[Event]) -> None:
        if not self._chunk:
            return
        text = "".join(self._chunk)
        kind = "word" if any(ch.isalnum() for ch in text) else "art"
        out.append(Unit(kind, text, tuple(self._chunk_tokens), self.line, self.units, self._chunk_char))
        self.units += 1
        self._current.has_chunk = True
        self._current.words += kind == "word"
        self._chunk, self._chunk_tokens = [], []

    def _newline(self, out: list[Event]) -> None:
        if self._current.has_chunk:
            self._end_line(out)
        else:
            self._blank_line(out)
        self.line += 1
        self._current = _Line()

    def _end_line(self, out: list[Event]) -> None:
        line = self._current
        out.append(LineEnd(self.line, line.words, line.text))
        if line.words == 0 and is_underline(line.text) and self._previous_text is not None and self._previous_after_blank:
            out.append(SectionStart(self.line, self._previous_text))
            self._previous_text = None
        elif line.words:
            self._previous_text, self._previous_after_blank = line.text, self._after_blank
        self._after_blank = False
        self._blank_seen = False

    def _blank_line(self, out: list[Event]) -> None:
        if self._blank_seen or self.line == 0 and not self.units:
            self._after_blank = True
            return
        out.append(StanzaBreak(self.line))
        if self._previous_text is not None and self._previous_after_blank and is_heading(self._previous_text):
            out.append(SectionStart(self.line, self._previous_text))
        self._previous_text = None
        self._blank_seen = True
        self._after_blank = True


def segment(texts: list[str]) -> list[Event]:
    """All events of a whole stream of token texts."""
    segmenter = Segmenter()
    out: list[Event] = []
    for i, text in enumerate(texts):
        out += segmenter.feed(i, text)
    return out + segmenter.finish()
