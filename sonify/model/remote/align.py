"""Finding the chosen tokens in the generated text, for servers that do not say which they were.

mlx_lm.server lists each position's alternatives but reports, as "the" token, the first of
an unsorted list. What it did choose is spelt out by the text it returns: each position's
chosen token is the listed alternative whose bytes continue that text there. Where several
readings fit, the likelier tokens win; where none of the listed tokens fits (the chosen one
was not among them), the position takes the bytes up to where the next listed token fits,
as an unlisted token.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .responses import Candidate, Position

UNLISTED_SCORE = -40.0  # worse than any listed token: only used where nothing listed fits
MAX_UNLISTED_BYTES = 32
BEAM = 64


def choose_from_text(text: str, positions: tuple[Position, ...]) -> tuple[Position, ...]:
    """``positions`` with every ``chosen`` filled in so that their bytes spell ``text``.

    A chosen token the server did report is kept where it fits. An unlisted token has
    ``logprob`` NaN (unknown) and, as ``data``, the bytes it covers."""
    target = text.encode("utf-8")
    n = len(positions)
    # states: byte offset -> (score, previous offset, candidate); one dict per position, a beam.
    states: list[dict[int, tuple[float, int, Candidate | None]]] = [{0: (0.0, -1, None)}]
    for i, position in enumerate(positions):
        nxt: dict[int, tuple[float, int, Candidate | None]] = {}
        options = [position.chosen] if position.chosen is not None else list(position.top)
        for offset, (score, _, _) in states[i].items():
            for c in options:
                width = 0 if c.special else len(c.content)
                if target[offset : offset + width] == c.content or c.special:
                    _keep(nxt, offset + width, score + c.logprob, offset, c)
            room = min(MAX_UNLISTED_BYTES, len(target) - offset)
            for width in range(room + 1):
                _keep(nxt, offset + width, score + UNLISTED_SCORE, offset, None)
        if len(nxt) > BEAM:
            nxt = dict(sorted(nxt.items(), key=lambda kv: -kv[1][0])[:BEAM])
        states.append(nxt)
    end = len(target) if len(target) in states[n] else max(states[n], key=lambda o: states[n][o][0])
    chosen: list[Position] = []
    offset = end
    for i in range(n, 0, -1):
        _, previous, candidate = states[i][offset]
        if candidate is None:
            piece = target[previous:offset]
            candidate = Candidate(piece.decode("utf-8", errors="replace"), math.nan, None, piece)
        chosen.append(replace(positions[i - 1], chosen=candidate))
        offset = previous
    return tuple(reversed(chosen))


def _keep(states: dict, offset: int, score: float, previous: int, candidate: Candidate | None) -> None:
    if offset not in states or score > states[offset][0]:
        states[offset] = (score, previous, candidate)
