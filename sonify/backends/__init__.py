"""Backends that run the canonical decoder. NumPy runs everywhere."""

from __future__ import annotations

from ..errors import SonifyError
from ..models.common import Architecture, DecoderWeights
from .base import DecoderOutput

BACKENDS = ("auto", "numpy")


def create_decoder(backend: str, arch: Architecture, weights: DecoderWeights, window: int):
    """The decoder for ``backend`` (``auto`` picks the best one available here)."""
    if backend in ("auto", "numpy"):
        from .numpy_backend import NumpyDecoder

        return NumpyDecoder(arch, weights, window)
    raise SonifyError(f"backend {backend!r} is not available (choose from: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "DecoderOutput", "create_decoder"]
