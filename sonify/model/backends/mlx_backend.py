"""The decoder in MLX: the same computation as the NumPy backend, on Apple Silicon's GPU.

Attention is explicit (MLX's fused ``scaled_dot_product_attention`` hides the weights),
and the telemetry is reduced on the device: only the per-token summaries and the logits
are copied back. MLX-quantized weights are used natively through ``quantized_matmul``.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..families.common import Architecture, DecoderWeights
from ..quantized import QuantizedLinear
from .base import DecoderOutput, causal_mask, rope_tables


class MlxKVCache:
    """Per-layer keys and values (kv_heads, window, head_dim), updated in place."""

    def __init__(self, arch: Architecture, window: int):
        shape = (arch.num_kv_heads, window, arch.head_dim)
        self.keys = [mx.zeros(shape, dtype=mx.float32) for _ in range(arch.num_layers)]
        self.values = [mx.zeros(shape, dtype=mx.float32) for _ in range(arch.num_layers)]
        self.length = 0

    def reset(self) -> None:
        self.length = 0


class _Linear:
    """A weight applied as ``x @ W``: dense (in, out), or MLX-quantized (out, in)."""

    def __init__(self, weight: np.ndarray | QuantizedLinear):
        self.quantized = isinstance(weight, QuantizedLinear)
        if self.quantized:
            self.packed = mx.array(weight.packed)
            self.scales = mx.array(weight.scales)
            self.biases = mx.array(weight.biases)
            self.group_size, self.bits = weight.group_size, weight.bits
        else:
            self.weight = mx.array(np.ascontiguousarray(weight, dtype=np.float32))

    def __call__(self, x: mx.array) -> mx.array:
        if self.quantized:
            return mx.quantized_matmul(
                x, self.packed, self.scales, self.biases, transpose=True, group_size=self.group_size, bits=self.bits
            )
        return x @ self.weight

    def rows(self, ids: mx.array) -> mx.array:
        """Rows of an embedding table stored as this weight (quantized: (vocab, hidden))."""
        if self.quantized:
            return mx.dequantize(self.packed[ids], self.scales[ids], self.biases[ids], group_size=self.group_size, bits=self.bits)
        return self.weight[ids]


def _optional(array: np.ndarray | None) -> mx.array | None:
    return None if array is None else mx.array(array)


class MlxDecoder:
    """One model's forward pass in MLX; see :class:`sonify.model.backends.base.DecoderOutput`."""

    name = "mlx"

    def __init__(self, arch: Architecture, weights: DecoderWeights, window: int):
        self.arch = arch
        self.weights = weights
        self.window = window
        self._embed = _Linear(weights.embed)
        tied = isinstance(weights.lm_head, np.ndarray) and np.shares_memory(weights.lm_head, weights.embed)
        if tied:
            self._head = lambda x: x @ self._embed.weight.T
        elif weights.lm_head is weights.embed:  # tied and quantized: (vocab, hidden), applied transposed
            self._head = self._embed
        else:
            self._head = _Linear(weights.lm_head)
        self._positions = _optional(weights.positions)
        self._final = (mx.array(weights.final_norm), _optional(weights.final_norm_bias))
        self._layers = [
            dict(
                attn_norm=(mx.array(layer.attn_norm), _optional(layer.attn_norm_bias)),
                qkv=_Linear(layer.qkv),
                qkv_bias=_optional(layer.qkv_bias),
                out=_Linear(layer.out),
                out_bias=_optional(layer.out_bias),
                mlp_norm=(mx.array(layer.mlp_norm), _optional(layer.mlp_norm_bias)),
                up=_Linear(layer.up),
                up_bias=_optional(layer.up_bias),
                down=_Linear(layer.down),
                down_bias=_optional(layer.down_bias),
            )
            for layer in weights.layers
        ]
        self._scale = 1.0 / math.sqrt(arch.head_dim)
        if arch.position == "rope":
            self._cos, self._sin = (mx.array(t) for t in rope_tables(arch.inv_freq(), window))
        self._key_index = mx.arange(window, dtype=mx.float32)

    def new_cache(self) -> MlxKVCache:
        return MlxKVCache(self.arch, self.window)

    def _norm(self, x: mx.array, params: tuple[mx.array, mx.array | None]) -> mx.array:
        weight, bias = params
        if self.arch.norm == "layernorm":
            centred = x - x.mean(-1, keepdims=True)
            out = centred * mx.rsqrt((centred * centred).mean(-1, keepdims=True) + self.arch.norm_eps) * weight
            return out + bias if bias is not None else out
        return x * mx.rsqrt((x * x).mean(-1, keepdims=True) + self.arch.norm_eps) * weight

    def _rope(self, x: mx.array, start: int) -> mx.array:
        t, half = x.shape[0], x.shape[-1] // 2
        cos = self._cos[start : start + t][:, None, :]
        sin = self._sin[start : start + t][:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return mx.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def forward(self, token_ids: np.ndarray, cache: MlxKVCache, details: bool = False) -> DecoderOutput:
        """Run ``token_ids`` (appended after the cached tokens) through the model."""
        arch = self.arch
        n_tok, start = len(token_ids), cache.length
        end = start + n_tok
        if end > self.window:
            raise ValueError(f"{end} tokens exceed the window of {self.window}")
        heads, kv_heads, hd = arch.num_heads, arch.num_kv_heads, arch.head_dim
        rep = heads // kv_heads
        q_end, k_end = heads * hd, (heads + kv_heads) * hd

        x = self._embed.rows(mx.array(np.asarray(token_ids, dtype=np.int32)))
        if self._positions is not None:
            x = x + self._positions[start:end]
        residuals, probs = [x], []
        mask = None
        if n_tok > 1:
            mask = mx.array(causal_mask(start, n_tok, rep))

        for index, layer in enumerate(self._layers):
            h = self._norm(x, layer["attn_norm"])
            qkv = layer["qkv"](h)
            if layer["qkv_bias"] is not None:
                qkv = qkv + layer["qkv_bias"]
            if arch.position == "rope":
                qk = self._rope(qkv[:, :k_end].reshape(n_tok, heads + kv_heads, hd), start)
                q, k = qk[:, :heads], qk[:, heads:]
            else:
                q = qkv[:, :q_end].reshape(n_tok, heads, hd)
                k = qkv[:, q_end:k_end].reshape(n_tok, kv_heads, hd)
            v = qkv[:, k_end:].reshape(n_tok, kv_heads, hd)
            cache.keys[index][:, start:end, :] = k.transpose(1, 0, 2)
            cache.values[index][:, start:end, :] = v.transpose(1, 0, 2)
            keys, values = cache.keys[index][:, :end, :], cache.values[index][:, :end, :]
            grouped_q = q.transpose(1, 0, 2).reshape(kv_heads, rep * n_tok, hd)
            scores = (grouped_q @ keys.transpose(0, 2, 1)) * self._scale
            if mask is not None:
                scores = scores + mask
            p = mx.softmax(scores, axis=-1, precise=True)
            probs.append(p.reshape(heads, n_tok, end))
            attended = (p @ values).reshape(heads, n_tok, hd).transpose(1, 0, 2).reshape(n_tok, heads * hd)
            x = x + layer["out"](attended)
            if layer["out_bias"] is not None:
                x = x + layer["out_bias"]
            h = self._norm(x, layer["mlp_norm"])
            u = layer["up"](h)
            if layer["up_bias"] is not None:
                u = u + layer["up_bias"]
            if arch.mlp == "swiglu":
                gate, up = u[:, : arch.intermediate_size], u[:, arch.intermediate_size :]
                act = gate * mx.sigmoid(gate) * up
            else:
                act = 0.5 * u * (1.0 + mx.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u * u * u)))
            x = x + layer["down"](act)
            if layer["down_bias"] is not None:
                x = x + layer["down_bias"]
            residuals.append(x)
        cache.length = end

        final = self._norm(x, self._final)
        logits = self._head(final)

        # Telemetry reduced on the device: (layers, heads, tokens).
        stacked = mx.stack(probs)
        positions = mx.arange(start, end, dtype=mx.float32)
        visible = positions + 1.0
        norm_by = mx.where(visible > 1, mx.log(visible), 1.0)
        plogp = mx.where(stacked > 0, stacked * mx.log(mx.maximum(stacked, 1e-38)), 0.0)
        head_entropy = -plogp.sum(-1) / norm_by
        head_distance = positions - (stacked * self._key_index[:end]).sum(-1)
        head_focus = stacked.max(-1)
        layer_stack = mx.stack(residuals)
        norms = mx.linalg.norm(layer_stack, axis=-1)
        updates = mx.linalg.norm(layer_stack[1:] - layer_stack[:-1], axis=-1)
        outputs = [logits, final, head_entropy, head_distance, head_focus, norms, updates]
        if details:
            outputs += [stacked, layer_stack]
        mx.eval(*outputs, *cache.keys, *cache.values)
        arrays = [np.array(a) for a in outputs]
        return DecoderOutput(
            logits=arrays[0],
            final_hidden=arrays[1],
            head_entropy=arrays[2],
            head_distance=arrays[3],
            head_focus=arrays[4],
            layer_norm=arrays[5][1:],
            layer_update=arrays[6],
            attention=arrays[7] if details else None,
            hidden_states=arrays[8] if details else None,
        )
