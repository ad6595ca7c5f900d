"""The page: one self-contained HTML file to watch and share a piece.

The text is laid out as written (lines, stanzas, headings) and each word lights up as it
sounds; lanes under it draw the telemetry and the notes, with a cursor. Everything the page
needs is inside the file: the data as JSON, the script and style inline, and the audio as
Ogg Vorbis (or a link to an audio file beside the page). No network, no server.

The data model is word-based: each word has its text, start, end and the tokens that make
it, each token its numbers and alternatives. Word times come from
:func:`sonify.outputs.transcript.words`, the one place that groups tokens into words, so the
page follows whatever timing the Score gives words. The live page (``sonify.live.page``)
serves the same template and fills it with the same records over a websocket.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SonifyError
from ..model.frame import Frame
from ..music import units
from ..music.score import Cue, Note, Score, VoiceInfo
from ..music.signals import unit_signal
from .files import OutputSet
from .ogg import encode_ogg_vorbis
from .transcript import Word, words

PAGE_AUDIO = ("embed", "link")
VOICE_COLOURS = {"melody": "#4ea1ff", "ghosts": "#b48cff", "harmony": "#5fd38d", "layers": "#ffa94d", "drone": "#c08b6a"}
OTHER_COLOUR = "#9aa4ad"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class PageInfo:
    """What the page says about the piece: a ``title`` and a line under it (``subtitle``)."""

    title: str
    subtitle: str = ""


@dataclass(frozen=True)
class PageAudio:
    """Where the page's sound comes from: ``samples`` at ``sample_rate`` to embed as Ogg
    Vorbis, ``ogg``, Ogg Vorbis bytes encoded already (``OggEncoder``), or ``link``, the
    path of an audio file relative to the page."""

    samples: np.ndarray | None = None
    sample_rate: int = 48000
    link: str | None = None
    ogg: bytes | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.samples, self.link, self.ogg)) != 1:
            raise SonifyError("a page needs either the samples to embed or an audio file to link, not both or neither")


def _number(x: float, digits: int = 4) -> float | None:
    """A finite float rounded for JSON; None for NaN and infinities (JSON has neither)."""
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _probability(p: float) -> float | None:
    """A probability to three significant digits: small ones stay readable (2.31e-05, not 0)."""
    p = float(p)
    return float(f"{p:.3g}") if math.isfinite(p) else None


def token_record(cue: Cue, frame: Frame | None) -> dict[str, Any]:
    """One token as the page shows it: its text and time, its numbers and its alternatives."""
    record: dict[str, Any] = {
        "text": cue.text,
        "start": _number(cue.time),
        "end": _number(cue.time + cue.duration),
        "surprisal": _number(cue.surprisal, 3),
        "entropy": _number(cue.entropy, 3),
    }
    if frame is not None:
        record.update(
            rank=frame.rank,
            prob=_probability(math.exp(min(frame.logprob, 0.0))) if math.isfinite(frame.logprob) else None,
            top=[[text, _probability(p)] for text, p in frame.top],
            attention=_number(unit_signal([frame], "attention_entropy"), 3) if frame.attention.entropy else None,
            distance=_number(unit_signal([frame], "attention_distance"), 2) if frame.attention.distance else None,
            layers=[_number(u, 4) for u in frame.layers.update],
        )
    return record


def word_record(word: Word) -> dict[str, Any]:
    return {
        "text": word.text,
        "start": _number(word.start),
        "end": _number(word.end),
        "tokens": list(word.tokens),
        "newlines": word.newlines,
    }


def is_heading(line: str, after_break: bool) -> bool:
    """Whether a line of the text reads as a heading, by the mapping's own rule
    (``sonify.music.units.is_heading``): a Markdown ``#`` line anywhere; at the start or
    after a blank line, a short numbered, capitalised or title-case line."""
    text = line.strip()
    return bool(text) and (after_break or text.startswith("#")) and units.is_heading(text)


def text_lines(ws: Sequence[Word]) -> list[dict[str, Any]]:
    """The text's own lines (split where it breaks lines): each the range of its words
    ``[first, end)``, whether a stanza (a blank line, or the start) comes before it, and
    whether it is a heading."""
    out: list[dict[str, Any]] = []
    first, stanza = 0, True
    for k, word in enumerate(ws):
        if word.newlines or k == len(ws) - 1:
            line = " ".join(w.text for w in ws[first : k + 1])
            out.append({"words": [first, k + 1], "stanza": stanza, "heading": is_heading(line, stanza)})
            first, stanza = k + 1, word.newlines >= 2
    return out


def voice_records(voices: Sequence[VoiceInfo]) -> list[dict[str, str]]:
    return [{"name": v.name, "colour": VOICE_COLOURS.get(v.name, OTHER_COLOUR)} for v in voices]


def note_record(note: Note, voices: dict[str, int]) -> list:
    """A note as ``[time, duration, pitch, velocity, voice index]``."""
    return [_number(note.time), _number(note.duration), note.pitch, note.velocity, voices.get(note.voice, -1)]


def page_data(frames: Sequence[Frame], score: Score, info: PageInfo) -> dict[str, Any]:
    """Everything the page draws, as a JSON-ready dictionary (word-based)."""
    ws = words(score)
    frames = list(frames)
    voices = voice_records(score.voices)
    index = {v["name"]: k for k, v in enumerate(voices)}
    return {
        "version": 1,
        "live": False,
        "title": info.title,
        "subtitle": info.subtitle,
        "preset": score.preset,
        "duration": _number(score.end),
        "words": [word_record(w) for w in ws],
        "lines": text_lines(ws),
        "tokens": [token_record(c, frames[c.token] if c.token < len(frames) else None) for c in score.cues],
        "voices": voices,
        "notes": [note_record(n, index) for n in score.notes],
    }


def _template(name: str) -> str:
    return resources.files("sonify.outputs").joinpath("web", name).read_text(encoding="utf-8")


def _script_json(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no ``</`` or ``<!--`` can close or confuse it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def fill_template(data: dict[str, Any], audio_tag: str, audio_data: str = "") -> str:
    """The page's HTML: the template with its style, script, data and audio filled in."""
    values = {
        "title": html.escape(data.get("title") or "sonify"),
        "style": _template("page.css"),
        "script": _template("page.js"),
        "data": _script_json(data),
        "audio_tag": audio_tag,
        "audio_data": audio_data,
    }
    # One pass, so text from the data can never be taken for a placeholder.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template("page.html"))


