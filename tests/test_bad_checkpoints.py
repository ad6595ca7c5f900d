"""Every broken checkpoint gives one clear line naming the file and the fix."""

import json
import shutil

import pytest

from sonify import SonifyError, load_model
from sonify.model.checkpoint import resolve_model_dir


@pytest.fixture
def good(checkpoint_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(checkpoint_dir("llama"), folder)
    return folder


def error_of(folder) -> str:
    with pytest.raises(SonifyError) as info:
        load_model(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope")


def test_missing_config(good):
    (good / "config.json").unlink()
    assert "holds no config.json" in error_of(good)


def test_corrupt_config(good):
    (good / "config.json").write_text("{not json")
    message = error_of(good)
    assert "config.json is not valid JSON" in message


def test_unsupported_model_type_names_the_supported_ones(good):
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    message = error_of(good)
    assert "'bert' is not supported" in message and "gpt2, llama, mistral, qwen2" in message


def test_missing_config_key(good):
    config = json.loads((good / "config.json").read_text())
    del config["hidden_size"]
    (good / "config.json").write_text(json.dumps(config))
    assert "no 'hidden_size'" in error_of(good)


def test_pickle_only_weights_are_refused_with_the_conversion(good):
    (good / "model.safetensors").unlink()
    (good / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    message = error_of(good)
    assert "never loads" in message and "save_pretrained" in message and "safe_serialization=True" in message


def test_missing_weights(good):
    (good / "model.safetensors").unlink()
    assert "no model.safetensors" in error_of(good)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "short"])
def test_corrupt_safetensors(good, damage):
    path = good / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 64, "short": b"\x01"}[damage])
    message = error_of(good)
    assert "model.safetensors" in message and ("re-download" in message or "re-export" in message)


def test_weights_that_do_not_match_the_config(good):
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "intermediate_size": 50}))
    assert "config and weights do not match" in error_of(good)


def test_missing_tensor(good, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(good / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(good / "model.safetensors"))
    assert "'model.layers.1.mlp.up_proj.weight' is missing" in error_of(good)


def test_missing_or_corrupt_tokenizer(good):
    (good / "tokenizer.json").write_text("{}")
    assert "tokenizer.json could not be read" in error_of(good)
    (good / "tokenizer.json").unlink()
    assert "tokenizer.json is missing" in error_of(good)


def test_hugging_face_cache_layout(good, tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    snap = cache / "models--org--tiny" / "snapshots" / "abc123"
    snap.parent.mkdir(parents=True)
    shutil.copytree(good, snap)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("abc123")
    assert resolve_model_dir(tmp_path / "hf") == snap  # the cache root
    assert resolve_model_dir(cache / "models--org--tiny") == snap
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert resolve_model_dir("org/tiny") == snap  # a hub id, found offline
    assert load_model("org/tiny").name == "org/tiny"
    with pytest.raises(SonifyError, match="not in the local Hugging Face cache"):
        resolve_model_dir("org/absent")


def test_settings_are_checked_before_the_weights_load(good):
    (good / "model.safetensors").write_bytes(b"\x00")  # would fail, but must not be reached
    with pytest.raises(SonifyError, match="window has to be at least 8 tokens, but is 4"):
        load_model(good, window=4)
    with pytest.raises(SonifyError, match="threads has to be >= 1, but is 0"):
        load_model(good, threads=0)
    with pytest.raises(SonifyError, match="backend 'cuda' is not available"):
        load_model(good, backend="cuda")


def test_tokenizer_larger_than_the_model(good):
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
    assert "tokenizer.json has 384 tokens but the model only 100" in error_of(good)
