"""Transcripts: when each word and each token sounds, as SRT, WebVTT, LRC and JSON.

All times come from the Score: its placed units (words, and runs of art) and the cues of
their tokens, the same times the notes use. Subtitles show one line of the text per cue (a
line end, or about 42 characters, ends a line); WebVTT and LRC also carry each word's own
time inside the line, for karaoke-style highlighting. The JSON also lists the stanzas and
sections.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..music.score import Score

MAX_LINE_CHARS = 42
LINGER = 0.8  # seconds a subtitle stays after its last word when nothing follows


@dataclass(frozen=True)
class Word:
    """A unit of the text as it sounds: a word, or a run of art (``kind``), from ``start`` to
    ``end`` seconds, made of the ``tokens`` (cue indices) that hold its characters, on
    ``line``. ``newlines`` counts the line breaks after it before the next unit: 0 within a
    line, 1 at a line's end, 2 or more at a stanza break."""

    text: str
    start: float
    end: float
    tokens: tuple[int, ...]
    ends_line: bool = False
    kind: str = "word"
    line: int = 0
    newlines: int = 0


@dataclass(frozen=True)
class Line:
    words: tuple[Word, ...]
    start: float
    end: float

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def words(score: Score) -> list[Word]:
    """The text's units (words and runs of art) with their times, as the Score placed them."""
    units = score.units
    out = []
    for k, u in enumerate(units):
        newlines = units[k + 1].line - u.line if k + 1 < len(units) else 0
        out.append(Word(u.text, u.time, u.time + u.duration, u.tokens, k + 1 == len(units) or newlines > 0, u.kind, u.line, newlines))
    return out


def lines(score: Score) -> list[Line]:
    """The text's lines (split at line ends and at MAX_LINE_CHARS) with their times."""
    groups: list[list[Word]] = [[]]
    for word in words(score):
        current = groups[-1]
        if current and len(" ".join(w.text for w in current + [word])) > MAX_LINE_CHARS:
            groups.append([])
        groups[-1].append(word)
        if word.ends_line:
            groups.append([])
    groups = [g for g in groups if g]
    out = []
    for k, group in enumerate(groups):
        following = groups[k + 1][0].start if k + 1 < len(groups) else None
        end = group[-1].end + LINGER
        if following is not None:
            end = min(end, following)
        out.append(Line(tuple(group), group[0].start, max(end, group[-1].end)))
    return out


def _clock(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def to_srt(score: Score) -> str:
    blocks = []
    for k, line in enumerate(lines(score), start=1):
        blocks.append(f"{k}\n{_clock(line.start, ',')} --> {_clock(line.end, ',')}\n{line.text}\n")
    return "\n".join(blocks)


def _escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(score: Score) -> str:
    out = ["WEBVTT", ""]
    for line in lines(score):
        parts = []
        for k, word in enumerate(line.words):
            text = _escape_vtt(word.text)
            parts.append(text if k == 0 else f"<{_clock(word.start, '.')}>{text}")
        out += [f"{_clock(line.start, '.')} --> {_clock(line.end, '.')}", " ".join(parts), ""]
    return "\n".join(out)


def _lrc_clock(seconds: float) -> str:
    cs = max(0, round(seconds * 100))
    m, rest = divmod(cs, 6000)
    s, cs = divmod(rest, 100)
    return f"{m:02d}:{s:02d}.{cs:02d}"


def to_lrc(score: Score, title: str = "") -> str:
    """Enhanced LRC: a timed line per line, and each word's time inside it."""
    out = [f"[ti:{title}]"] if title else []
    out.append("[re:sonify]")
    for line in lines(score):
        words_ = " ".join(f"<{_lrc_clock(w.start)}>{w.text}" for w in line.words)
        out.append(f"[{_lrc_clock(line.start)}]{words_}")
    return "\n".join(out) + "\n"


def to_json(score: Score) -> str:
    """Every token and word (and run of art) with its start and end in seconds and its
    beat, the lines, and where each stanza break and section falls (``write_json``'s text)."""
    out = io.StringIO()
    write_json(score, out)
    return out.getvalue()


def write_json(score: Score, f: IO[str]) -> None:
    """Write ``to_json``'s text into ``f`` an entry at a time, the text of
    ``json.dumps(..., ensure_ascii=False, indent=1)``, without holding all of it: an hour's
    piece makes some 4 MB of it."""
    sections: dict[str, Any] = {
        "preset": score.preset,
        "duration": score.end,
        "tokens": (
            {
                "index": c.token,
                "text": c.text,
                "start": round(c.time, 6),
                "end": round(c.time + c.duration, 6),
                "beat": round(c.beat, 6),
                "surprisal": round(c.surprisal, 6),
                "entropy": round(c.entropy, 6),
            }
            for c in score.cues
        ),
        "words": (
            {
                "text": u.text,
                "kind": u.kind,
                "start": round(u.time, 6),
                "end": round(u.time + u.duration, 6),
                "beat": round(u.beat, 6),
                "tokens": list(u.tokens),
                "line": u.line,
                "stanza": u.stanza,
                "section": u.section,
            }
            for u in score.units
        ),
        "lines": ({"text": ln.text, "start": round(ln.start, 6), "end": round(ln.end, 6)} for ln in lines(score)),
        "stanzas": ({"index": m.index, "start": round(m.time, 6)} for m in score.marks if m.kind == "stanza"),
        "sections": (
            {"index": m.index, "title": m.label, "key": m.key, "start": round(m.time, 6)} for m in score.marks if m.kind == "section"
        ),
    }
    f.write("{")
    for k, (key, value) in enumerate(sections.items()):
        f.write(("," if k else "") + f"\n {json.dumps(key, ensure_ascii=False)}: ")
        if not isinstance(value, Iterator):
            f.write(json.dumps(value, ensure_ascii=False))
            continue
        empty = True
        for item in value:
            # An entry two levels in: json.dumps's lines, indented by two more (a string's own
            # line breaks are escaped, so every break in the text is one of the layout's).
            f.write(("[" if empty else ",") + "\n  " + json.dumps(item, ensure_ascii=False, indent=1).replace("\n", "\n  "))
            empty = False
        f.write("[]" if empty else "\n ]")
    f.write("\n}\n")
