"""From what a server reports about one token to a Frame: entropy, rank and log-probability
estimated from the top-k alternatives, each with what it is bounded by.

A server lists the k likeliest tokens with their log-probabilities (and the chosen token's,
which may be outside them). The rest of the distribution is unseen, but two things are known
about it: its total mass, ``r = 1 - (sum of the listed probabilities)``, and that no unseen
token is likelier than the least likely listed one, ``p_min`` (when the list is complete).

Entropy, in nats, with ``H_listed = -sum(p log p)`` over the known tokens:

- low:  ``H_listed - r log(min(p_min, r))``. Every unseen token has ``p <= c = min(p_min, r)``,
  so ``-p log p >= -p log c`` and the unseen part adds at least ``-r log c`` (reached when
  the tail is made of tokens as likely as the least likely listed one).
- high: ``H_listed + r log((V - k) / r)`` with V the vocabulary size: the unseen mass spread
  evenly over the ``V - k`` unseen tokens; infinite when V is unknown.

The estimate is the low end. It is exact when the listed tokens carry all the mass, and it
is what the music reads as ``entropy``; ``entropy_bounds`` carries (low, high).
"""

from __future__ import annotations

import math

from ..frame import AttentionStats, Frame, LayerStats, Mode
from .responses import Candidate

REMOTE_ABSENT = ("attention", "layers", "embedding")
TINY = 1e-12


def entropy_bounds(known: list[float], unseen_cap: float, vocab_size: int | None) -> tuple[float, float]:
    """(low, high) for the entropy of a distribution of which the probabilities ``known``
    are seen, every other token has at most ``unseen_cap``, and there are ``vocab_size`` tokens."""
    h_known = -sum(p * math.log(p) for p in known if p > 0)
    rest = max(0.0, 1.0 - sum(known))
    if rest <= TINY:
        return h_known, h_known
    cap = max(min(unseen_cap, rest), TINY)
    low = h_known - rest * math.log(cap)
    unseen = None if vocab_size is None else vocab_size - len(known)
    if unseen is None or unseen < 1:
        return low, math.inf
    return low, max(low, h_known + rest * math.log(unseen / rest))


def remote_frame(
    index: int,
    chosen: Candidate,
    top: tuple[Candidate, ...],
    mode: Mode,
    context: tuple[int, bool],
    listing: tuple[int, int | None],
) -> Frame:
    """The Frame of one token a server reported.

    ``top`` is the listed alternatives, most likely first (the first ``asked`` of them are
    the top of the distribution); ``context`` is (tokens the model
    saw, whether that count is exact); ``listing`` is (how many alternatives were asked
    for, the vocabulary size or ``None``)."""
    asked, vocab_size = listing
    # llama-cpp-python adds the chosen token to the k it lists when it is not among them:
    # only the first k are the top of the distribution.
    top = top[:asked]
    listed = [math.exp(c.logprob) for c in top]
    # Fewer alternatives than asked for means some collapsed (the same text): then an unlisted
    # token may be likelier than the least likely listed one, and only the likeliest bounds it.
    complete = len(top) >= asked or (vocab_size is not None and len(top) >= vocab_size)
    cap = (min(listed) if complete else max(listed)) if listed else 1.0
    is_listed = any(_same(chosen, c) for c in top)
    known = list(listed)
    estimated = ["entropy"]
    if is_listed:
        logprob = chosen.logprob if not math.isnan(chosen.logprob) else next(c.logprob for c in top if _same(chosen, c))
        rank = 1 + sum(c.logprob > logprob for c in top)
        if not complete:
            estimated.append("rank")
    else:
        rank = len(top) + 1
        estimated.append("rank")
        if math.isnan(chosen.logprob):
            logprob = math.log(max(min(cap, 1.0 - sum(listed)), TINY))
            estimated.append("logprob")
        else:
            logprob = chosen.logprob
            known.append(math.exp(logprob))
    low, high = entropy_bounds(known, cap, vocab_size)
    seen, exact = context
    if not exact:
        estimated.append("context")
    return Frame(
        index=index,
        token_id=chosen.token_id if chosen.token_id is not None else -1,
        text=chosen.text,
        mode=mode,
        logprob=logprob,
        entropy=low,
        rank=rank,
        top=tuple((c.text, math.exp(c.logprob)) for c in top),
        attention=AttentionStats.empty(),
        layers=LayerStats.empty(),
        embedding=(),
        context=seen,
        absent=REMOTE_ABSENT,
        estimated=tuple(estimated),
        entropy_bounds=(low, high),
    )


def _same(a: Candidate, b: Candidate) -> bool:
    if a.token_id is not None and b.token_id is not None:
        return a.token_id == b.token_id
    return a.text == b.text
