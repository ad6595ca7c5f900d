"""GPT-2: learned positions, LayerNorm, fused Conv1D attention, tanh-GELU MLP.

Accepts both key layouts found in the wild: the hub's original (``h.0.attn.c_attn.weight``)
and what ``transformers`` writes (``transformer.h.0...`` plus ``lm_head.weight``). GPT-2
stores its linear weights as Conv1D, already (in, out).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SonifyError
from ..checkpoint import CheckpointTensors
from .common import Architecture, DecoderWeights, LayerWeights, config_value, tied_head, token_ids


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int
    n_embd: int
    n_layer: int
    n_head: int
    n_positions: int
    n_inner: int
    layer_norm_epsilon: float
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]

    @classmethod
    def from_config(cls, config: dict) -> ModelArgs:
        act = config.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            raise SonifyError(f"config.json: GPT-2 activation {act!r} is not supported (supported: gelu_new)")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if config.get(flag):
                raise SonifyError(f"config.json: GPT-2 option {flag} is not supported; set it to false")
        n_embd = config_value(config, "n_embd", int)
        return cls(
            vocab_size=config_value(config, "vocab_size", int),
            n_embd=n_embd,
            n_layer=config_value(config, "n_layer", int),
            n_head=config_value(config, "n_head", int),
            n_positions=config_value(config, "n_positions", int, config.get("n_ctx", 1024)),
            n_inner=config_value(config, "n_inner", int, 4 * n_embd),
            layer_norm_epsilon=config_value(config, "layer_norm_epsilon", float, 1e-5),
            bos_token_id=config.get("bos_token_id"),
            eos_token_ids=token_ids(config.get("eos_token_id")),
        )


def architecture(config: dict) -> Architecture:
    args = ModelArgs.from_config(config)
    return Architecture(
        family="gpt2",
        model_type=config.get("model_type", "gpt2"),
        vocab_size=args.vocab_size,
        hidden_size=args.n_embd,
        num_layers=args.n_layer,
        num_heads=args.n_head,
        num_kv_heads=args.n_head,
        head_dim=args.n_embd // args.n_head,
        intermediate_size=args.n_inner,
        max_positions=args.n_positions,
        norm="layernorm",
        norm_eps=args.layer_norm_epsilon,
        position="learned",
        mlp="gelu_tanh",
        bos_token_id=args.bos_token_id,
        eos_token_ids=args.eos_token_ids,
    )


def load_weights(arch: Architecture, tensors: CheckpointTensors, config: dict) -> DecoderWeights:
    if tensors.quantization is not None:
        raise SonifyError(f"{tensors.folder}: quantized GPT-2 checkpoints are not supported; use the unquantized model")
    prefix = "transformer." if "transformer.wte.weight" in tensors else ""

    def get(name: str):
        return tensors.get(prefix + name)

    layers = []
    for i in range(arch.num_layers):
        p = f"h.{i}."
        layers.append(
            LayerWeights(
                attn_norm=get(p + "ln_1.weight"),
                attn_norm_bias=get(p + "ln_1.bias"),
                qkv=get(p + "attn.c_attn.weight"),
                qkv_bias=get(p + "attn.c_attn.bias"),
                out=get(p + "attn.c_proj.weight"),
                out_bias=get(p + "attn.c_proj.bias"),
                mlp_norm=get(p + "ln_2.weight"),
                mlp_norm_bias=get(p + "ln_2.bias"),
                up=get(p + "mlp.c_fc.weight"),
                up_bias=get(p + "mlp.c_fc.bias"),
                down=get(p + "mlp.c_proj.weight"),
                down_bias=get(p + "mlp.c_proj.bias"),
            )
        )
    if "lm_head.weight" in tensors:
        embed, lm_head = get("wte.weight"), tensors.transposed("lm_head.weight")
    else:
        embed, lm_head = tied_head(tensors, prefix + "wte.weight")
    return DecoderWeights(
        embed=embed,
        positions=get("wpe.weight"),
        layers=layers,
        final_norm=get("ln_f.weight"),
        final_norm_bias=get("ln_f.bias"),
        lm_head=lm_head,
    )
