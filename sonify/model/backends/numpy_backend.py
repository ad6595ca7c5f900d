"""The decoder in NumPy: float32, a preallocated KV cache, attention computed explicitly.

Attention probabilities of every layer are written into one (layers, heads, queries,
keys) buffer, so the telemetry is reduced with a handful of stacked array operations per
forward call instead of per-layer Python work. A single token (the decoding step) takes
a path of its own: vectors instead of (1, n) rows, a few array operations per layer, and
BLAS on one thread (see :class:`StepThreads`), its large products shared with a helper
thread in fixed blocks (see :mod:`.split`): the same bytes at any thread count. A model
none of whose products is split (one of a few MB, such as the default model) steps through
:meth:`NumpyDecoder._small_step`, which writes into buffers made once per cache.
"""

from __future__ import annotations

import math
import os
from functools import partial as partial_call

import numpy as np
from scipy.special import expit

from ..families.common import Architecture, DecoderWeights
from ..profile import no_clock
from ..telemetry import attention_entropy, attention_summaries
from .base import DecoderOutput, causal_mask, rope_tables
from .split import ALIGN, Blocks, SplitProducts, plan_blocks, prefetches, split_range, sum_rows


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


class _StepBuffers:
    """The vectors one decoding step of a small model writes, made once per cache (a run
    steps one token at a time, so two runs on one model never share them), with every
    view the step reads precomputed: on a model of a few MB a step is mostly NumPy's
    time per call, and a reshape or a slice is a call."""

    def __init__(self, arch: Architecture, layers: list[tuple], cache: KVCache):
        heads, kv_heads, hd = arch.num_heads, arch.num_kv_heads, arch.head_dim
        f32 = np.float32
        layer = layers[0]
        self.qkv = np.empty(layer[0].shape[1], dtype=f32)
        k_end = (heads + kv_heads) * hd
        self.qk = self.qkv[:k_end].reshape(heads + kv_heads, hd)
        self.v = self.qkv[k_end:].reshape(kv_heads, hd)
        half = hd // 2
        # RoPE's rotate-half on (rows, 2, half) views: [x1, x2] -> [x2, x1] is a reversed view.
        self.qk3 = self.qk.reshape(heads + kv_heads, 2, half)
        self.swapped3 = self.qk3[:, ::-1]
        self.rotated = np.empty((heads + kv_heads, hd), dtype=f32)
        self.rotated3 = self.rotated.reshape(heads + kv_heads, 2, half)
        self.product3 = np.empty_like(self.rotated3)
        rep = heads // kv_heads
        self.q_rotated = self.rotated[:heads].reshape(kv_heads, rep, hd)
        self.k_rotated = self.rotated[heads:]
        self.q = self.qk[:heads].reshape(kv_heads, rep, hd)
        self.k = self.qk[heads:]
        self.attended = np.empty((kv_heads, rep, hd), dtype=f32)
        self.attended_flat = self.attended.reshape(heads * hd)  # kv-head-major is head order
        self.projected = np.empty(arch.hidden_size, dtype=f32)
        self.up = np.empty(layer[4].shape[1], dtype=f32)
        inner = arch.intermediate_size
        self.gate, self.up_half = self.up[:inner], self.up[inner:]
        self.act = np.empty(inner, dtype=f32)
        self.keys_t = [keys.transpose(0, 2, 1) for keys in cache.keys]  # (kv_heads, head_dim, window)


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


