"""The master chain's shortcuts give the samples of the plain computation they replace."""

from __future__ import annotations

import numpy as np
import pytest

from sonify.synth.master import Limiter

SR = 48000


def _loud_noise(frames: int, seed: int = 0) -> np.ndarray:
    """(2, frames) float32 noise with bursts past the ceiling, so the limiter acts."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, frames)).astype(np.float32) * np.float32(0.05)
    x[:, frames // 3 : frames // 3 + 2000] *= np.float32(30.0)
    return x


@pytest.mark.parametrize("gain", [None, np.float32(1.7)])
def test_limiter_reads_slices_of_a_longer_piece_as_it_reads_copies(gain):
    """Blocks that are (frames, 2) views of a longer (2, frames) piece, of their own
    (2, frames) arrays and C-ordered copies all give the same bytes, block by block."""
    piece = _loud_noise(3 * 40000 + 123)
    cuts = [(0, 40000), (40000, 80123), (80123, piece.shape[1])]
    outs = []
    for layout in ("slice", "own", "copy"):
        limiter, out = Limiter(SR, -1.0), []
        for lo, hi in cuts:
            block = piece[:, lo:hi].T
            if layout == "own":
                block = block.T.copy().T
            elif layout == "copy":
                block = np.ascontiguousarray(block)
            out.append(limiter.process(block, gain))
        out.append(limiter.flush())
        outs.append(np.concatenate(out))
        assert limiter.engaged  # the gain has acted: the general path, not a plain delay
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()
