"""Telemetry signals, read per word (the musical unit), and their scaling into musical ranges.

A signal is one number per unit (``surprisal``, ``entropy``, ...), one per layer per unit
(``layer_update``, ...), or one per passed-over alternative (``alt_ratio``). How a word's
tokens combine is fixed and documented with each signal: the word's surprisal is the sum of
its tokens' (by the chain rule, −log p of the whole word given what came before); the
entropy, rank and alternatives are those of its first token (where the model chose which
word comes); attention and layer signals are means over its tokens.

Scaling has four parts, as in STRAUSS: a transform (linear, log, asinh, sqrt, or the
value's position in the model's calibrated distribution), input limits (numbers in the
signal's own units, or percentiles of the model's calibration such as ``"5%"``), an output
range, and a curve. Calibrated limits are fixed per model, so the same telemetry gives the
same musical value anywhere, in any piece, live or offline. Only a mapping that asks for a
``window`` scales against the last ``window`` units instead (a rolling percentile).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..model.frame import Frame
from .calibration import Calibration

Limit = float | str


def _mean(values: Sequence[float]) -> float:
    if not len(values):
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf and NaN are cleaned up after reading
        return float(np.mean(values))


def _token_mean(frames: Sequence[Frame], read: Callable[[Frame], float]) -> float:
    return _mean([read(f) for f in frames])


def _reach(f: Frame) -> float:
    return _mean(f.attention.distance) / max(f.context - 1, 1)


# name → (reader of one unit's frames, unit, how a word's tokens combine, description)
SIGNALS: dict[str, tuple[Callable[[Sequence[Frame]], float], str, str]] = {
    "surprisal": (lambda fs: float(sum(-f.logprob for f in fs)), "nats", "how surprising the word was (−log p of the whole word)"),
    "probability": (
        lambda fs: float(math.exp(min(sum(f.logprob for f in fs), 0.0))),
        "",
        "the probability the model gave the whole word",
    ),
    "entropy": (lambda fs: fs[0].entropy, "nats", "how uncertain the model was before the word (entropy at its first token)"),
    "rank": (lambda fs: float(fs[0].rank), "", "the word's first token's rank among the model's candidates (1 = first choice)"),
    "attention_entropy": (
        lambda fs: _token_mean(fs, lambda f: _mean(f.attention.entropy)),
        "",
        "how widely attention spread over the context (0 = one token, 1 = evenly)",
    ),
    "attention_distance": (
        lambda fs: _token_mean(fs, lambda f: _mean(f.attention.distance)),
        "tokens",
        "how far back attention looked",
    ),
    "attention_reach": (
        lambda fs: _token_mean(fs, _reach),
        "",
        "how far back attention looked, as a share of the visible context (0..1)",
    ),
    "attention_focus": (
        lambda fs: _token_mean(fs, lambda f: _mean(f.attention.focus)),
        "",
        "the largest single attention weight (focus)",
    ),
    "residual_norm": (
        lambda fs: _token_mean(fs, lambda f: f.layers.norm[-1] if f.layers.norm else 0.0),
        "",
        "the size of the residual stream after the last layer",
    ),
    "update_norm": (
        lambda fs: _token_mean(fs, lambda f: _mean(f.layers.update)),
        "",
        "how much the layers changed the residual stream, on average",
    ),
    "embedding_x": (lambda fs: fs[-1].embedding[0] if fs[-1].embedding else 0.0, "", "the word's place in embedding space, axis 1"),
    "embedding_y": (lambda fs: fs[-1].embedding[1] if len(fs[-1].embedding) > 1 else 0.0, "", "embedding space, axis 2"),
    "embedding_z": (lambda fs: fs[-1].embedding[2] if len(fs[-1].embedding) > 2 else 0.0, "", "embedding space, axis 3"),
    "tokens": (lambda fs: float(len(fs)), "tokens", "how many tokens the word took"),
}

# name → (reader of one value per layer per token, description); a unit takes the mean over its tokens.
LAYER_SIGNALS: dict[str, tuple[Callable[[Frame], Sequence[float]], str]] = {
    "layer_update": (lambda f: f.layers.update, "how much each layer changed the residual stream"),
    "layer_norm": (lambda f: f.layers.norm, "the size of the residual stream after each layer"),
    "layer_attention_entropy": (lambda f: f.attention.entropy, "how widely each layer's attention spread"),
    "layer_attention_distance": (lambda f: f.attention.distance, "how far back each layer looked"),
}

# Signals of an alternative the model passed over at the word's first token (the ghosts voice).
ALTERNATIVE_SIGNALS = {
    "alt_gap": "how far the alternative's log-probability lay from the chosen token's (nats; 0 = a dead heat)",
    "alt_ratio": "the alternative's probability ÷ the chosen token's (above 1: the model expected it more)",
    "alt_probability": "the probability of the alternative",
}

TRANSFORMS = ("linear", "log", "asinh", "sqrt", "quantile")


def unit_signal(frames: Sequence[Frame], name: str) -> float:
    """Signal ``name`` of one unit, from the frames of its tokens (NaN if it has none)."""
    if not frames:
        return math.nan
    return float(SIGNALS[name][0](frames))


def unit_layer_signal(frames: Sequence[Frame], name: str) -> np.ndarray:
    """Layer signal ``name`` of one unit: one value per layer, the mean over its tokens."""
    reader = LAYER_SIGNALS[name][0]
    rows = [list(reader(f)) for f in frames]
    rows = [r for r in rows if r]
    if not rows:
        return np.zeros(0)
    width = max(len(r) for r in rows)
    table = np.array([r + [r[-1]] * (width - len(r)) for r in rows], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return table.mean(axis=0)


@dataclass(frozen=True)
class Alternative:
    """A token the model passed over: its text, probability, and how it compared with the
    chosen token (``ratio`` of probabilities, ``gap`` = |ln ratio| in nats)."""

    text: str
    probability: float
    ratio: float
    gap: float

    def signal(self, name: str) -> float:
        return {"alt_gap": self.gap, "alt_ratio": self.ratio, "alt_probability": self.probability}[name]


def alternatives(frame: Frame, count: int) -> list[Alternative]:
    """The likeliest alternatives a token passed over, most likely first; ``count`` at most."""
    out = []
    for j, (text, p) in enumerate(frame.top):
        if j == frame.rank - 1 or not (math.isfinite(p) and p > 0.0):
            continue
        log_ratio = math.log(p) - min(frame.logprob, 0.0)
        out.append(Alternative(text, float(p), math.exp(min(log_ratio, 700.0)), abs(log_ratio)))
        if len(out) == count:
            break
    return out


# Per-token readers, for plots of the raw telemetry (one value per frame).
def token_signal(frames: Sequence[Frame], name: str) -> np.ndarray:
    """Signal ``name`` read token by token (each frame as a unit of its own)."""
    return np.array([unit_signal([f], name) for f in frames], dtype=np.float64)


def token_layer_signal(frames: Sequence[Frame], name: str) -> np.ndarray:
    """(tokens, layers) of layer signal ``name``; frames with fewer layers repeat their last value."""
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
    last = np.maximum.accumulate(np.where(bad, -1, np.arange(x.size)))
    last[last < 0] = good[0]
    return x[last]


def transform(x: float, kind: str) -> float:
    """One value through a transform (``quantile`` is applied by the scaler, not here)."""
    if kind in ("linear", "quantile"):
        return x
    if kind == "log":
        return math.log1p(max(x, 0.0))
    if kind == "asinh":
        return math.asinh(x)
    if kind == "sqrt":
        return math.sqrt(max(x, 0.0))
    raise ValueError(f"unknown transform {kind!r}")


@dataclass(frozen=True)
class Scaling:
    """A signal's way into a musical parameter: transform, input limits, output range, curve.

    ``limits`` are numbers in the signal's own units, or percentiles (``"5%"``) of the
    model's calibrated distribution; with ``window`` set they are percentiles of the last
    ``window`` units instead. ``curve`` bends the 0..1 position before it meets the range
    (2: most values stay near the low end; 0.5: near the high end)."""

    signal: str
    transform: str = "linear"
    limits: tuple[Limit, Limit] = ("5%", "95%")
    range: tuple[float, float] = (0.0, 1.0)
    curve: float = 1.0
    window: int | None = None
    fallback: str | None = None

    @property
    def rolling(self) -> bool:
        return self.window is not None


class Scaler:
    """A Scaling made ready for one model: calibrated limits resolved (per mode: a word the
    model read and one it wrote scale against their own tables), or a rolling window kept
    (bounded: ``window`` values). Call it with one value; it gives the parameter."""

    def __init__(self, scaling: Scaling, calibration: Calibration | None, layer: int | None = None, span: bool = False):
        self.scaling = scaling
        self.calibration = calibration
        self.layer = layer
        self.span = span  # scaling means over spans of words: their own calibration table
        self.recent: deque[float] = deque(maxlen=scaling.window or 1)
        self.last = 0.0  # the last finite input, standing in for NaN and inf
        self._limits: dict[str, tuple[float, float]] = {}

    def limits(self, mode: str = "read") -> tuple[float, float]:
        """The limits after the transform, for words of ``mode``."""
        if mode not in self._limits:
            self._limits[mode] = (self._calibrated(self.scaling.limits[0], mode), self._calibrated(self.scaling.limits[1], mode))
        return self._limits[mode]

    def _calibrated(self, limit: Limit, mode: str) -> float:
        s = self.scaling
        if isinstance(limit, str):
            q = float(limit.rstrip("%"))
            if s.transform == "quantile":
                return q / 100.0
            value = self.calibration.percentile(s.signal, q, self.layer, mode, self.span) if self.calibration is not None else q / 100.0
            return transform(value, s.transform)
        return float(limit) if s.transform == "quantile" else transform(float(limit), s.transform)

    def position(self, value: float, mode: str = "read") -> float:
        """Where ``value`` lies between the limits, 0..1 (clipped), after the transform."""
        if not math.isfinite(value):
            value = self.last
        self.last = value
        s = self.scaling
        if s.rolling:
            self.recent.append(value)
            window = np.array(self.recent)
            if s.transform == "quantile":
                t = float(np.mean(window < value) + 0.5 * np.mean(window == value)) if window.size > 1 else 0.5
            else:
                t = transform(value, s.transform)
            lo, hi = (self._rolling_limit(limit, window) for limit in s.limits)
        else:
            if s.transform == "quantile":
                t = self.calibration.cdf(s.signal, value, self.layer, mode, self.span) if self.calibration is not None else 0.5
            else:
                t = transform(value, s.transform)
            lo, hi = self.limits(mode)
        span = hi - lo
        if abs(span) < 1e-12:
            return 0.5
        u = min(max((t - lo) / span, 0.0), 1.0)
        return u**s.curve

    def _rolling_limit(self, limit: Limit, window: np.ndarray) -> float:
        s = self.scaling
        if s.transform == "quantile":
            return float(limit.rstrip("%")) / 100.0 if isinstance(limit, str) else float(limit)
        if isinstance(limit, str):
            return transform(float(np.percentile(window, float(limit.rstrip("%")))), s.transform)
        return transform(float(limit), s.transform)

    def __call__(self, value: float, mode: str = "read") -> float:
        lo, hi = self.scaling.range
        return lo + self.position(value, mode) * (hi - lo)

    def describe_limits(self, mode: str = "read") -> tuple[float, float] | None:
        """The limits in the signal's own units (before the transform), when calibrated."""
        s = self.scaling
        if s.rolling or s.transform == "quantile":
            return None

        def value(x: Limit) -> float:
            if not isinstance(x, str):
                return float(x)
            if self.calibration is None:
                return float("nan")
            return self.calibration.percentile(s.signal, float(x.rstrip("%")), self.layer, mode, self.span)

        return value(s.limits[0]), value(s.limits[1])
