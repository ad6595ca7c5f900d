"""Reading the log-probabilities out of a completion, whatever shape the server sends them in.

Two shapes exist. The legacy completions shape (llama.cpp, vLLM, OpenAI's ``/v1/completions``):
``{"tokens": [...], "token_logprobs": [...], "top_logprobs": [{text: logprob}, ...],
"text_offset": [...]}``, alternatives keyed by their text, so two tokens that read the same
collapse into one entry. The chat shape (``"content": [{"token", "logprob", "top_logprobs":
[...]}, ...]``), which mlx_lm.server also uses for completions, with two quirks of its own:
its tokens are raw vocabulary strings (``Ġthe``, ``▁the``, ``<0x0A>``) with an ``id``, and when
alternatives are asked for, the entry's own token is not the chosen one but the first of an
unsorted list. Both become :class:`Position` records: the chosen token when the server
really said which it was, and the alternatives sorted, most likely first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

_SPECIAL = re.compile(r"^<[|/]?[A-Za-z0-9_.:|\-]+>$")
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class Candidate:
    """One token as the server reported it: its ``text``, log-probability and, where given, id.

    ``data`` is its exact bytes where known (which may be part of a UTF-8 character);
    ``special`` marks control tokens (``<|endoftext|>``, ``</s>``) that read as nothing."""

    text: str
    logprob: float
    token_id: int | None = None
    data: bytes | None = None
    special: bool = False

    @property
    def content(self) -> bytes:
        return self.data if self.data is not None else self.text.encode("utf-8")


@dataclass(frozen=True)
class Position:
    """One token of a completion: the ``chosen`` one (``None`` when the server did not say
    which), the listed alternatives ``top`` (most likely first) and, in an echoed prompt,
    where its text starts (``offset``, in characters of the response text)."""

    chosen: Candidate | None
    top: tuple[Candidate, ...]
    offset: int | None = None


@dataclass(frozen=True)
class Choice:
    """What one response, or one streamed chunk, says: new ``text``, the ``positions`` it
    reports log-probabilities for, why it stopped (``finish_reason``), whether it carried
    log-probabilities at all, the prompt's length in tokens and the model's name when the
    server tells."""

    text: str
    positions: tuple[Position, ...]
    finish_reason: str | None
    has_logprobs: bool
    prompt_tokens: int | None = None
    model: str | None = None


class VocabularyText:
    """Turns raw vocabulary strings (as mlx_lm.server reports tokens) into bytes.

    Byte-level BPE (GPT-2, Llama 3, Qwen) spells each byte as one printable character
    (``Ġ`` is a space, ``Ċ`` a newline); SentencePiece (Llama 2, Mistral) writes ``▁`` for a
    space and ``<0x0A>`` for a raw byte. Which one a server's model uses is learnt from the
    first strings that show it; plain ASCII reads the same either way."""

    def __init__(self) -> None:
        self.style: str | None = None

    def observe(self, strings: list[str]) -> None:
        if self.style is None:
            joined = "".join(strings)
            if "▁" in joined:
                self.style = "sentencepiece"
            elif any(c in joined for c in "ĠĊĉ"):
                self.style = "bytelevel"

    def to_bytes(self, s: str) -> bytes:
        match = _BYTE_TOKEN.match(s)
        if match:
            return bytes([int(match.group(1), 16)])
        if self.style == "sentencepiece":
            return s.replace("▁", " ").encode("utf-8")
        table = _byte_decoder()
        if all(c in table for c in s):
            return bytes(table[c] for c in s)
        return s.encode("utf-8")


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character → byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def is_special(s: str) -> bool:
    """Whether a token string looks like a control token (reads as nothing in the text)."""
    return bool(_SPECIAL.match(s)) and not _BYTE_TOKEN.match(s)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _sorted(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    return tuple(sorted(candidates, key=lambda c: -c.logprob))


def parse_choice(response: dict, vocabulary: VocabularyText) -> Choice:
    """The first choice of a completion response or streamed chunk."""
    choices = response.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    text = choice.get("text")
    if text is None:  # a chat-shaped answer
        holder = choice.get("delta") or choice.get("message") or {}
        text = holder.get("content") or ""
    usage = response.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        positions = _content_positions(logprobs["content"], vocabulary)
    elif isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list):
        positions = _legacy_positions(logprobs)
    else:
        positions = ()
    model = response.get("model") if isinstance(response.get("model"), str) else None
    return Choice(str(text), positions, choice.get("finish_reason"), isinstance(logprobs, dict), prompt_tokens, model)


def _legacy_positions(logprobs: dict) -> tuple[Position, ...]:
    tokens = logprobs.get("tokens") or []
    chosen_lp = logprobs.get("token_logprobs") or [None] * len(tokens)
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    offsets = logprobs.get("text_offset") or [None] * len(tokens)
    out = []
    for token, lp, top, offset in zip(tokens, chosen_lp, tops, offsets):
        listed = [Candidate(str(t), x) for t, v in (top or {}).items() if (x := _number(v)) is not None]
        value = _number(lp)
        chosen = Candidate(str(token), value) if value is not None else None
        out.append(Position(chosen, _sorted(listed), offset if isinstance(offset, int) else None))
    return tuple(out)


def _content_positions(content: list, vocabulary: VocabularyText) -> tuple[Position, ...]:
    raw = any(isinstance(e, dict) and "id" in e for e in content)  # mlx_lm.server: raw vocabulary strings
    if raw:
        vocabulary.observe(
            [str(e.get("token", "")) for e in content if isinstance(e, dict)]
            + [str(a.get("token", "")) for e in content if isinstance(e, dict) for a in e.get("top_logprobs") or []]
        )
    out = []
    for entry in content:
        if not isinstance(entry, dict):
            out.append(Position(None, ()))
            continue
        listed = _unique([c for a in entry.get("top_logprobs") or [] if (c := _candidate(a, raw, vocabulary)) is not None])
        # mlx_lm.server puts the first of its unsorted alternatives here, not the chosen token,
        # whenever alternatives were asked for: then the chosen one is found from the text.
        trusted = not (raw and listed)
        chosen = _candidate(entry, raw, vocabulary) if trusted else None
        out.append(Position(chosen, _sorted(listed)))
    return tuple(out)


def _candidate(entry: Any, raw: bool, vocabulary: VocabularyText) -> Candidate | None:
    if not isinstance(entry, dict):
        return None
    value = _number(entry.get("logprob"))
    token_id = entry.get("id") if isinstance(entry.get("id"), int) else None
    token = entry.get("token")
    if value is None or (token is None and token_id is None):
        return None
    token = "" if token is None else str(token)
    if raw:
        special = is_special(token)
        data = b"" if special else vocabulary.to_bytes(token)
        return Candidate(token if special else data.decode("utf-8", errors="replace"), value, token_id, data, special)
    data = bytes(entry["bytes"]) if isinstance(entry.get("bytes"), list) else None
    return Candidate(token, value, token_id, data, is_special(token))


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in candidates:
        key = c.token_id if c.token_id is not None else c.text
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
