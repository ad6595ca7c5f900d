"""Per-token reductions of the next-token distribution and of the attention weights.

These are plain functions of arrays, so they can be checked by hand on tiny inputs.
Entropies are in nats.
"""

from __future__ import annotations

import numpy as np

_TINY = np.float32(np.finfo(np.float32).tiny)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis, computed stably in float64."""
    z = logits.astype(np.float64)
    z -= z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def log_softmax_entropy(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities and entropy (nats) along the last axis from one ``exp``.

    With z = logits - max and s = sum(exp z): log p = z - log s and
    H = log s - sum(exp(z) * z) / s. Decoding calls this on the whole vocabulary for
    every token, so computing the exponentials once matters.

    Every sum is NumPy's own reduction, never a BLAS dot product: OpenBLAS splits a dot
    product over more than 10,000 entries (a vocabulary) across its threads, so its last
    digits would depend on the thread count, and the BLAS thread it wakes between decoding
    steps competes with the next step for the CPU.
    """
    if logits.ndim == 1:  # a decoding step's: the same sums with scalars, in fewer calls
        z = logits.astype(np.float64)
        z -= np.maximum.reduce(z)
        e = np.exp(z)
        total = np.add.reduce(e)
        log_total = np.log(total)
        e *= z
        entropy_ = log_total - np.add.reduce(e) / total
        z -= log_total
        return z, entropy_
    z = logits.astype(np.float64)
    z -= np.maximum.reduce(z, axis=-1, keepdims=True)
    e = np.exp(z)
    total = np.add.reduce(e, axis=-1, keepdims=True)
    log_total = np.log(total)
    e *= z  # exp(z) is needed no more: sum(exp(z) * z) without a new array
    entropy_ = log_total[..., 0] - np.add.reduce(e, axis=-1) / total[..., 0]
    z -= log_total  # in place: z becomes the log-probabilities
    return z, entropy_


def entropy(logprobs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the distributions given as log-probabilities."""
    return -(np.exp(logprobs) * logprobs).sum(-1)


def rank_of(logprobs: np.ndarray, token_id: int) -> int:
    """1 for the most likely token, 2 for the runner-up, and so on (ties share the better rank)."""
    return int(np.count_nonzero(logprobs > logprobs[token_id])) + 1


def top_tokens(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely token ids with their probabilities, most likely first."""
    n = logprobs.shape[-1]
    k = min(k, n)
    if k <= 0:
        return []
    idx = np.argpartition(logprobs, n - k)[n - k :]
    # The k pairs sorted in Python (fewer NumPy calls): most likely first, ties by id.
    best = sorted(zip((-logprobs[idx]).tolist(), idx.tolist()))
    return list(zip([i for _, i in best], np.exp([-v for v, _ in best]).tolist()))


def attention_summaries(weights: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropy, look-back distance and focus of attention rows.

    ``weights`` is (..., queries, keys), each row a distribution over the keys of the
    window with the keys a query cannot see at zero; ``positions`` holds each query's
    position in the window (query i sees keys 0..positions[i]). Returns three arrays of
    shape (..., queries):

    - entropy normalised to 0..1 by log(visible keys); a query that sees one key has 0;
    - mean distance in tokens from the query back to the keys it attends to;
    - focus, the largest single weight.
    """
    positions = np.asarray(positions, dtype=weights.dtype)
    visible = positions + 1
    norm = np.where(visible > 1, np.log(visible), 1.0).astype(weights.dtype)
    entropy_ = attention_entropy(weights) / norm
    distance = positions - weights @ np.arange(weights.shape[-1], dtype=weights.dtype)
    return entropy_, distance, weights.max(-1)


def attention_entropy(weights: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Shannon entropy (nats) of each row of ``weights`` along the last axis, -sum(w log w)
    with 0 log 0 taken as 0, in the weights' precision (into ``out`` if given).

    NumPy's vectorised ``log`` instead of SciPy's ``entr``, which costs ~5x as much
    per entry: a decoding step reduces every head of every layer over the whole context."""
    terms = np.log(np.maximum(weights, _TINY))  # a weight of 0 adds 0 * log(tiny) = 0
    terms *= weights
    total = np.add.reduce(terms, axis=-1, out=out)
    return np.subtract(0, total, out=total)  # 0 - sum rather than -sum: a one-key row has +0, not -0
