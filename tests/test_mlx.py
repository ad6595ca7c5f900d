"""The MLX backend equals the NumPy backend; MLX-quantized checkpoints run in both."""

import json
import os
import sys

import numpy as np
import pytest
from checkpoints import TEXT

from sonify import Engine, SamplerSettings, SonifyError, load_model
from sonify.model.backends import mlx_available, resolve_backend

if not mlx_available():
    if os.environ.get("CI") == "true":
        pytest.fail("mlx is not installed; CI installs it with the test extra", pytrace=False)
    pytest.skip("mlx is not installed (pip install 'mlx[cpu]')", allow_module_level=True)

import mlx.core as mx  # noqa: E402

FAMILIES = {
    "gpt2": ("gpt2", {}),
    "llama-gqa-untied": ("llama", {}),
    "qwen2-biases": ("qwen2", {}),
    "llama-tied": ("llama", {"tie_word_embeddings": True}),
}


def assert_frames_agree(a, b):
    assert [f.token_id for f in a] == [f.token_id for f in b]
    assert "".join(f.text for f in a) == "".join(f.text for f in b)
    for x, y in zip(a, b):
        assert abs(x.logprob - y.logprob) <= 1e-4 and abs(x.entropy - y.entropy) <= 1e-4 and x.rank == y.rank
        for field in ("entropy", "focus", "head_entropy", "head_focus"):
            np.testing.assert_allclose(getattr(x.attention, field), getattr(y.attention, field), atol=1e-4)
        np.testing.assert_allclose(x.attention.head_distance, y.attention.head_distance, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(x.layers.norm, y.layers.norm, rtol=1e-4)


def check_parity(folder):
    numpy_model, mlx_model = load_model(folder, backend="numpy"), load_model(folder, backend="mlx")
    assert mlx_model.backend == "mlx"
    ids = np.array([numpy_model.start_token(), *numpy_model.tokenizer.encode(TEXT)[:40]])
    a = numpy_model.decoder.forward(ids, numpy_model.decoder.new_cache())
    b = mlx_model.decoder.forward(ids, mlx_model.decoder.new_cache())
    assert np.abs(a.logits - b.logits).max() / np.abs(a.logits).max() <= 1e-3
    assert_frames_agree(list(Engine(numpy_model).read(TEXT)), list(Engine(mlx_model).read(TEXT)))
    greedy = SamplerSettings(temperature=0)
    gen = [list(Engine(m).generate("Shall I", max_tokens=30, sampler=greedy, stop_at_eos=False)) for m in (numpy_model, mlx_model)]
    assert_frames_agree(*gen)


@pytest.mark.parametrize("name", FAMILIES)
def test_mlx_equals_numpy(checkpoint_dir, name):
    kind, overrides = FAMILIES[name]
    check_parity(checkpoint_dir(kind, **overrides))


def test_mlx_equals_numpy_on_the_default_model():
    check_parity(None)


def test_mlx_cached_decoding_and_sliding_window(checkpoint_dir):
    folder = checkpoint_dir("llama")
    a, b = load_model(folder, backend="numpy", window=16), load_model(folder, backend="mlx", window=16)
    settings = SamplerSettings(temperature=1.0)
    gen = [list(Engine(m).generate("Shall I", max_tokens=50, sampler=settings, seed=2, stop_at_eos=False)) for m in (a, b)]
    assert_frames_agree(*gen)


@pytest.fixture(scope="module")
def quantized(checkpoint_dir, tmp_path_factory):
    """A 4-bit checkpoint written by mlx-lm's own converter (MLX's quantize), offline."""
    from mlx_lm import convert

    folder = tmp_path_factory.mktemp("quantized") / "llama-4bit"
    convert(str(checkpoint_dir("llama")), str(folder), quantize=True, q_group_size=32, q_bits=4)
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"] == {"group_size": 32, "bits": 4, "mode": "affine"}
    # mlx-lm reads only a top-level rope_theta; give it the same value we read from rope_parameters.
    config["rope_theta"] = config["rope_parameters"]["rope_theta"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_quantized_checkpoint_runs_in_both_backends(quantized, checkpoint_dir):
    from sonify.model.quantized import QuantizedLinear

    mlx_model, numpy_model = load_model(quantized, backend="mlx"), load_model(quantized, backend="numpy")
    assert isinstance(mlx_model.decoder.weights.layers[0].qkv, QuantizedLinear)  # used natively
    assert isinstance(numpy_model.decoder.weights.layers[0].qkv, np.ndarray)  # dequantized at load
    check_parity(quantized)
    ids = np.array([0, 5, 17, 99, 3, 42, 7])
    ours = numpy_model.decoder.forward(ids, numpy_model.decoder.new_cache()).logits
    full = load_model(checkpoint_dir("llama"))
    unquantized = full.decoder.forward(ids, full.decoder.new_cache()).logits
    assert np.abs(ours - unquantized).max() > 1e-2  # really 4-bit, not a copy of the float weights


def test_quantized_logits_match_mlx_lm(quantized):
    import mlx_lm

    reference, _ = mlx_lm.load(str(quantized))
    ids = np.array([0, 5, 17, 99, 3, 42, 7])
    theirs = np.array(reference(mx.array(ids[None]))[0])
    for backend in ("numpy", "mlx"):
        model = load_model(quantized, backend=backend)
        ours = model.decoder.forward(ids, model.decoder.new_cache()).logits
        assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-4


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_numpy_dequantize_matches_mlx(bits):
    from sonify.model.quantized import QuantizedLinear

    w = mx.array(np.random.default_rng(bits).standard_normal((12, 128)).astype(np.float32))
    packed, scales, biases = mx.quantize(w, group_size=64, bits=bits)
    ours = QuantizedLinear(np.array(packed), np.array(scales), np.array(biases), 64, bits).dequantize()
    np.testing.assert_allclose(ours, np.array(mx.dequantize(packed, scales, biases, group_size=64, bits=bits)), atol=1e-6)


def test_backend_choice(monkeypatch):
    assert resolve_backend("auto") == ("mlx" if sys.platform == "darwin" else "numpy")
    assert resolve_backend("mlx") == "mlx"
    monkeypatch.setitem(sys.modules, "mlx", None)  # as if mlx were not installed
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    with pytest.raises(SonifyError, match=r"needs the mlx package; install it with: pip install"):
        resolve_backend("mlx")
    assert resolve_backend("auto") == "numpy"
