"""The Frame: everything the model exposes about one token, the contract with the music.

Every field of a frame describes the forward step that *predicted* its token: the
distribution (entropy, the token's log-probability and rank, the top alternatives),
how that step attended over the context, and the state of its layers. In reading mode
this is the model's expectation before it saw the token; in generation, the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["read", "generated"]

# Telemetry groups a source may be unable to give (a model behind an inference server has
# no attention, layers or hidden state to show); an absent group's fields are empty.
TELEMETRY_GROUPS = ("attention", "layers", "embedding")
# Fields a source may give only as an estimate or a bound (see Frame.estimated).
ESTIMABLE = ("entropy", "logprob", "rank", "context")


@dataclass(frozen=True)
class AttentionStats:
    """Per layer, the mean over heads; ``head_*`` holds each head (layers x heads)."""

    entropy: tuple[float, ...]
    distance: tuple[float, ...]
    focus: tuple[float, ...]
    head_entropy: tuple[tuple[float, ...], ...]
    head_distance: tuple[tuple[float, ...], ...]
    head_focus: tuple[tuple[float, ...], ...]

    @classmethod
    def empty(cls) -> AttentionStats:
        """No attention telemetry (the group is absent)."""
        return cls((), (), (), (), (), ())

    def to_dict(self) -> dict[str, Any]:
        return {
            "entropy": list(self.entropy),
            "distance": list(self.distance),
            "focus": list(self.focus),
            "heads": {
                "entropy": [list(h) for h in self.head_entropy],
                "distance": [list(h) for h in self.head_distance],
                "focus": [list(h) for h in self.head_focus],
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttentionStats:
        heads = d["heads"]
        return cls(
            entropy=tuple(d["entropy"]),
            distance=tuple(d["distance"]),
            focus=tuple(d["focus"]),
            head_entropy=tuple(tuple(h) for h in heads["entropy"]),
            head_distance=tuple(tuple(h) for h in heads["distance"]),
            head_focus=tuple(tuple(h) for h in heads["focus"]),
        )


@dataclass(frozen=True)
class LayerStats:
    """Per layer: the residual stream's norm after the layer, and the norm of its update."""

    norm: tuple[float, ...]
    update: tuple[float, ...]

    @classmethod
    def empty(cls) -> LayerStats:
        """No layer telemetry (the group is absent)."""
        return cls((), ())

    def to_dict(self) -> dict[str, Any]:
        return {"norm": list(self.norm), "update": list(self.update)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerStats:
        return cls(norm=tuple(d["norm"]), update=tuple(d["update"]))


@dataclass(frozen=True)
class Frame:
    """One token and what the model did to predict it.

    ``logprob`` is the natural log of the token's probability (surprisal is its negative),
    ``entropy`` the entropy of the full next-token distribution in nats, ``rank`` 1 for
    the most likely token. ``top`` lists the most likely alternatives as (text, prob).
    ``embedding`` is the final hidden state under a fixed random projection to 3 dims.
    ``context`` is how many tokens the model could see (start token included).
    ``token_id`` is -1 where the source does not know it (a server that reports only text).

    What a source could not measure is said, never faked:

    - ``absent`` names the telemetry groups this frame lacks, among ``"attention"``,
      ``"layers"`` and ``"embedding"`` (a model behind an inference server has none of
      them); an absent group's fields are empty (``AttentionStats.empty()``,
      ``LayerStats.empty()``, ``()``). Empty means "not measured", never zero.
    - ``estimated`` names the fields that are estimates or bounds, not exact values:
      ``"entropy"`` is estimated from the top-k alternatives and the true entropy lies in
      ``entropy_bounds`` (low, high; high is ``inf`` when the vocabulary size is unknown);
      ``"logprob"`` is an upper bound (the chosen token was not listed and its probability
      was not reported: at most the smallest listed one and the unlisted mass);
      ``"rank"`` is a lower bound (the chosen token was not among the listed ones);
      ``"context"`` is a lower bound (the prompt's length was not reported).
    """

    index: int
    token_id: int
    text: str
    mode: Mode
    logprob: float
    entropy: float
    rank: int
    top: tuple[tuple[str, float], ...]
    attention: AttentionStats
    layers: LayerStats
    embedding: tuple[float, ...]
    context: int
    absent: tuple[str, ...] = ()
    estimated: tuple[str, ...] = ()
    entropy_bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.absent or self.estimated or self.entropy_bounds is not None:
            _check_marker(self.absent, self.estimated, self.entropy_bounds)

    def has(self, group: str) -> bool:
        """Whether this frame carries the telemetry ``group`` (attention, layers, embedding)."""
        return group not in self.absent

    @property
    def surprisal(self) -> float:
        return -self.logprob

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "token_id": self.token_id,
            "text": self.text,
            "mode": self.mode,
            "logprob": self.logprob,
            "entropy": self.entropy,
            "rank": self.rank,
            "top": [[t, p] for t, p in self.top],
            "attention": self.attention.to_dict(),
            "layers": self.layers.to_dict(),
            "embedding": list(self.embedding),
            "context": self.context,
            # Written only when set, so an in-process trace reads exactly as before.
            **({"absent": list(self.absent)} if self.absent else {}),
            **({"estimated": list(self.estimated)} if self.estimated else {}),
            **(
                {"entropy_bounds": [self.entropy_bounds[0], _finite_or_none(self.entropy_bounds[1])]} if self.entropy_bounds else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Frame:
        return cls(
            index=int(d["index"]),
            token_id=int(d["token_id"]),
            text=str(d["text"]),
            mode=d["mode"],
            logprob=float(d["logprob"]),
            entropy=float(d["entropy"]),
            rank=int(d["rank"]),
            top=tuple((str(t), float(p)) for t, p in d["top"]),
            attention=AttentionStats.from_dict(d["attention"]),
            layers=LayerStats.from_dict(d["layers"]),
            embedding=tuple(float(x) for x in d["embedding"]),
            context=int(d["context"]),
            absent=tuple(str(g) for g in d.get("absent", ())),
            estimated=tuple(str(f) for f in d.get("estimated", ())),
            entropy_bounds=_read_bounds(d.get("entropy_bounds")),
        )


def _check_marker(absent: tuple[str, ...], estimated: tuple[str, ...], bounds: tuple[float, float] | None) -> None:
    unknown = [g for g in absent if g not in TELEMETRY_GROUPS] + [f for f in estimated if f not in ESTIMABLE]
    if unknown:
        raise ValueError(f"unknown telemetry group or field {unknown[0]!r} (groups: {TELEMETRY_GROUPS}, fields: {ESTIMABLE})")
    if ("entropy" in estimated) != (bounds is not None):
        raise ValueError("an estimated entropy comes with its entropy_bounds, and only an estimated one")
    if bounds is not None and not bounds[0] <= bounds[1]:
        raise ValueError(f"entropy_bounds {bounds} are not (low, high)")


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _read_bounds(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return float(low), math.inf if high is None else float(high)
