"""Samplers in the style of mlx-lm: small filters composed into one function.

The filters act on log-probabilities (top-k, then min-p, then top-p), temperature
scales what is left, and a seeded NumPy generator draws the token, so the same seed
always gives the same tokens. A repetition penalty acts on the logits before all of that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import SonifyError

Sampler = Callable[[np.ndarray, np.random.Generator], int]


@dataclass(frozen=True)
class SamplerSettings:
    """How the next token is chosen. ``temperature`` 0 means always the most likely token."""

    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repetition_context: int = 64

    def __post_init__(self) -> None:
        checks = [
            (self.temperature >= 0, f"temperature has to be >= 0, but is {self.temperature}"),
            (isinstance(self.top_k, int) and self.top_k >= 0, f"top_k has to be an integer >= 0 (0 = off), but is {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p has to be in the (0, 1] interval, but is {self.top_p}"),
            (0 <= self.min_p <= 1, f"min_p has to be in the [0, 1] interval, but is {self.min_p}"),
            (self.repetition_penalty > 0, f"repetition_penalty has to be > 0 (1 = off), but is {self.repetition_penalty}"),
            (self.repetition_context >= 1, f"repetition_context has to be >= 1, but is {self.repetition_context}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SonifyError(message)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Generation:
    """How a prompt is continued: the sampler, its seed, and whether end-of-text stops it."""

    sampler: SamplerSettings = SamplerSettings()
    seed: int = 0
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise SonifyError(f"seed has to be an integer in 0..2**63-1, but is {self.seed}")


def apply_top_k(logprobs: np.ndarray, k: int) -> np.ndarray:
    """Keep the k most likely tokens."""
    if k <= 0 or k >= logprobs.shape[-1]:
        return logprobs
    threshold = np.partition(logprobs, -k)[-k]
    return np.where(logprobs >= threshold, logprobs, -np.inf)


def apply_min_p(logprobs: np.ndarray, min_p: float) -> np.ndarray:
    """Keep tokens at least ``min_p`` times as likely as the most likely one."""
    if min_p <= 0:
        return logprobs
    return np.where(logprobs >= logprobs.max() + np.log(min_p), logprobs, -np.inf)


def apply_top_p(logprobs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose probability adds up to ``top_p``."""
    if top_p >= 1.0:
        return logprobs
    order = np.argsort(-logprobs, kind="stable")
    probs = np.exp(logprobs[order])
    mass_before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])
    keep = order[mass_before < top_p]
    out = np.full_like(logprobs, -np.inf)
    out[keep] = logprobs[keep]
    return out


def apply_repetition_penalty(logits: np.ndarray, recent: Sequence[int], penalty: float) -> np.ndarray:
    """Make recently seen tokens less likely: positive logits divided, negative multiplied."""
    if penalty == 1.0 or not len(recent):
        return logits
    ids = np.unique(np.asarray(recent, dtype=np.int64))
    out = logits.copy()
    seen = out[ids]
    out[ids] = np.where(seen > 0, seen / penalty, seen * penalty)
    return out


def categorical(logits: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one index with probability softmax(logits)."""
    z = np.asarray(logits, dtype=np.float64)  # no copy of float64 log-probabilities
    probs = np.exp(z - np.maximum.reduce(z))  # the ufunc: ndarray.max costs more Python
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


def make_sampler(settings: SamplerSettings) -> Sampler:
    """A function from log-probabilities and a generator to the chosen token id."""
    if settings.temperature == 0:
        return lambda logprobs, rng: int(np.argmax(logprobs))
    filters: list[Callable[[np.ndarray], np.ndarray]] = []
    if settings.top_k > 0:
        filters.append(lambda lp: apply_top_k(lp, settings.top_k))
    if settings.min_p > 0:
        filters.append(lambda lp: apply_min_p(lp, settings.min_p))
    if settings.top_p < 1:
        filters.append(lambda lp: apply_top_p(lp, settings.top_p))
    inv_temp = 1.0 / settings.temperature

    def sample(logprobs: np.ndarray, rng: np.random.Generator) -> int:
        for f in filters:
            logprobs = f(logprobs)
        return categorical(logprobs * inv_temp, rng)

    return sample
