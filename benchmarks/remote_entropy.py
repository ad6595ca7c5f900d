"""How far the entropy a server lets us estimate is from the true one.

    python benchmarks/remote_entropy.py [--tokens 400] [--seed 0]

A server reports the top k alternatives of each token; sonify estimates the entropy from
them with bounds (sonify/model/remote/estimate.py). This runs the shipped model in-process,
keeps what a server would report (the top k log-probabilities) and compares, for k = 5,
11 (mlx_lm.server's cap), 20 (vLLM's default cap): the estimate's error, the width of the
bounds, and the midpoint of the bounds as another estimate (needs the vocabulary size).
"""

from __future__ import annotations

import argparse

import numpy as np

from sonify import Engine, SamplerSettings, load_model
from sonify.model.remote.estimate import entropy_bounds
from sonify.model.telemetry import log_softmax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model()
    frames = list(
        Engine(model).generate("The sea", max_tokens=args.tokens, sampler=SamplerSettings(), seed=args.seed, stop_at_eos=False)
    )
    ids = [model.start_token()] + [f.token_id for f in frames]
    out = model.decoder.forward(np.array(ids[: model.window]), model.decoder.new_cache())
    rows = log_softmax(out.logits)
    vocab = model.arch.vocab_size
    print(f"{len(rows)} positions, vocabulary {vocab}; errors in nats (estimate - true)")
    print(
        f"{'k':>3} {'estimate: mean':>15} {'mean |err|':>11} {'max |err|':>10} {'bound width':>12} {'midpoint |err|':>15} {'in bounds':>10}"
    )
    for k in (5, 11, 20):
        err, width, mid, inside = [], [], [], 0
        for row in rows:
            true = float(-(np.exp(row) * row).sum())
            top = np.exp(np.sort(row)[::-1][:k])
            low, high = entropy_bounds(list(top), float(top[-1]), vocab)
            err.append(low - true)
            width.append(high - low)
            mid.append((low + high) / 2 - true)
            inside += low - 1e-9 <= true <= high + 1e-9
        err, mid = np.array(err), np.array(mid)
        print(
            f"{k:>3} {err.mean():>15.3f} {np.abs(err).mean():>11.3f} {np.abs(err).max():>10.3f} "
            f"{np.mean(width):>12.3f} {np.abs(mid).mean():>15.3f} {inside:>6}/{len(rows)}"
        )


if __name__ == "__main__":
    main()
