"""Our NumPy decoder against Hugging Face transformers (eager attention) on the same folders."""

import numpy as np
import pytest
import torch
from checkpoints import TEXT, load_reference

from sonify import Engine, load_model
from sonify.model.safetensors_io import SafetensorsFile

FAMILIES = {
    "gpt2": ("gpt2", {}),
    "llama-gqa-untied": ("llama", {}),
    "llama3-rope-scaling": (
        "llama",
        {
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        },
    ),
    "llama-tied-biases": ("llama", {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True}),
    "qwen2-biases": ("qwen2", {}),
    "mistral": ("mistral", {}),
}


def reference_outputs(folder, ids):
    ref = load_reference(folder)
    with torch.no_grad():
        out = ref(torch.tensor(ids[None]), output_attentions=True, output_hidden_states=True)
    return out


def relative_error(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_attention_hidden_states_match_transformers(checkpoint_dir, name):
    kind, overrides = FAMILIES[name]
    folder = checkpoint_dir(kind, **overrides)
    model = load_model(folder)
    if "rope_scaling" in overrides:  # the scaled frequencies must really be in use on our side
        assert dict(model.arch.rope_scaling)["rope_type"] == "llama3"
        assert not np.allclose(model.arch.inv_freq(), 1.0 / 5000.0 ** (np.arange(0, 16, 2) / 16))
    ids = np.array([0, *model.tokenizer.encode(TEXT)[:47]])
    ref = reference_outputs(folder, ids)
    out = model.decoder.forward(ids, model.decoder.new_cache(), details=True)

    assert relative_error(out.logits, ref.logits[0].numpy()) <= 1e-4
    layers = model.arch.num_layers
    for layer in range(layers):
        np.testing.assert_allclose(out.attention[layer], ref.attentions[layer][0].numpy(), atol=1e-5)
        np.testing.assert_allclose(out.hidden_states[layer], ref.hidden_states[layer][0].numpy(), rtol=1e-4, atol=1e-4)
    # transformers' last hidden state is taken after the final norm.
    np.testing.assert_allclose(out.final_hidden, ref.hidden_states[layers][0].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa-untied", "qwen2-biases"])
def test_cached_decoding_equals_uncached(checkpoint_dir, name):
    kind, overrides = FAMILIES[name]
    model = load_model(checkpoint_dir(kind, **overrides))
    ids = np.array([0, *model.tokenizer.encode(TEXT)[:40]])
    whole = model.decoder.forward(ids, model.decoder.new_cache())
    cache = model.decoder.new_cache()
    steps = [model.decoder.forward(ids[i : i + 1], cache) for i in range(len(ids))]
    chunks_cache = model.decoder.new_cache()
    chunks = [model.decoder.forward(ids[i : i + 7], chunks_cache) for i in range(0, len(ids), 7)]
    for parts in (steps, chunks):
        np.testing.assert_allclose(np.concatenate([p.logits for p in parts]), whole.logits, rtol=1e-4, atol=1e-4)
        for field in ("head_entropy", "head_distance", "head_focus"):
            np.testing.assert_allclose(np.concatenate([getattr(p, field) for p in parts], axis=2), getattr(whole, field), atol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa-untied", "qwen2-biases"])
def test_frame_entropy_and_logprob_match_transformers(checkpoint_dir, name):
    kind, overrides = FAMILIES[name]
    folder = checkpoint_dir(kind, **overrides)
    model = load_model(folder)
    frames = list(Engine(model).read(TEXT[:120]))
    ids = np.array([0, *[f.token_id for f in frames]])
    logits = reference_outputs(folder, ids[:-1]).logits[0].double()
    logp = torch.log_softmax(logits, -1).numpy()
    for i, frame in enumerate(frames):
        assert abs(frame.logprob - logp[i, frame.token_id]) <= 1e-4
        assert abs(frame.entropy - float(-(np.exp(logp[i]) * logp[i]).sum())) <= 1e-4
        assert frame.rank == int((logp[i] > logp[i, frame.token_id]).sum()) + 1


def _rewrite(src, dst, rename):
    """Copy a checkpoint folder with its weight keys renamed."""
    from safetensors.numpy import save_file

    dst.mkdir()
    f = SafetensorsFile(src / "model.safetensors")
    save_file({rename(k): f.float32(k) for k in f.keys()}, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())
    (dst / "tokenizer.json").write_text((src / "tokenizer.json").read_text())
    return dst


def test_gpt2_hub_key_layout(checkpoint_dir, tmp_path):
    """The hub's original GPT-2 files have no 'transformer.' prefix."""
    src = checkpoint_dir("gpt2")
    dst = _rewrite(src, tmp_path / "hub", rename=lambda k: k.removeprefix("transformer."))
    ids = np.array([0, 5, 17, 99, 3])
    a = load_model(src).decoder.forward(ids, load_model(src).decoder.new_cache()).logits
    m = load_model(dst)
    np.testing.assert_array_equal(m.decoder.forward(ids, m.decoder.new_cache()).logits, a)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights(checkpoint_dir, tmp_path, dtype):
    """float16 / bfloat16 files load and agree with transformers on the same rounded weights."""
    src = checkpoint_dir("llama")
    ref = load_reference(src).to(getattr(torch, dtype))
    ref.save_pretrained(tmp_path / dtype, safe_serialization=True)
    (tmp_path / dtype / "tokenizer.json").write_text((src / "tokenizer.json").read_text())
    assert {SafetensorsFile(tmp_path / dtype / "model.safetensors").dtype_name(k) for k in ["lm_head.weight"]} == {
        {"float16": "F16", "bfloat16": "BF16"}[dtype]
    }
    model = load_model(tmp_path / dtype)
    ids = np.array([0, 5, 17, 99, 3, 42, 7])
    ours = model.decoder.forward(ids, model.decoder.new_cache()).logits
    theirs = load_reference(tmp_path / dtype)(torch.tensor(ids[None])).logits[0].detach().numpy()
    assert relative_error(ours, theirs) <= 1e-4


def test_sharded_checkpoint(checkpoint_dir, tmp_path):
    src = checkpoint_dir("llama")
    ref = load_reference(src)
    ref.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="60KB")
    (tmp_path / "sharded" / "tokenizer.json").write_text((src / "tokenizer.json").read_text())
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    ids = np.array([0, 5, 17, 99, 3])
    a, b = load_model(src), load_model(tmp_path / "sharded")
    np.testing.assert_array_equal(
        a.decoder.forward(ids, a.decoder.new_cache()).logits, b.decoder.forward(ids, b.decoder.new_cache()).logits
    )


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_weights_converted_block_by_block_equal_whole(checkpoint_dir, tmp_path, monkeypatch, kind, dtype):
    """Heads and fused matrices are transposed a block of rows at a time (so that a large
    tensor is never held twice); tiny blocks must give exactly the weights one block gives."""
    from sonify.model import checkpoint

    folder = checkpoint_dir(kind)
    if dtype != "float32":
        load_reference(folder).to(getattr(torch, dtype)).save_pretrained(tmp_path / dtype, safe_serialization=True)
        (tmp_path / dtype / "tokenizer.json").write_text((folder / "tokenizer.json").read_text())
        folder = tmp_path / dtype
    ids = np.array([0, 5, 17, 99, 3])
    whole = load_model(folder)
    monkeypatch.setattr(checkpoint, "TRANSPOSE_BLOCK_BYTES", 1)  # one row per block
    blocks = load_model(folder)
    np.testing.assert_array_equal(blocks.decoder.weights.lm_head, whole.decoder.weights.lm_head)
    for a, b in zip(blocks.decoder.weights.layers, whole.decoder.weights.layers):
        np.testing.assert_array_equal(a.qkv, b.qkv)
        np.testing.assert_array_equal(a.up, b.up)
    np.testing.assert_array_equal(
        blocks.decoder.forward(ids, blocks.decoder.new_cache()).logits, whole.decoder.forward(ids, whole.decoder.new_cache()).logits
    )


# Large enough that a decoding step splits its products between two threads (see
# sonify/model/backends/split.py): the query/key/value matrix over its inputs, the MLP
# over its inner units, the output head over its outputs. The wider llama's weights are
# drawn narrower, so that its activations have the small checkpoints' scale (and the same
# tolerances mean the same).
SPLIT_FAMILIES = {
    "gpt2-split": ("gpt2", {"n_inner": 8192, "vocab_size": 16384}),
    "llama-split": (
        "llama",
        {
            "hidden_size": 768,
            "intermediate_size": 512,
            "num_hidden_layers": 2,
            "num_attention_heads": 12,
            "num_key_value_heads": 12,
            "vocab_size": 1280,
            "attention_bias": True,
            "mlp_bias": True,
            "initializer_range": 0.045,
        },
    ),
}


@pytest.mark.parametrize("name", SPLIT_FAMILIES)
def test_split_decoding_steps_match_transformers_with_the_same_bytes_at_any_thread_count(checkpoint_dir, name):
    from threadpoolctl import threadpool_info, threadpool_limits

    kind, overrides = SPLIT_FAMILIES[name]
    folder = checkpoint_dir(kind, **overrides)
    model = load_model(folder)
    decoder = model.decoder
    assert len(decoder._head_blocks.parts) == 2
    assert all(len(parts) == 2 for parts in decoder._mlp_parts)
    if kind == "llama":
        assert all(len(layer["qkv"].parts) == 2 and layer["qkv"].by_inputs for layer in decoder._blocks)
    ids = np.array([0, *model.tokenizer.encode(TEXT)[:15]])
    ref = reference_outputs(folder, ids)
    runs = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            if threads > 1 and max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas") < 2:
                pytest.skip("BLAS runs one thread here")
            cache = decoder.new_cache()
            runs.append([decoder.forward(ids[i : i + 1], cache, details=True) for i in range(len(ids))])
    one, two = runs
    for a, b in zip(one, two):
        for field in ("logits", "final_hidden", "head_entropy", "head_distance", "head_focus", "layer_norm", "layer_update"):
            assert getattr(a, field).tobytes() == getattr(b, field).tobytes(), field
    logits = np.concatenate([o.logits for o in two])
    assert relative_error(logits, ref.logits[0].numpy()) <= 1e-4
    # The prompt's path reads the split MLP's up matrix in its parts' column order.
    prompt = decoder.forward(ids, decoder.new_cache())
    assert relative_error(prompt.logits, ref.logits[0].numpy()) <= 1e-4
    for layer in range(model.arch.num_layers):
        hidden = np.concatenate([o.hidden_states[layer] for o in two])
        np.testing.assert_allclose(hidden, ref.hidden_states[layer][0].numpy(), rtol=1e-4, atol=1e-4)
        last = two[-1].attention[layer][:, 0]
        np.testing.assert_allclose(last, ref.attentions[layer][0][:, -1].numpy(), atol=1e-5)
