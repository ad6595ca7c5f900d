"""Model families, looked up by the ``model_type`` in a checkpoint's ``config.json``."""

from __future__ import annotations

import math

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


# config.json keys (of any family) that count something: whole numbers >= 1 where present.
COUNTS = (
    "vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer", "num_attention_heads", "n_head",
    "num_key_value_heads", "head_dim", "intermediate_size", "n_inner", "max_position_embeddings", "n_positions",
)  # fmt: skip
LIMIT = 10_000_000  # far beyond any model that fits a machine; larger is a corrupt file
POSITIVE_REALS = ("rope_theta",)
NON_NEGATIVE_REALS = ("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps")


def check_ranges(config: dict, where: str = "config.json") -> None:
    """Refuse a config.json whose numbers are out of range, naming the key, before any use."""
    for key in COUNTS:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMIT:
            raise SonifyError(f"{where}: {key!r} is {value!r}; it has to be a whole number in 1..{LIMIT}; fix or re-download it")
    for key, low_open in [(k, True) for k in POSITIVE_REALS] + [(k, False) for k in NON_NEGATIVE_REALS]:
        value = config.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (value <= 0 if low_open else value < 0):
            raise SonifyError(f"{where}: {key!r} is {value!r}; it has to be a finite number {'> 0' if low_open else '>= 0'}")
    for key in ("bos_token_id", "eos_token_id"):
        value = config.get(key)
        ids = value if isinstance(value, list) else [value]
        if value is not None and not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise SonifyError(f"{where}: {key!r} is {value!r}; it has to be a token id (a whole number >= 0) or a list of them")


def build_architecture(config: dict, where: str = "config.json") -> Architecture:
    check_ranges(config, where)
    arch = family_for(config, where).architecture(config)
    ids = [i for i in (arch.bos_token_id, *arch.eos_token_ids) if i is not None]
    if any(i >= arch.vocab_size for i in ids):
        raise SonifyError(f"{where}: token id {max(ids)} is beyond the vocabulary ({arch.vocab_size} tokens); fix or re-download it")
    return arch


def load_decoder_weights(arch: Architecture, tensors: CheckpointTensors, config: dict) -> DecoderWeights:
    weights = family_for(config).load_weights(arch, tensors, config)
    check_shapes(arch, weights, tensors.folder)
    return weights


__all__ = ["Architecture", "DecoderWeights", "LayerWeights", "REGISTRY", "build_architecture", "load_decoder_weights"]
