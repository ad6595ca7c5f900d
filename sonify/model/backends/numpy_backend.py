"""The decoder in NumPy: float32, a preallocated KV cache, attention computed explicitly.

Attention probabilities of every layer are written into one (layers, heads, queries,
keys) buffer, so the telemetry is reduced with a handful of stacked array operations per
forward call instead of per-layer Python work.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from ..families.common import Architecture, DecoderWeights
from ..profile import no_clock
from ..telemetry import attention_summaries
from .base import DecoderOutput, causal_mask, rope_tables


class KVCache:
    """Keys and values of the tokens in the current window, for every layer.

    Allocated for the whole window at once, one (kv_heads, window, head_dim) array per
    layer, and never written ahead: the operating system backs a page when it is first
    written, so the cache takes memory as the context grows (a 2048-token window of a
    135M model is ~94 MB, a 100-token context a few MB). Arrays under 4 MB also keep
    NumPy from asking for 2 MB pages, which would back the whole window at the first token.
    """

    def __init__(self, arch: Architecture, window: int):
        shape = (arch.num_kv_heads, window, arch.head_dim)
        self.keys = [np.empty(shape, dtype=np.float32) for _ in range(arch.num_layers)]
        self.values = [np.empty(shape, dtype=np.float32) for _ in range(arch.num_layers)]
        self.length = 0

    def reset(self) -> None:
        self.length = 0


# ufunc reductions: ndarray.mean costs several microseconds of Python per call, which
# adds up over layers for small models.
def _layer_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float) -> np.ndarray:
    inv_n = np.float32(1.0 / x.shape[-1])
    centred = x - np.add.reduce(x, axis=-1, keepdims=True) * inv_n
    out = centred / np.sqrt(np.add.reduce(centred * centred, axis=-1, keepdims=True) * inv_n + eps)
    if weight is not None:
        out *= weight
    return out + bias if bias is not None else out


def _rms_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float) -> np.ndarray:
    inv_n = np.float32(1.0 / x.shape[-1])
    scale = np.vecdot(x, x)[..., None]  # the sum of squares in one call
    scale *= inv_n
    scale += np.float32(eps)
    out = x / np.sqrt(scale, out=scale)
    if weight is not None:
        out *= weight
    return out


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x * x * x)))


def _fold_into_matrices(arch: Architecture, weights: DecoderWeights) -> None:
    """Fold per-layer constants into the matrices, in place, to save work on every token.

    A norm's gain g and bias b before a matrix W: (x^ * g + b) W = x^ (g W) + b W, so each
    block's two norms become parameter-free; the attention scale 1/sqrt(head_dim) moves into
    the query columns (RoPE is linear, so it commutes). The weights belong to this decoder
    alone (each load builds its own), which is why changing them in place is safe.
    """
    q_cols = arch.num_heads * arch.head_dim
    scale = np.float32(1.0 / math.sqrt(arch.head_dim))
    for layer in weights.layers:
        for norm, norm_bias, matrix, bias in (
            ("attn_norm", "attn_norm_bias", "qkv", "qkv_bias"),
            ("mlp_norm", "mlp_norm_bias", "up", "up_bias"),
        ):
            gain, shift, w = getattr(layer, norm), getattr(layer, norm_bias), getattr(layer, matrix)
            folded_bias = getattr(layer, bias)
            if shift is not None:
                folded_bias = shift @ w + (folded_bias if folded_bias is not None else 0.0)
            w *= gain[:, None]
            setattr(layer, bias, folded_bias)
            setattr(layer, norm, np.ones_like(gain))
            setattr(layer, norm_bias, None)
        layer.qkv[:, :q_cols] *= scale
        if layer.qkv_bias is not None:
            layer.qkv_bias[:q_cols] *= scale
        for name in ("qkv", "out", "up", "down"):
            setattr(layer, name, _streaming_layout(getattr(layer, name)))


def _streaming_layout(matrix: np.ndarray) -> np.ndarray:
    """The (in, out) matrix in the memory order BLAS's matrix-vector product streams
    fastest, which depends on its shape: measured on GPT-2 and SmolLM shapes, a matrix
    with fewer outputs than inputs (the attention output, the MLP's down projection)
    read ~25 % faster as dot products over (out, in) rows, a wider one ~25 % faster
    as (in, out) rows. Shapes alone decide, so a model always gets the same results."""
    rows_out = matrix.shape[0] >= matrix.shape[1]
    if rows_out and not matrix.T.flags.c_contiguous:
        return np.ascontiguousarray(matrix.T).T
    if not rows_out and not matrix.flags.c_contiguous:
        return np.ascontiguousarray(matrix)
    return matrix


def _linear(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ w + bias`` for (tokens, in) rows and an (in, out) matrix.

    One token goes through as a vector, so that NumPy calls BLAS's matrix-vector product,
    which streams the matrix at the machine's bandwidth; as a (1, in) matrix it takes the
    matrix-matrix product, measured 2-3x slower with two threads on a busy machine."""
    y = (x[0] @ w)[None] if x.shape[0] == 1 else x @ w
    if bias is not None:
        y += bias
    return y


class NumpyDecoder:
    """One model's forward pass in NumPy; see :class:`sonify.model.backends.base.DecoderOutput`."""

    name = "numpy"

    def __init__(self, arch: Architecture, weights: DecoderWeights, window: int):
        self.arch = arch
        self.weights = weights
        self.window = window
        self._norm = _layer_norm if arch.norm == "layernorm" else _rms_norm
        _fold_into_matrices(arch, weights)
        self.clock = no_clock  # a PhaseClock to profile (see sonify.model.profile)
        if arch.position == "rope":
            cos, sin = rope_tables(arch.inv_freq(), window)
            self._cos, self._sin = np.concatenate([cos, cos], axis=1), np.concatenate([-sin, sin], axis=1)
            half = arch.head_dim // 2
            self._swap_halves = np.r_[half : arch.head_dim, 0:half]

    def new_cache(self) -> KVCache:
        return KVCache(self.arch, self.window)

    def _rope(self, x: np.ndarray, start: int) -> np.ndarray:
        """Rotate (tokens, heads, head_dim) by position, in Hugging Face's rotate-half layout:
        [x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin], as x * [cos, cos] + [x2, x1] * [-sin, sin]
        (the same sums, in fewer array operations)."""
        t = x.shape[0]
        return x * self._cos[start : start + t, None, :] + x[..., self._swap_halves] * self._sin[start : start + t, None, :]

    def forward(self, token_ids: np.ndarray, cache: KVCache, details: bool = False) -> DecoderOutput:
        """Run ``token_ids`` (appended after the cached tokens) through the model."""
        arch, w = self.arch, self.weights
        n_tok, start = len(token_ids), cache.length
        end = start + n_tok
        if end > self.window:
            raise ValueError(f"{end} tokens exceed the window of {self.window}")
        heads, kv_heads, hd = arch.num_heads, arch.num_kv_heads, arch.head_dim
        rep, eps = heads // kv_heads, arch.norm_eps
        q_end, k_end = heads * hd, (heads + kv_heads) * hd

        lap = self.clock
        x = w.embed[token_ids]  # a new array: the residual stream is updated in place below
        if w.positions is not None:
            x += w.positions[start:end]
        residuals = np.empty((arch.num_layers + 1, n_tok, arch.hidden_size), dtype=np.float32)
        residuals[0] = x
        probs = np.empty((arch.num_layers, heads, n_tok, end), dtype=np.float32)
        mask = None
        if n_tok > 1:
            mask = causal_mask(start, n_tok, rep)
        lap("embed")

        for layer_index, layer in enumerate(w.layers):
            h = self._norm(x, None, None, eps)  # gain and bias are folded into layer.qkv
            lap("norms")
            qkv = _linear(h, layer.qkv, layer.qkv_bias)
            lap("qkv")
            if arch.position == "rope":  # queries and keys rotated together, in one call
                qk = self._rope(qkv[:, :k_end].reshape(n_tok, heads + kv_heads, hd), start)
                q, k = qk[:, :heads], qk[:, heads:]
            else:
                q = qkv[:, :q_end].reshape(n_tok, heads, hd)
                k = qkv[:, q_end:k_end].reshape(n_tok, kv_heads, hd)
            v = qkv[:, k_end:].reshape(n_tok, kv_heads, hd)
            keys, values = cache.keys[layer_index], cache.values[layer_index]
            keys[:, start:end] = k.transpose(1, 0, 2)
            values[:, start:end] = v.transpose(1, 0, 2)
            grouped_q = q.transpose(1, 0, 2).reshape(kv_heads, rep * n_tok, hd)
            p = probs[layer_index].reshape(kv_heads, rep * n_tok, end)
            np.matmul(grouped_q, keys[:, :end].transpose(0, 2, 1), out=p)  # the 1/sqrt(d) scale is in the queries
            if mask is not None:
                p += mask
            p -= p.max(-1, keepdims=True)
            np.exp(p, out=p)
            p /= p.sum(-1, keepdims=True)
            attended = p @ values[:, :end]  # (kv_heads, rep * tokens, hd)
            attended = attended.reshape(heads, n_tok, hd).transpose(1, 0, 2).reshape(n_tok, heads * hd)
            lap("attention")
            x += _linear(attended, layer.out, layer.out_bias)
            lap("out proj")
            h = self._norm(x, None, None, eps)  # folded into layer.up
            lap("norms")
            u = _linear(h, layer.up, layer.up_bias)
            lap("mlp up")
            if arch.mlp == "swiglu":
                gate, up = u[:, : arch.intermediate_size], u[:, arch.intermediate_size :]
                act = gate * expit(gate) * up
            else:
                act = _gelu_tanh(u)
            lap("mlp act")
            x += _linear(act, layer.down, layer.down_bias)
            residuals[layer_index + 1] = x
            lap("mlp down")
        cache.length = end

        final = self._norm(x, w.final_norm, w.final_norm_bias, eps)
        logits = _linear(final, w.lm_head, None)
        lap("head")

        # Telemetry, stacked over layers and heads: (layers, heads, tokens).
        head_entropy, head_distance, head_focus = attention_summaries(probs, np.arange(start, end))
        norms = np.linalg.norm(residuals, axis=-1)
        updates = np.linalg.norm(np.diff(residuals, axis=0), axis=-1)
        lap("telemetry")
        return DecoderOutput(
            logits=logits,
            final_hidden=final,
            head_entropy=head_entropy,
            head_distance=head_distance,
            head_focus=head_focus,
            layer_norm=norms[1:],
            layer_update=updates,
            attention=probs if details else None,
            hidden_states=residuals if details else None,
        )
