"""Backends that run the canonical decoder: NumPy everywhere, MLX on Apple Silicon."""

from __future__ import annotations

import platform
import sys

from ...errors import SonifyError
from ..families.common import Architecture, DecoderWeights
from .base import DecoderOutput

BACKENDS = ("auto", "numpy", "mlx")
MLX_INSTALL = "pip install mlx" if sys.platform == "darwin" else "pip install 'mlx[cpu]'"


def on_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def mlx_available() -> bool:
    try:
        import mlx.core  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str) -> str:
    """``numpy`` or ``mlx`` for what the user asked; ``auto`` is MLX on Apple Silicon when it imports."""
    if name == "auto":
        return "mlx" if on_apple_silicon() and mlx_available() else "numpy"
    if name == "mlx" and not mlx_available():
        raise SonifyError(f"the MLX backend needs the mlx package; install it with: {MLX_INSTALL}")
    if name not in BACKENDS:
        raise SonifyError(f"backend {name!r} is not available (choose from: {', '.join(BACKENDS)})")
    return name


def create_decoder(backend: str, arch: Architecture, weights: DecoderWeights, window: int, threads: int | None = None):
    """The decoder for a resolved backend name (see :func:`resolve_backend`); ``threads``:
    the BLAS thread count the caller set (NumPy's decoder runs each BLAS call on one
    thread and shares fixed blocks of its products between two where the count is 2 or
    more, see :class:`~sonify.model.backends.numpy_backend.StepThreads`)."""
    if resolve_backend(backend) == "mlx":
        from .mlx_backend import MlxDecoder

        return MlxDecoder(arch, weights, window)
    from .numpy_backend import NumpyDecoder

    return NumpyDecoder(arch, weights, window)


__all__ = ["BACKENDS", "DecoderOutput", "create_decoder", "mlx_available", "resolve_backend"]
