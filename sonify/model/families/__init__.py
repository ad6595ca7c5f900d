"""Model families, looked up by the ``model_type`` in a checkpoint's ``config.json``."""

from __future__ import annotations

from ...errors import SonifyError
from ..checkpoint import CheckpointTensors
from . import gpt2, llama
from .common import Architecture, DecoderWeights, LayerWeights, check_shapes

# model_type -> family module
REGISTRY = {"gpt2": gpt2, **{model_type: llama for model_type in llama.MODEL_TYPES}}


def family_for(config: dict, where: str = "config.json"):
    model_type = config.get("model_type")
    if model_type not in REGISTRY:
        supported = ", ".join(sorted(REGISTRY))
        raise SonifyError(f"{where}: model_type {model_type!r} is not supported (supported: {supported})")
    return REGISTRY[model_type]


def build_architecture(config: dict, where: str = "config.json") -> Architecture:
    return family_for(config, where).architecture(config)


def load_decoder_weights(arch: Architecture, tensors: CheckpointTensors, config: dict) -> DecoderWeights:
    weights = family_for(config).load_weights(arch, tensors, config)
    check_shapes(arch, weights, tensors.folder)
    return weights


__all__ = ["Architecture", "DecoderWeights", "LayerWeights", "REGISTRY", "build_architecture", "load_decoder_weights"]
