"""The Frame: everything the model exposes about one token, the contract with the music.

Every field of a frame describes the forward step that *predicted* its token: the
distribution (entropy, the token's log-probability and rank, the top alternatives),
how that step attended over the context, and the state of its layers. In reading mode
this is the model's expectation before it saw the token; in generation, the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["read", "generated"]


@dataclass(frozen=True)
class AttentionStats:
    """Per layer, the mean over heads; ``head_*`` holds each head (layers x heads)."""

    entropy: tuple[float, ...]
    distance: tuple[float, ...]
    focus: tuple[float, ...]
    head_entropy: tuple[tuple[float, ...], ...]
    head_distance: tuple[tuple[float, ...], ...]
    head_focus: tuple[tuple[float, ...], ...]

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
        )
