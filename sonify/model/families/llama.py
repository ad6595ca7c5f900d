"""Llama and the families that share its shape: Llama 2/3, SmolLM, TinyLlama, Mistral, Qwen2.

RMSNorm, rotary positions (with ``rope_scaling``), SwiGLU MLP, grouped-query attention,
tied or untied embeddings. Qwen2 adds biases to the query/key/value projections;
Llama's ``attention_bias`` and ``mlp_bias`` are honoured as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SonifyError
from ..checkpoint import CheckpointTensors
from ..quantized import QuantizedLinear
from .common import Architecture, DecoderWeights, LayerWeights, config_value, fused_linear, tied_head, token_ids

# model_type -> (q/k/v biases by default, tied embeddings by default)
MODEL_TYPES = {
    "llama": (False, False),
    "mistral": (False, False),
    "qwen2": (True, False),
}


@dataclass(frozen=True)
class ModelArgs:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]

    @classmethod
    def from_config(cls, config: dict) -> ModelArgs:
        model_type = config.get("model_type", "llama")
        qkv_default, tie_default = MODEL_TYPES[model_type]
        act = config.get("hidden_act", "silu")
        if act != "silu":
            raise SonifyError(f"config.json: activation {act!r} is not supported for {model_type} (supported: silu)")
        # transformers 5 writes RoPE settings under "rope_parameters"; older files use top-level keys.
        rope = config.get("rope_parameters") or {}
        scaling = dict(config.get("rope_scaling") or {})
        if rope.get("rope_type", "default") != "default":
            scaling = {**rope, **scaling}
        theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        hidden = config_value(config, "hidden_size", int)
        heads = config_value(config, "num_attention_heads", int)
        attention_bias = bool(config.get("attention_bias", False))
        max_positions = config_value(config, "max_position_embeddings", int, 2048)
        window = config.get("sliding_window")
        if model_type == "mistral" and isinstance(window, int) and window > 0:
            max_positions = min(max_positions, window)  # beyond it Mistral attends to a window only
        return cls(
            model_type=model_type,
            vocab_size=config_value(config, "vocab_size", int),
            hidden_size=hidden,
            intermediate_size=config_value(config, "intermediate_size", int),
            num_hidden_layers=config_value(config, "num_hidden_layers", int),
            num_attention_heads=heads,
            num_key_value_heads=config_value(config, "num_key_value_heads", int, heads),
            head_dim=config_value(config, "head_dim", int, hidden // heads),
            max_position_embeddings=max_positions,
            rms_norm_eps=config_value(config, "rms_norm_eps", float, 1e-6),
            rope_theta=float(theta),
            rope_scaling=scaling,
            qkv_bias=qkv_default or attention_bias,
            o_bias=attention_bias,
            mlp_bias=bool(config.get("mlp_bias", False)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", tie_default)),
            bos_token_id=config.get("bos_token_id"),
            eos_token_ids=token_ids(config.get("eos_token_id")),
        )


def architecture(config: dict) -> Architecture:
    args = ModelArgs.from_config(config)
    if args.num_attention_heads % args.num_key_value_heads:
        raise SonifyError(
            f"config.json: num_attention_heads {args.num_attention_heads} is not a multiple of "
            f"num_key_value_heads {args.num_key_value_heads}"
        )
    arch = Architecture(
        family="llama",
        model_type=args.model_type,
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_hidden_layers,
        num_heads=args.num_attention_heads,
        num_kv_heads=args.num_key_value_heads,
        head_dim=args.head_dim,
        intermediate_size=args.intermediate_size,
        max_positions=args.max_position_embeddings,
        norm="rmsnorm",
        norm_eps=args.rms_norm_eps,
        position="rope",
        mlp="swiglu",
        bos_token_id=args.bos_token_id,
        eos_token_ids=args.eos_token_ids,
        rope_theta=args.rope_theta,
        rope_scaling=tuple(sorted(args.rope_scaling.items())),
    )
    arch.inv_freq()  # reject an unsupported rope scaling now, not at the first token
    return arch


def load_weights(arch: Architecture, tensors: CheckpointTensors, config: dict) -> DecoderWeights:
    args = ModelArgs.from_config(config)

    def fused(*names: str) -> np.ndarray | QuantizedLinear:
        return fused_linear(tensors, list(names))

    def bias(name: str, present: bool) -> np.ndarray | None:
        return tensors.get(name) if present or name in tensors else None

    layers = []
    for i in range(arch.num_layers):
        p = f"model.layers.{i}."
        a, m = p + "self_attn.", p + "mlp."
        biases = [bias(a + f"{n}_proj.bias", args.qkv_bias) for n in "qkv"]
        up_biases = [bias(m + f"{n}_proj.bias", args.mlp_bias) for n in ("gate", "up")]
        layers.append(
            LayerWeights(
                attn_norm=tensors.get(p + "input_layernorm.weight"),
                attn_norm_bias=None,
                qkv=fused(*(a + f"{n}_proj.weight" for n in "qkv")),
                qkv_bias=np.concatenate(biases) if all(b is not None for b in biases) else None,
                out=fused(a + "o_proj.weight"),
                out_bias=bias(a + "o_proj.bias", args.o_bias),
                mlp_norm=tensors.get(p + "post_attention_layernorm.weight"),
                mlp_norm_bias=None,
                up=fused(m + "gate_proj.weight", m + "up_proj.weight"),
                up_bias=np.concatenate(up_biases) if all(b is not None for b in up_biases) else None,
                down=fused(m + "down_proj.weight"),
                down_bias=bias(m + "down_proj.bias", args.mlp_bias),
            )
        )
    table = "model.embed_tokens.weight"
    if "lm_head.weight" in tensors and not args.tie_word_embeddings:
        embed, lm_head = tensors.embedding(table), tensors.linear("lm_head.weight", contiguous=True)
    elif tensors.keep_quantized and tensors.is_quantized(table):  # tied and quantized: (vocab, hidden), applied transposed
        embed = lm_head = tensors.embedding(table)
    else:
        embed, lm_head = tied_head(tensors, table)
    return DecoderWeights(
        embed=embed,
        positions=None,
        layers=layers,
        final_norm=tensors.get("model.norm.weight"),
        final_norm_bias=None,
        lm_head=lm_head,
    )
