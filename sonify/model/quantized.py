"""MLX-quantized weights, as the MLX community publishes them.

A quantized linear weight of logical shape (out, in) is stored as ``name.weight``
(uint32, each row a little-endian bit stream of ``bits``-wide integers), ``name.scales``
and ``name.biases`` (out, in / group_size): ``w = scales * q + biases`` per group along
the input axis. ``config.json`` names ``group_size`` and ``bits`` under ``quantization``
(or ``quantization_config``), with optional per-module overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SonifyError


@dataclass(frozen=True)
class QuantizedLinear:
    """A quantized (out, in) weight; ``x @ W.T`` in the checkpoint's orientation."""

    packed: np.ndarray  # uint32 (out, in * bits / 32)
    scales: np.ndarray  # float32 (out, in / group_size)
    biases: np.ndarray  # float32 (out, in / group_size)
    group_size: int
    bits: int

    @property
    def out_features(self) -> int:
        return self.packed.shape[0]

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes + self.scales.nbytes + self.biases.nbytes

    @property
    def in_features(self) -> int:
        return self.packed.shape[1] * 32 // self.bits

    def dequantize(self) -> np.ndarray:
        """The float32 (out, in) weight."""
        out, n_in = self.out_features, self.in_features
        stream = np.unpackbits(np.ascontiguousarray(self.packed).view(np.uint8), axis=-1, bitorder="little")
        values = stream.reshape(out, n_in, self.bits).astype(np.float32) @ (2.0 ** np.arange(self.bits, dtype=np.float32))
        groups = values.reshape(out, n_in // self.group_size, self.group_size)
        return (groups * self.scales[..., None] + self.biases[..., None]).reshape(out, n_in)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Dequantized rows (an embedding lookup)."""
        return QuantizedLinear(self.packed[ids], self.scales[ids], self.biases[ids], self.group_size, self.bits).dequantize()

    @staticmethod
    def stack(parts: list[QuantizedLinear]) -> QuantizedLinear:
        """Concatenate along the output axis (fused projections); all parts must agree."""
        if len({(p.group_size, p.bits, p.in_features) for p in parts}) != 1:
            raise SonifyError("fused projections are quantized differently; sonify cannot fuse them natively")
        return QuantizedLinear(
            np.concatenate([p.packed for p in parts]),
            np.concatenate([p.scales for p in parts]),
            np.concatenate([p.biases for p in parts]),
            parts[0].group_size,
            parts[0].bits,
        )


def quantization_settings(config: dict) -> dict | None:
    """The ``quantization`` block of config.json, validated, or None."""
    q = config.get("quantization") or config.get("quantization_config")
    if not q:
        return None
    if not isinstance(q, dict) or "group_size" not in q or "bits" not in q:
        if isinstance(q, dict) and "quant_method" in q:
            raise SonifyError(
                f"config.json: {q['quant_method']!r} quantization is not supported; use an MLX-quantized or unquantized checkpoint"
            )
        raise SonifyError("config.json: 'quantization' needs group_size and bits")
    if q.get("mode", "affine") != "affine":
        raise SonifyError(f"config.json: quantization mode {q['mode']!r} is not supported (supported: affine)")
    return q


def module_settings(settings: dict, module: str) -> tuple[int, int]:
    """(group_size, bits) for one module, honouring per-module overrides."""
    override = settings.get(module)
    if isinstance(override, dict):
        return int(override.get("group_size", settings["group_size"])), int(override.get("bits", settings["bits"]))
    return int(settings["group_size"]), int(settings["bits"])
