"""Real traces from the shipped default model, made once per test session, and synthetic frames."""

from __future__ import annotations

from functools import cache

from sonify import AttentionStats, Engine, Frame, LayerStats, SamplerSettings, load_model

POEM = (
    "Shall I compare thee to a summer's day?\n"
    "Thou art more lovely and more temperate:\n"
    "Rough winds do shake the darling buds of May,\n"
    "And summer's lease hath all too short a date;\n"
)


@cache
def generated(tokens: int = 1000, seed: int = 0) -> tuple[Frame, ...]:
    """The default model generating ``tokens`` tokens from a fixed prompt."""
    engine = Engine(load_model())
    frames = engine.generate(
        "Shall I compare thee", max_tokens=tokens, sampler=SamplerSettings(temperature=0.8), seed=seed, stop_at_eos=False
    )
    return tuple(frames)


@cache
def read(text: str = POEM) -> tuple[Frame, ...]:
    """The default model reading ``text``."""
    return tuple(Engine(load_model()).read(text))


def frame(
    index: int, *, logprob: float = -1.0, entropy: float = 2.0, layers: int = 4, value: float = 1.0, text: str = " word", top=None
) -> Frame:
    """A synthetic frame whose every telemetry number is ``value`` (or the given ones)."""
    per_layer = tuple(value for _ in range(layers))
    heads = tuple((value, value) for _ in range(layers))
    return Frame(
        index=index,
        token_id=index,
        text=text,
        mode="generated",
        logprob=logprob,
        entropy=entropy,
        rank=1,
        top=tuple(top) if top is not None else ((text, 0.5), (" other", 0.3), (" third", 0.1)),
        attention=AttentionStats(per_layer, per_layer, per_layer, heads, heads, heads),
        layers=LayerStats(per_layer, per_layer),
        embedding=(value, value, value),
        context=index + 2,
    )