def _mlp_parts(arch: Architecture, layer) -> tuple[list[tuple], tuple[np.ndarray, np.ndarray] | None]:
    """The MLP cut over its inner units for the threads of a decoding step: per part the
    (up, gate width, up bias, down) of :func:`_mlp_part`. Activations act unit by unit, so a
    part runs from its up columns through its down rows with no exchange between threads,
    and the parts' outputs are added in order. Empty: the MLP is too small to split.

    A split SwiGLU's up matrix (and bias) has its columns put in place on ``layer`` in the
    parts' order, each part's gate columns beside its up columns ([gate_A up_A gate_B up_B]),
    so that a part reads both with one product (measured 3-5 % faster steps on SmolLM's
    shape than two products over column views). The second value gives the prompt's path
    the (gate, up) column indices of that order (None: the checkpoint's order)."""
    inner = arch.intermediate_size
    up, bias, down = layer.up, layer.up_bias, layer.down
    ranges = split_range(inner, up.nbytes + down.nbytes)
    if len(ranges) < 2:
        return [], None
    columns = None
    if arch.mlp == "swiglu":
        order = np.concatenate([np.r_[a:b, inner + a : inner + b] for a, b in ranges])
        laid = np.empty_like(up)
        for first in range(0, len(order), 512):  # a few columns at a time: no second full copy
            laid[:, first : first + 512] = up[:, order[first : first + 512]]
        layer.up = up = laid
        if bias is not None:
            layer.up_bias = bias = bias[order]
        position = np.argsort(order)
        columns = (position[:inner], position[inner:])
    parts, first = [], 0
    for a, b in ranges:
        width = (b - a) * (1 if columns is None else 2)
        block = slice(first, first + width)
        parts.append((up[:, block], None if columns is None else b - a, None if bias is None else bias[block], down[a:b]))
        first += width
    return parts, columns


