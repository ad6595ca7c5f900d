"""How the default model's telemetry moves: the raw material the music is made of.

    python benchmarks/telemetry_stats.py [--tokens 500] [--seed 0]

Generates with the shipped model at its default settings and prints min / median / max of
entropy, surprisal and attention entropy, overall and by token class: line breaks, the
first token of a line, word starts, and word continuations (the rest of a word).
"""

from __future__ import annotations

import argparse

import numpy as np

from sonify import Engine, SamplerSettings, load_model


def token_class(text: str, previous: str) -> str:
    if "\n" in text:
        return "line break"
    if previous.endswith("\n"):
        return "line start"
    if text[:1].isspace() or not text[:1].isalnum():
        return "word start"
    return "continuation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frames = list(
        Engine(load_model()).generate("", max_tokens=args.tokens, sampler=SamplerSettings(), seed=args.seed, stop_at_eos=False)
    )
    signals = {
        "entropy (nats)": np.array([f.entropy for f in frames]),
        "surprisal (nats)": np.array([-f.logprob for f in frames]),
        "attention entropy (0..1, layer mean)": np.array([np.mean(f.attention.entropy) for f in frames]),
        "attention distance (tokens, layer mean)": np.array([np.mean(f.attention.distance) for f in frames]),
    }
    classes = np.array([token_class(f.text, frames[i - 1].text if i else "\n") for i, f in enumerate(frames)])

    print(f"{len(frames)} tokens, seed {args.seed}, temperature {SamplerSettings().temperature}\n")
    print(f"{'signal':42s} {'min':>7s} {'median':>7s} {'max':>7s}")
    for name, values in signals.items():
        print(f"{name:42s} {values.min():7.3f} {np.median(values):7.3f} {values.max():7.3f}")
    print(
        f"\nmedian by token class (count):\n{'':42s}"
        + "".join(f"{c:>14s}" for c in ("line break", "line start", "word start", "continuation"))
    )
    for name, values in signals.items():
        row = "".join(
            f"{np.median(values[classes == c]):8.3f} ({np.sum(classes == c):3d})" if np.any(classes == c) else f"{'-':>14s}"
            for c in ("line break", "line start", "word start", "continuation")
        )
        print(f"{name:42s}{row}")
    layer_entropy = np.array([f.attention.entropy for f in frames])
    print("\nattention entropy by layer (median):", " ".join(f"{v:.3f}" for v in np.median(layer_entropy, axis=0)))
    print(
        "layer update norm by layer (median):", " ".join(f"{v:.2f}" for v in np.median([f.layers.update for f in frames], axis=0))
    )
    print("\nthe text:\n" + "".join(f.text for f in frames))


if __name__ == "__main__":
    main()
