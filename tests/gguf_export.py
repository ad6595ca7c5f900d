"""Write a Llama-family safetensors checkpoint (the shipped default model) as a GGUF file,
so that llama.cpp's server can serve the very same weights the in-process engine runs.

What llama.cpp expects, as its own converter (convert_hf_to_gguf.py) writes it: tensors
renamed (``model.layers.0.self_attn.q_proj.weight`` → ``blk.0.attn_q.weight``), the query and
key projections permuted from Hugging Face's rotate-half layout to interleaved pairs, 1-D
tensors in float32, and the byte-level BPE tokenizer (tokens, types, merges, special ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Rotate-half → interleaved RoPE layout, per head (llama.cpp's converter does the same)."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def gguf_name(name: str) -> str | None:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")
    if parts[:2] == ["model", "layers"] and parts[-1] == "weight":
        key = ".".join(parts[3:-1])
        if key in NAMES:
            return f"blk.{parts[2]}.{NAMES[key]}.weight"
    return None


def export_gguf(folder: Path, out: Path) -> Path:
    """Write ``folder`` (config.json, model.safetensors, tokenizer.json) as the GGUF file ``out``."""
    import gguf
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim", config["hidden_size"] // heads)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(folder.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    rope = config.get("rope_parameters") or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _add_tokenizer(writer, tokenizer, config)
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        for name in sorted(f.keys()):
            target = gguf_name(name)
            if target is None:
                raise ValueError(f"no GGUF name for tensor {name}")
            data = f.get_tensor(name)
            if target.endswith("attn_q.weight"):
                data = permute(data, heads)
            elif target.endswith("attn_k.weight"):
                data = permute(data, kv_heads)
            data = data.astype(np.float32) if data.ndim == 1 else data.astype(np.float16)
            writer.add_tensor(target, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _add_tokenizer(writer, tokenizer: dict, config: dict) -> None:
    import gguf

    vocab = tokenizer["model"]["vocab"]
    size = config["vocab_size"]
    tokens = [""] * size
    for text, index in vocab.items():
        tokens[index] = text
    types = [gguf.TokenType.NORMAL] * size
    for added in tokenizer.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    for i, text in enumerate(tokens):
        if not text:
            tokens[i], types[i] = f"[PAD{i}]", gguf.TokenType.UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