def page_html(data: dict[str, Any], audio: PageAudio) -> str:
    """The page for ``data`` (from :func:`page_data`) with ``audio`` embedded or linked."""
    if audio.link is not None:
        tag = f'<audio id="audio" preload="auto" src="{html.escape(audio.link)}"></audio>'
        return fill_template(data, tag)
    ogg = audio.ogg if audio.ogg is not None else encode_ogg_vorbis(audio.samples, audio.sample_rate)
    tag = '<audio id="audio" preload="auto"></audio>'
    payload = f'<script type="application/octet-stream" id="sonify-audio" data-type="audio/ogg">{base64.b64encode(ogg).decode("ascii")}</script>'
    return fill_template(data, tag, payload)


def write_page(
    path: str | os.PathLike, frames: Sequence[Frame], score: Score, info: PageInfo, audio: PageAudio, overwrite: bool = True
) -> Path:
    """Write the page for a piece, atomically; with ``overwrite`` False a file of that name is
    refused (``refuse_existing``), also one that appeared while the page was made."""
    path = Path(path)
    document = page_html(page_data(frames, score, info), audio)
    with OutputSet(overwrite=overwrite, announce=False) as files:
        files.write(path, document)
    return path


def first_words(text: str, count: int = 8) -> str:
    return " ".join(text.split()[:count])


def page_info(header: dict[str, Any], score: Score) -> PageInfo:
    """The title and the line under it, from a trace header: the prompt (or the first line
    of the text read), then the preset, the model and the length."""
    title = "sonify"
    for key in ("prompt", "text"):
        value = str(header.get(key) or "").strip()
        if value:
            first = value.splitlines()[0].strip().lstrip("#").strip() or first_words(value)
            title = first if len(first) <= 80 else first[:77].rstrip() + "…"
            break
    minutes, seconds = divmod(round(score.end), 60)
    parts = [f"{score.preset} preset", str(header.get("model") or ""), f"{minutes}:{seconds:02d}", "made with sonify"]
    return PageInfo(title, " · ".join(p for p in parts if p))
