"""What every backend's forward pass returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DecoderOutput:
    """One forward call over T new tokens, as NumPy float32 arrays.

    Attention summaries are (layers, heads, T): entropy normalised to 0..1 by the log of
    the visible context, mean look-back distance in tokens, and the largest weight.
    Layer summaries are (layers, T): the residual stream's norm after each layer and the
    norm of what that layer added. ``attention`` (layers, heads, T, keys) and
    ``hidden_states`` (layers + 1, T, hidden) are filled only when asked for.
    """

    logits: np.ndarray  # (T, vocab)
    final_hidden: np.ndarray  # (T, hidden), after the final norm
    head_entropy: np.ndarray
    head_distance: np.ndarray
    head_focus: np.ndarray
    layer_norm: np.ndarray
    layer_update: np.ndarray
    attention: np.ndarray | None = None
    hidden_states: np.ndarray | None = None


def rope_tables(inv_freq: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of every (position, frequency) angle in the window, float32 (window, head_dim / 2)."""
    angles = np.outer(np.arange(window, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def causal_mask(start: int, n_tokens: int, repeats: int) -> np.ndarray:
    """Additive mask (0 or -inf) of ``n_tokens`` new queries at ``start`` against every key of
    the window so far, tiled ``repeats`` times down the rows (the heads sharing a key head)."""
    visible = np.arange(start + n_tokens)[None, :] <= (start + np.arange(n_tokens))[:, None]
    return np.tile(np.where(visible, 0.0, -np.inf).astype(np.float32), (repeats, 1))
