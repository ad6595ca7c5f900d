"""The canonical decoder every family is mapped onto, and helpers the families share.

Each family file reads its own ``config.json`` keys and weight names and produces an
:class:`Architecture` plus :class:`DecoderWeights`; each backend implements this one
decoder. Linear weights are stored as (in, out) so that ``x @ w`` applies them, and the
query/key/value and gate/up projections are fused into one matrix each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from ...errors import SonifyError
from ..checkpoint import CheckpointTensors
from ..quantized import QuantizedLinear


@dataclass(frozen=True)
class Architecture:
    """Shape and options of a pre-norm decoder-only transformer."""

    family: str
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    max_positions: int
    norm: Literal["layernorm", "rmsnorm"]
    norm_eps: float
    position: Literal["learned", "rope"]
    mlp: Literal["gelu_tanh", "swiglu"]
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] = ()

    def inv_freq(self) -> np.ndarray:
        """RoPE inverse frequencies (float64), with the checkpoint's scaling applied."""
        base = 1.0 / (self.rope_theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        return scale_inv_freq(base, dict(self.rope_scaling))


@dataclass
class LayerWeights:
    """One block. Biases are ``None`` where the family has none."""

    attn_norm: np.ndarray
    attn_norm_bias: np.ndarray | None
    qkv: np.ndarray  # (hidden, (heads + 2 * kv_heads) * head_dim)
    qkv_bias: np.ndarray | None
    out: np.ndarray  # (heads * head_dim, hidden)
    out_bias: np.ndarray | None
    mlp_norm: np.ndarray
    mlp_norm_bias: np.ndarray | None
    up: np.ndarray  # (hidden, intermediate) for GELU; (hidden, 2 * intermediate) gate|up for SwiGLU
    up_bias: np.ndarray | None
    down: np.ndarray  # (intermediate, hidden)
    down_bias: np.ndarray | None


@dataclass
class DecoderWeights:
    embed: np.ndarray  # (vocab, hidden)
    positions: np.ndarray | None  # (max_positions, hidden) for learned positions
    layers: list[LayerWeights]
    final_norm: np.ndarray
    final_norm_bias: np.ndarray | None
    lm_head: np.ndarray  # (hidden, vocab); a transposed view of ``embed`` when tied

    def nbytes(self) -> int:
        """Bytes a decoding step streams from memory: every layer weight and the output head.

        The embedding table counts only through the head (a step gathers one row of it).
        """
        total = self.lm_head.nbytes + self.final_norm.nbytes
        for layer in self.layers:
            total += sum(getattr(layer, f.name).nbytes for f in fields(layer) if getattr(layer, f.name) is not None)
        return total


def tied_head(tensors: CheckpointTensors, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(embed, lm_head) sharing one copy of the tied table ``name``: the head C-contiguous
    (hidden, vocab), the embedding table its transposed view. Decoding streams the head
    every token, and a contiguous (in, out) matrix is what the matrix-vector product reads
    fastest; lookups are a few rows. Converted block by block, never held twice."""
    head = tensors.transposed(name)
    return head.T, head


def fused_linear(tensors: CheckpointTensors, names: list[str]) -> np.ndarray | QuantizedLinear:
    """(out, in) projections side by side as one C-contiguous (in, sum of outs) float32
    matrix (q|k|v, gate|up), each written straight into its columns; kept quantized
    instead when all of them are and the backend computes on them natively. One name:
    that weight as :meth:`CheckpointTensors.linear` gives it (no copy)."""
    if len(names) == 1:
        return tensors.linear(names[0])
    quantized = [tensors.quantized(n) if tensors.is_quantized(n) else None for n in names]
    if tensors.keep_quantized and all(q is not None for q in quantized):
        return QuantizedLinear.stack(quantized)
    shapes = [(q.out_features, q.in_features) if q is not None else tensors.shape(n) for q, n in zip(quantized, names)]
    fused = np.empty((shapes[0][1], sum(width for width, _ in shapes)), dtype=np.float32)
    column = 0
    for q, name, (width, _) in zip(quantized, names, shapes):
        block = fused[:, column : column + width]
        if q is not None:
            block[...] = q.dequantize().T
        else:
            tensors.transposed(name, out=block)
        column += width
    return fused


def config_value(config: dict, key: str, kind: type, default: Any = ..., *, where: str = "config.json") -> Any:
    """Read one config key, with a clear error when it is missing or of the wrong type."""
    if key not in config or config[key] is None:
        if default is ...:
            raise SonifyError(f"{where} has no {key!r}; the checkpoint's config is incomplete")
        return default
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SonifyError(f"{where}: {key!r} is {value!r}, expected {kind.__name__}")
    return value


def token_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def scale_inv_freq(inv_freq: np.ndarray, scaling: dict) -> np.ndarray:
    """Apply a checkpoint's ``rope_scaling`` to RoPE inverse frequencies."""
    kind = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_context = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_context / high) & (wavelen <= old_context / low)
        return np.where(medium, smoothed, scaled)
    raise SonifyError(f"config.json: rope scaling type {kind!r} is not supported (supported: default, linear, llama3)")


def linear_shape(weight: object) -> tuple[int, ...]:
    """(in, out) of a dense (in, out) array or of a quantized (out, in) weight."""
    if isinstance(weight, QuantizedLinear):
        return (weight.in_features, weight.out_features)
    return weight.shape


def check_shapes(arch: Architecture, weights: DecoderWeights, folder: object) -> None:
    """Reject weights whose shapes disagree with config.json, naming the first mismatch."""
    d, hd, inner = arch.hidden_size, arch.head_dim, arch.intermediate_size
    qkv = (arch.num_heads + 2 * arch.num_kv_heads) * hd
    up = 2 * inner if arch.mlp == "swiglu" else inner
    embed_shape = (d, arch.vocab_size) if isinstance(weights.embed, QuantizedLinear) else (arch.vocab_size, d)
    expected = {"embed": (weights.embed, embed_shape), "lm_head": (weights.lm_head, (d, arch.vocab_size))}
    if weights.positions is not None:
        expected["positions"] = (weights.positions[: arch.max_positions], (arch.max_positions, d))
    for i, layer in enumerate(weights.layers):
        expected[f"layer {i} qkv"] = (layer.qkv, (d, qkv))
        expected[f"layer {i} out"] = (layer.out, (arch.num_heads * hd, d))
        expected[f"layer {i} up"] = (layer.up, (d, up))
        expected[f"layer {i} down"] = (layer.down, (inner, d))
    for name, (array, shape) in expected.items():
        if linear_shape(array) != shape:
            raise SonifyError(
                f"{folder}: {name} weight has shape {array.shape}, config.json implies {shape}; config and weights do not match"
            )