def _mlp_part(
    h: np.ndarray,
    up: np.ndarray,
    gated: int | None,
    up_bias: np.ndarray | None,
    down: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out`` = one part of the MLP's output for the normed vector ``h``: SwiGLU where
    ``gated`` (the part's units: ``up`` holds their gate columns, then their up columns),
    else GELU (tanh)."""
    u = h @ up
    if up_bias is not None:
        u += up_bias
    if gated is None:
        act = _gelu_tanh(u)
    else:
        g = u[:gated]
        act = expit(g)
        act *= g
        act *= u[gated:]
    np.matmul(act, down, out=out)


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
    """The (in, out) matrix in the memory order BLAS's one-thread matrix-vector product
    streams fastest, which depends on its shape: measured on GPT-2, SmolLM and the
    default model's shapes, a matrix with fewer outputs than inputs (the MLP's down
    projection) read ~20 % faster as dot products over (out, in) rows, a square or wider
    one 20-45 % faster as (in, out) rows. Shapes alone decide, so a model always gets
    the same results."""
    rows_out = matrix.shape[0] > matrix.shape[1]
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


# A forward call of several tokens cuts a product of at least this many multiply-adds in
# two column blocks that two threads share (see NumpyDecoder._linear_split). Below, the
# hand-over (~100-150 us on a busy 2-core machine) costs what sharing saves: measured on
# 64 tokens through the default model, its 256x256 and 256x512 matrices ran slower shared.
COLUMN_SPLIT_MACS = 1 << 24


class StepThreads:
    """Runs a forward call with NumPy's BLAS on one thread, then restores its count.

    Every BLAS call of the decoder runs on one thread, so that its sum, and so the bytes of
    a trace, do not depend on the thread count (OpenBLAS cuts a product between threads
    in ways that change its last digits: measured on the default model's MLP down
    projection for 5 tokens and more). A second core is still used where the pool had two
    or more threads: a single-token step's large products are cut into fixed blocks that
    the caller and a helper take in turn (see :mod:`.split`), and a call of several tokens
    cuts its large products in fixed column blocks the same way (see
    ``NumpyDecoder._linear_split``); a late helper costs only its share. One thread also
    suits a step: its products stream each weight once and do little arithmetic per byte,
    and on a 2-core machine with other work running a second BLAS thread is often
    descheduled and every product waits for it (measured on the default model, 84
    tokens/s with two threads against 384 with one).
    """

    def __init__(self) -> None:
        from threadpoolctl import ThreadpoolController

        pools = ThreadpoolController().select(user_api="blas").lib_controllers
        # NumPy's own BLAS (the one the model's products use), not SciPy's or torch's.
        self._pools = [p for p in pools if "numpy" in str(p.filepath)] or pools[:1]

    def __enter__(self) -> list[int]:
        """Returns the pools' thread counts before the call (the first is NumPy's)."""
        counts = [p.get_num_threads() for p in self._pools]
        for pool in self._pools:
            pool.set_num_threads(1)
        self._counts = counts
        return counts

    def __exit__(self, *exc: object) -> None:
        for pool, count in zip(self._pools, self._counts):
            pool.set_num_threads(count)


def _step_norm(x: np.ndarray, layernorm: bool, inv_n: float, eps: float) -> np.ndarray:
    """A decoding step's norm of one vector, without its gain and bias (folded into the next
    product): the scale as a Python float, one array operation instead of five."""
    if layernorm:
        centred = x - np.float32(float(np.add.reduce(x)) * inv_n)
        return centred * np.float32(1.0 / math.sqrt(float(np.dot(centred, centred)) * inv_n + eps))
    return x * np.float32(1.0 / math.sqrt(float(np.dot(x, x)) * inv_n + eps))


class NumpyDecoder:
    """One model's forward pass in NumPy; see :class:`sonify.model.backends.base.DecoderOutput`.

    BLAS runs on one thread (see :class:`StepThreads`); where the pool had more, a helper
    thread takes fixed blocks of the products, so the bytes are the same at any count."""

    name = "numpy"

    def __init__(self, arch: Architecture, weights: DecoderWeights, window: int):
        self.arch = arch
        self.weights = weights
        self.window = window
        self._norm = _layer_norm if arch.norm == "layernorm" else _rms_norm
        _fold_into_matrices(arch, weights)
        self.clock = no_clock  # a PhaseClock to profile (see sonify.model.profile)
        self.step_threads = StepThreads()
        # A step's large products, and a call's of several tokens, run in fixed column
        # blocks on the caller and (where BLAS was given 2+ threads) a helper (see split.py
        # and _linear_split); the blocks, not the threads, decide the sums.
        self._split = SplitProducts(helper=(os.cpu_count() or 1) > 1)
        self._share = False  # whether this step's products use the helper: BLAS was given 2+ threads
        # First: a split SwiGLU's up columns are put in its parts' order (the blocks view the result).
        self._mlp_parts, self._mlp_columns = zip(*(_mlp_parts(arch, layer) for layer in weights.layers))
        self._blocks = [
            {name: plan_blocks(getattr(layer, name)) for name in ("qkv", "out", "up", "down")} for layer in weights.layers
        ]
        self._head_blocks = plan_blocks(weights.lm_head, by_inputs=False)
        # What the helper reads into the cache after its share of a split job: after a
        # layer's q/k/v, the attention output's matrix; after its MLP, the next layer's.
        self._after_qkv, self._after_mlp = [], []
        for index, (layer, blocks) in enumerate(zip(weights.layers, self._blocks)):
            self._after_qkv.append(prefetches([(layer.out, blocks["out"])]))
            following = weights.layers[index + 1 : index + 2]
            self._after_mlp.append(
                prefetches([(getattr(nxt, n), self._blocks[index + 1][n]) for nxt in following for n in ("qkv", "out")])
            )
        self._key_positions = np.arange(window, dtype=np.float32)
        if arch.position == "rope":
            cos, sin = rope_tables(arch.inv_freq(), window)
            self._cos, self._sin = np.concatenate([cos, cos], axis=1), np.concatenate([-sin, sin], axis=1)
            half = arch.head_dim // 2
            self._swap_halves = np.r_[half : arch.head_dim, 0:half]
            self._cos3 = self._cos.reshape(window, 2, half)
            self._sin3 = self._sin.reshape(window, 2, half)
        # A model whose products are all one BLAS call (none is split between threads)
        # steps through _small_step: per layer (qkv, qkv bias, out, out bias, up, up bias,
        # down, down bias).
        unsplit = not any(self._mlp_parts) and len(self._head_blocks.parts) == 1
        unsplit = unsplit and all(len(b.parts) == 1 for blocks in self._blocks for b in blocks.values())
        self._small_layers = (
            [(ly.qkv, ly.qkv_bias, ly.out, ly.out_bias, ly.up, ly.up_bias, ly.down, ly.down_bias) for ly in weights.layers]
            if unsplit
            else None
        )

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
        n_tok = len(token_ids)
        if cache.length + n_tok > self.window:
            raise ValueError(f"{cache.length + n_tok} tokens exceed the window of {self.window}")
        with self.step_threads as counts:
            self._share = bool(counts) and counts[0] > 1
            return self._forward(token_ids, cache, details)

    def _linear_split(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        """:func:`_linear` for several tokens: a product of at least ``COLUMN_SPLIT_MACS``
        multiply-adds in two fixed column blocks of ``w`` (edges on whole SIMD widths), each
        one single-threaded BLAS call that the caller or the helper takes. The blocks depend
        on the shapes alone, so a column's sum is the same whichever thread made it."""
        n, outputs = x.shape[0], w.shape[1]
        edge = round(outputs / 2 / ALIGN) * ALIGN
        if n * w.shape[0] * outputs < COLUMN_SPLIT_MACS or not 0 < edge < outputs:
            return _linear(x, w, bias)
        y = np.empty((n, outputs), dtype=np.float32)
        self._split.run(
            [partial_call(np.matmul, x, w[:, :edge], out=y[:, :edge]), partial_call(np.matmul, x, w[:, edge:], out=y[:, edge:])],
            self._share,
        )
        if bias is not None:
            y += bias
        return y

    def _forward(self, token_ids: np.ndarray, cache: KVCache, details: bool) -> DecoderOutput:
        if len(token_ids) == 1:
            if self._small_layers is not None:
                return self._small_step(int(token_ids[0]), cache, details)
            return self._step(int(token_ids[0]), cache, details)
        arch, w = self.arch, self.weights
        n_tok, start = len(token_ids), cache.length
        end = start + n_tok
        heads, kv_heads, hd = arch.num_heads, arch.num_kv_heads, arch.head_dim
        rep, eps = heads // kv_heads, arch.norm_eps
        q_end, k_end = heads * hd, (heads + kv_heads) * hd

        lap = self.clock
        _linear = self._linear_split  # every product below in fixed column blocks (the module's _linear per block)
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
                columns = self._mlp_columns[layer_index]  # a split MLP's up columns are in its parts' order
                if columns is None:
                    gate, up = u[:, : arch.intermediate_size], u[:, arch.intermediate_size :]
                else:
                    gate, up = u[:, columns[0]], u[:, columns[1]]
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

    def _step(self, token: int, cache: KVCache, details: bool) -> DecoderOutput:
        """:meth:`forward` for one token: the same computation on vectors, with the
        per-layer work cut to a few array operations (on a small model the step is
        mostly Python's time per operation, not arithmetic)."""
        arch, w = self.arch, self.weights
        pos = cache.length
        end = pos + 1
        heads, kv_heads, hd = arch.num_heads, arch.num_kv_heads, arch.head_dim
        rep, eps, inv_n = heads // kv_heads, arch.norm_eps, 1.0 / arch.hidden_size
        k_end = (heads + kv_heads) * hd
        layernorm, rope, swiglu = arch.norm == "layernorm", arch.position == "rope", arch.mlp == "swiglu"
        inner = arch.intermediate_size

        lap = self.clock
        split, run, share = self._split.matvec, self._split.run, self._share

        def matvec(v: np.ndarray, blocks: Blocks) -> np.ndarray:
            return split(v, blocks, share)

        residuals = np.empty((arch.num_layers + 1, 1, arch.hidden_size), dtype=np.float32)
        x = residuals[0, 0]
        np.copyto(x, w.embed[token])
        if w.positions is not None:
            x += w.positions[pos]
        probs = np.empty((arch.num_layers, heads, 1, end), dtype=np.float32)
        if rope:
            cos, sin = self._cos[pos], self._sin[pos]
        lap("embed")

        for layer_index, (layer, blocks) in enumerate(zip(w.layers, self._blocks)):
            h = _step_norm(x, layernorm, inv_n, eps)  # gain and bias are folded into layer.qkv
            lap("norms")
            qkv = split(h, blocks["qkv"], share, self._after_qkv[layer_index])
            if layer.qkv_bias is not None:
                qkv += layer.qkv_bias
            lap("qkv")
            qk = qkv[:k_end].reshape(heads + kv_heads, hd)
            if rope:  # queries and keys rotated together, in one call
                qk = qk * cos + qk[:, self._swap_halves] * sin
            keys, values = cache.keys[layer_index], cache.values[layer_index]
            keys[:, pos] = qk[heads:]
            values[:, pos] = qkv[k_end:].reshape(kv_heads, hd)
            p = probs[layer_index].reshape(kv_heads, rep, end)
            np.matmul(qk[:heads].reshape(kv_heads, rep, hd), keys[:, :end].transpose(0, 2, 1), out=p)
            p -= np.maximum.reduce(p, axis=-1, keepdims=True)  # the ufunc: ndarray.max costs more Python
            np.exp(p, out=p)
            p /= np.add.reduce(p, axis=-1, keepdims=True)
            attended = (p @ values[:, :end]).reshape(heads * hd)  # kv-head-major is head order
            lap("attention")
            x = np.add(x, matvec(attended, blocks["out"]), out=residuals[layer_index + 1, 0])  # the next residual
            if layer.out_bias is not None:
                x += layer.out_bias
            lap("out proj")
            h = _step_norm(x, layernorm, inv_n, eps)  # folded into layer.up
            lap("norms")
            parts = self._mlp_parts[layer_index]
            if parts:  # each thread its share of the inner units, from up through down
                partial = np.empty((len(parts), arch.hidden_size), dtype=np.float32)
                run(
                    [partial_call(_mlp_part, h, *part, partial[i]) for i, part in enumerate(parts)],
                    share,
                    self._after_mlp[layer_index],
                )
                x += sum_rows(partial)
                if layer.down_bias is not None:
                    x += layer.down_bias
                lap("mlp")
                continue
            u = matvec(h, blocks["up"])
            if layer.up_bias is not None:
                u += layer.up_bias
            lap("mlp up")
            if swiglu:
                gate = u[:inner]
                act = expit(gate)
                act *= gate
                act *= u[inner:]
            else:
                act = _gelu_tanh(u)
            lap("mlp act")
            x += matvec(act, blocks["down"])
            if layer.down_bias is not None:
                x += layer.down_bias
            lap("mlp down")
        cache.length = end

        final = self._norm(residuals[-1], w.final_norm, w.final_norm_bias, eps)
        logits = matvec(final[0], self._head_blocks)[None]
        lap("head")

        out = self._telemetry(logits, final, probs[..., 0, :], None, residuals[:, 0], pos)
        lap("telemetry")
        if details:
            out.attention, out.hidden_states = probs, residuals
        return out

    def _small_step(self, token: int, cache: KVCache, details: bool) -> DecoderOutput:
        """:meth:`_step` for a model none of whose products is split between threads (one
        of a few MB): the same sums in the same order, with the per-layer work cut to the
        array operations themselves. Every vector is written into a buffer made once per
        cache, through views made with it, so a layer costs ~25 NumPy calls and no
        reshapes: on such a model a step's time beside its products is NumPy's time per
        call (measured 2-3 us each in a step, against under 1 us in a loop of its own, as
        each product streams the cache's contents out)."""
        arch, w = self.arch, self.weights
        pos = cache.length
        end = pos + 1
        layers, heads, kv_heads = arch.num_layers, arch.num_heads, arch.num_kv_heads
        eps, inv_n = arch.norm_eps, 1.0 / arch.hidden_size
        layernorm, rope, swiglu = arch.norm == "layernorm", arch.position == "rope", arch.mlp == "swiglu"
        buffers = getattr(cache, "step_buffers", None)
        if buffers is None:
            buffers = cache.step_buffers = _StepBuffers(arch, self._small_layers, cache)
        qkv, projected, up, act = buffers.qkv, buffers.projected, buffers.up, buffers.act
        q, k = (buffers.q_rotated, buffers.k_rotated) if rope else (buffers.q, buffers.k)
        v, attended, attended_flat = buffers.v, buffers.attended, buffers.attended_flat
        matmul, multiply, exp = np.matmul, np.multiply, np.exp
        lap = self.clock

        residuals = np.empty((layers + 1, arch.hidden_size), dtype=np.float32)
        x = residuals[0]
        np.copyto(x, w.embed[token])
        if w.positions is not None:
            x += w.positions[pos]
        probs = np.empty((layers, kv_heads, heads // kv_heads, end), dtype=np.float32)
        # Each softmax's sum: its largest weight is exp(0) / sum, so the focus is 1 / sum.
        sums = np.empty((layers, kv_heads, heads // kv_heads, 1), dtype=np.float32)
        if rope:
            cos, sin = self._cos3[pos], self._sin3[pos]
            qk3, swapped3, rotated3, product3 = buffers.qk3, buffers.swapped3, buffers.rotated3, buffers.product3
        lap("embed")

        for (w_qkv, b_qkv, w_out, b_out, w_up, b_up, w_down, b_down), x_next, p, total, keys, keys_t, values in zip(
            self._small_layers, residuals[1:], probs, sums, cache.keys, buffers.keys_t, cache.values
        ):
            h = _step_norm(x, layernorm, inv_n, eps)  # gain and bias are folded into the qkv weights
            lap("norms")
            matmul(h, w_qkv, out=qkv)
            if b_qkv is not None:
                qkv += b_qkv
            lap("qkv")
            if rope:  # queries and keys rotated together: x * [cos, cos] + [x2, x1] * [-sin, sin]
                multiply(qk3, cos, out=rotated3)
                multiply(swapped3, sin, out=product3)
                rotated3 += product3
            keys[:, pos] = k
            values[:, pos] = v
            matmul(q, keys_t[:, :, :end], out=p)  # the 1/sqrt(d) scale is in the queries
            p -= np.maximum.reduce(p, axis=-1, keepdims=True)
            exp(p, out=p)
            p /= np.add.reduce(p, axis=-1, keepdims=True, out=total)
            matmul(p, values[:, :end], out=attended)
            lap("attention")
            matmul(attended_flat, w_out, out=projected)
            x = np.add(x, projected, out=x_next)  # the next residual
            if b_out is not None:
                x += b_out
            lap("out proj")
            h = _step_norm(x, layernorm, inv_n, eps)  # folded into the up weights
            lap("norms")
            matmul(h, w_up, out=up)
            if b_up is not None:
                up += b_up
            lap("mlp up")
            if swiglu:
                expit(buffers.gate, out=act)
                act *= buffers.gate
                act *= buffers.up_half
                activated = act
            else:
                activated = _gelu_tanh(up)
            lap("mlp act")
            x += matmul(activated, w_down, out=projected)
            if b_down is not None:
                x += b_down
            lap("mlp down")
        cache.length = end

        final = self._norm(residuals[-1:], w.final_norm, w.final_norm_bias, eps)
        logits = (final[0] @ w.lm_head)[None]
        lap("head")
        out = self._telemetry(logits, final, probs.reshape(layers, heads, end), sums.reshape(layers, heads), residuals, pos)
        lap("telemetry")
        if details:
            out.attention, out.hidden_states = probs.reshape(layers, heads, 1, end), residuals[:, None]
        return out

    def _telemetry(
        self, logits: np.ndarray, final: np.ndarray, visible: np.ndarray, sums: np.ndarray, residuals: np.ndarray, pos: int
    ) -> DecoderOutput:
        """A step's output, its telemetry reduced over all layers and heads at once from
        its attention weights ``visible`` (layers, heads, keys), their softmax's sums
        (layers, heads; None: the largest weights are looked up) and the residual stream
        (layers + 1, hidden). The three head
        summaries are rows of one array, the two layer summaries of another."""
        end = pos + 1
        summaries = np.empty((3, *visible.shape[:2]), dtype=np.float32)  # entropy, distance, focus
        attention_entropy(visible, out=summaries[0])
        summaries[0] *= np.float32(1.0 / math.log(end) if end > 1 else 1.0)
        np.matmul(visible, self._key_positions[:end], out=summaries[1])
        np.subtract(np.float32(pos), summaries[1], out=summaries[1])
        if sums is None:
            np.maximum.reduce(visible, axis=-1, out=summaries[2])
        else:
            np.divide(np.float32(1.0), sums, out=summaries[2])  # the largest weight, exp(0) / sum
        after = residuals[1:]
        norms = np.empty((2, len(after)), dtype=np.float32)  # after each layer, and of its update
        np.vecdot(after, after, out=norms[0])
        update = after - residuals[:-1]
        np.vecdot(update, update, out=norms[1])
        np.sqrt(norms, out=norms)
        summaries, norms = summaries[..., None], norms[..., None]
        return DecoderOutput(
            logits=logits,
            final_hidden=final,
            head_entropy=summaries[0],
            head_distance=summaries[1],
            head_focus=summaries[2],
            layer_norm=norms[0],
            layer_update=norms[1],
        )
