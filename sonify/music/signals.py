"""Telemetry signals read from frames, and their scaling into musical ranges.

A signal is one number per token (``surprisal``, ``entropy``, ...) or one per layer per
token (``layer_update``, ...). Scaling has three parts, as in STRAUSS: a transform
(linear, log, asinh, sqrt, or quantile within the running window), input limits (absolute
values, or percentiles such as ``"5%"`` of the last ``window`` tokens) and an output range.
Limits are computed causally, from the current and earlier tokens only, so a live stream
and an offline render of the same trace scale it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..model.frame import Frame

Limit = float | str


def _mean(values: Sequence[float]) -> float:
    if not len(values):
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf and NaN are cleaned up after reading
        return float(np.mean(values))


# name → (reader, description for the legend)
SCALAR_SIGNALS: dict[str, tuple[Callable[[Frame], float], str]] = {
    "surprisal": (lambda f: -f.logprob, "how surprising the token was (−log p, nats)"),
    "probability": (lambda f: float(np.exp(np.minimum(f.logprob, 0.0))), "the probability the model gave the token"),
    "entropy": (lambda f: f.entropy, "how uncertain the model was about the next token (entropy, nats)"),
    "rank": (lambda f: float(f.rank), "the token's rank among the model's candidates (1 = its first choice)"),
    "attention_entropy": (
        lambda f: _mean(f.attention.entropy),
        "how widely attention spread over the context (0 = one token, 1 = evenly)",
    ),
    "attention_distance": (lambda f: _mean(f.attention.distance), "how far back attention looked (tokens)"),
    "attention_reach": (
        lambda f: _mean(f.attention.distance) / max(f.context - 1, 1),
        "how far back attention looked, as a share of the visible context (0..1)",
    ),
    "attention_focus": (lambda f: _mean(f.attention.focus), "the largest single attention weight (focus)"),
    "residual_norm": (
        lambda f: f.layers.norm[-1] if f.layers.norm else 0.0,
        "the size of the residual stream after the last layer",
    ),
    "update_norm": (lambda f: _mean(f.layers.update), "how much the layers changed the residual stream, on average"),
    "embedding_x": (lambda f: f.embedding[0] if f.embedding else 0.0, "the token's position in embedding space, axis 1"),
    "embedding_y": (lambda f: f.embedding[1] if len(f.embedding) > 1 else 0.0, "embedding space, axis 2"),
    "embedding_z": (lambda f: f.embedding[2] if len(f.embedding) > 2 else 0.0, "embedding space, axis 3"),
    "token_length": (lambda f: float(len(f.text)), "the number of characters in the token"),
}

# name → (reader of one value per layer, description)
LAYER_SIGNALS: dict[str, tuple[Callable[[Frame], Sequence[float]], str]] = {
    "layer_update": (lambda f: f.layers.update, "how much each layer changed the residual stream"),
    "layer_norm": (lambda f: f.layers.norm, "the size of the residual stream after each layer"),
    "layer_attention_entropy": (lambda f: f.attention.entropy, "how widely each layer's attention spread"),
    "layer_attention_distance": (lambda f: f.attention.distance, "how far back each layer looked"),
}

# Signals of the alternatives a token passed over (the ghosts voice).
ALTERNATIVE_SIGNALS = {
    "alt_surprisal": "how surprising each passed-over alternative would have been (−log p)",
    "alt_probability": "the probability of each passed-over alternative",
}

TRANSFORMS = ("linear", "log", "asinh", "sqrt", "quantile")


@dataclass(frozen=True)
class Scaling:
    """A signal's way into a musical parameter: transform, input limits, output range."""

    signal: str
    transform: str = "linear"
    limits: tuple[Limit, Limit] = ("5%", "95%")
    range: tuple[float, float] = (0.0, 1.0)
    window: int = 256

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Scale ``values`` (tokens, or tokens x columns scaled column by column) into ``range``."""
        return scale(values, self.transform, self.limits, self.range, self.window)


def scalar_signal(frames: Sequence[Frame], name: str) -> np.ndarray:
    reader = SCALAR_SIGNALS[name][0]
    return np.array([reader(f) for f in frames], dtype=np.float64)


def layer_signal(frames: Sequence[Frame], name: str) -> np.ndarray:
    """(tokens, layers); frames with fewer layers are padded with their last value."""
    reader = LAYER_SIGNALS[name][0]
    rows = [list(reader(f)) or [0.0] for f in frames]
    width = max((len(r) for r in rows), default=1)
    out = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        out[i, len(r) :] = r[-1]
    return out


def finite(values: np.ndarray) -> np.ndarray:
    """Replace NaN and ±inf by the last finite value before them (0 if none), per column."""
    x = np.array(values, dtype=np.float64)
    if x.ndim == 2:
        return np.stack([finite(x[:, j]) for j in range(x.shape[1])], axis=1) if x.size else x
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    good = np.flatnonzero(~bad)
    if good.size == 0:
        return np.zeros_like(x)
    # Index of the last good position at or before each element; before the first, the first.
    last = np.maximum.accumulate(np.where(bad, -1, np.arange(x.size)))
    last[last < 0] = good[0]
    return x[last]


def transform(values: np.ndarray, kind: str) -> np.ndarray:
    x = finite(values)
    if kind == "linear" or kind == "quantile":
        return x
    if kind == "log":
        return np.log1p(np.maximum(x, 0.0))
    if kind == "asinh":
        return np.arcsinh(x)
    if kind == "sqrt":
        return np.sqrt(np.maximum(x, 0.0))
    raise ValueError(f"unknown transform {kind!r}")


def _windows(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """For each token, the last ``window`` values, as a (tokens, window) array and a mask.

    The first tokens see fewer values; the mask marks which entries are real."""
    n = x.size
    w = max(1, min(window, n))
    padded = np.concatenate([np.zeros(w - 1), x])
    view = sliding_window_view(padded, w)
    valid = np.arange(w)[None, :] >= (w - 1 - np.arange(n))[:, None]
    return view, valid


def running_percentile(x: np.ndarray, q: float, window: int) -> np.ndarray:
    """The ``q``-th percentile of each token's last ``window`` values (itself included).

    Linear interpolation between order statistics, as ``np.percentile`` does."""
    if x.size == 0:
        return x.copy()
    view, valid = _windows(x, window)
    ordered = np.sort(np.where(valid, view, np.inf), axis=1)  # the missing entries sort last
    count = valid.sum(axis=1)
    position = q / 100.0 * (count - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, count - 1)
    rows = np.arange(x.size)
    low, high = ordered[rows, below], ordered[rows, above]
    return low + (position - below) * (high - low)


def running_quantile(x: np.ndarray, window: int) -> np.ndarray:
    """Where each value lies among the last ``window`` values, in [0, 1] (mid-rank for ties)."""
    if x.size == 0:
        return x.copy()
    view, valid = _windows(x, window)
    cur = x[:, None]
    less = ((view < cur) & valid).sum(axis=1)
    equal = ((view == cur) & valid).sum(axis=1)
    count = valid.sum(axis=1)
    out = np.full(x.size, 0.5)
    many = count > 1
    out[many] = (less[many] + (equal[many] - 1) / 2.0) / (count[many] - 1)
    return out


def _limit(t: np.ndarray, limit: Limit, kind: str, window: int) -> np.ndarray:
    if isinstance(limit, str):
        return running_percentile(t, float(limit.rstrip("%")), window)
    value = np.array([float(limit)])
    return np.broadcast_to(value if kind == "quantile" else transform(value, kind), t.shape)


def unit(values: np.ndarray, kind: str, limits: tuple[Limit, Limit], window: int) -> np.ndarray:
    """The transformed signal placed in [0, 1] between its limits (clipped)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 2:
        if x.shape[1] == 0:
            return x.copy()
        return np.stack([unit(x[:, j], kind, limits, window) for j in range(x.shape[1])], axis=1)
    t = transform(x, kind)
    if kind == "quantile":
        t = running_quantile(t, window)
    lo, hi = _limit(t, limits[0], kind, window), _limit(t, limits[1], kind, window)
    span = hi - lo
    flat = np.abs(span) < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(flat, 0.5, (t - lo) / np.where(flat, 1.0, span))
    return np.clip(np.nan_to_num(u, nan=0.5), 0.0, 1.0)


def scale(values: np.ndarray, kind: str, limits: tuple[Limit, Limit], out_range: tuple[float, float], window: int) -> np.ndarray:
    """The signal through transform and limits into ``out_range`` (which may run downwards)."""
    u = unit(values, kind, limits, window)
    return out_range[0] + u * (out_range[1] - out_range[0])
