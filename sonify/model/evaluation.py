"""How well a model predicts a text: nats per character, as the engine reads it."""

from __future__ import annotations

import numpy as np

from ..errors import SonifyError
from .loader import LanguageModel
from .telemetry import log_softmax


def window_schedule(n_tokens: int, window: int) -> list[tuple[int, int, int]]:
    """The windows the engine sees when it reads ``n_tokens`` tokens.

    Over the sequence ``seq = [start] + tokens``, a window ``(s, e, first)`` means the
    engine has fed ``seq[s:e]`` and scores the targets ``seq[first..e]``, each predicted
    from the tokens before it in the window. Once the window is full, the engine keeps
    its newest three quarters and goes on (see :class:`sonify.model.engine.Engine`).
    """
    keep = window - window // 4
    windows, start, end, first = [], 0, min(window, n_tokens), 1
    while True:
        windows.append((start, end, first))
        if end >= n_tokens:
            return windows
        start, first = end - keep, end + 1
        end = min(start + window, n_tokens)


def text_nats(model: LanguageModel, text: str, chunk: int = 256) -> float:
    """Total surprisal (nats) of ``text`` under ``model``, token for token as
    :meth:`Engine.read` computes it, without building Frames."""
    tokens = model.tokenizer.encode(text)
    if not tokens:
        raise SonifyError("the text to evaluate is empty")
    seq = np.array([model.start_token(), *tokens])
    total = 0.0
    for s, e, first in window_schedule(len(tokens), model.window):
        cache = model.decoder.new_cache()
        logits = np.concatenate([model.decoder.forward(seq[i : min(i + chunk, e)], cache).logits for i in range(s, e, chunk)])
        targets = np.arange(first, e + 1)
        total -= float(log_softmax(logits[targets - 1 - s])[np.arange(len(targets)), seq[targets]].sum())
    return total


def nats_per_char(model: LanguageModel, text: str) -> float:
    """Validation loss in nats per character (comparable across tokenizers)."""
    return text_nats(model, text) / len(text)
