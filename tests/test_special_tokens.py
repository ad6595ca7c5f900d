"""Start and end-of-text tokens found where transformers finds them: config.json, else
generation_config.json, else the tokenizer's named special tokens; no BOS where the family
reads without one; no end token known: generation runs to the requested length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sonify import SonifyError, load_model
from sonify.model.engine import Engine
from sonify.model.sampling import SamplerSettings


def variant(source: Path, target: Path, config_drop=(), files: dict | None = None, remove=()) -> Path:
    """A copy of a built checkpoint with config keys dropped and side files written or removed."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in config_drop}))
    for name in remove:
        (target / name).unlink(missing_ok=True)
    for name, content in (files or {}).items():
        (target / name).write_text(json.dumps(content))
    return target


def test_ids_from_generation_config(checkpoint_dir, tmp_path):
    folder = variant(checkpoint_dir("llama"), tmp_path / "m", config_drop=("bos_token_id", "eos_token_id"),
                     files={"generation_config.json": {"bos_token_id": 0, "eos_token_id": [0, 1]}})  # fmt: skip
    model = load_model(folder)
    assert model.arch.bos_token_id == 0 and model.arch.eos_token_ids == (0, 1) and model.start_token() == 0


def test_ids_from_the_tokenizer_config(checkpoint_dir, tmp_path):
    folder = variant(checkpoint_dir("llama"), tmp_path / "m", config_drop=("bos_token_id", "eos_token_id"),
                     remove=("generation_config.json",),
                     files={"tokenizer_config.json": {"eos_token": {"content": "<|endoftext|>"}, "add_bos_token": False}})  # fmt: skip
    model = load_model(folder)
    assert model.arch.bos_token_id is None and model.arch.eos_token_ids == (0,)
    assert model.uses_bos is False and model.start_token() == 0


def test_qwen2_reads_without_bos(checkpoint_dir, tmp_path):
    """Qwen2 texts begin at the end-of-text boundary, not at a BOS the tokenizer never adds."""
    folder = variant(checkpoint_dir("qwen2"), tmp_path / "q", config_drop=("bos_token_id",), remove=("generation_config.json",),
                     files={"tokenizer_config.json": {"bos_token": None, "eos_token": "<|endoftext|>"}})  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "eos_token_id": 1}))
    model = load_model(folder)
    assert model.uses_bos is False and model.arch.bos_token_id is None and model.start_token() == 1


def test_no_end_token_generates_the_requested_length(checkpoint_dir, tmp_path):
    folder = variant(checkpoint_dir("llama"), tmp_path / "m", config_drop=("bos_token_id", "eos_token_id"),
                     remove=("generation_config.json", "tokenizer_config.json"))  # fmt: skip
    model = load_model(folder)
    assert model.arch.eos_token_ids == () and model.start_token() == 0  # <|endoftext|> from tokenizer.json
    frames = list(Engine(model).generate("Shall I", 40, SamplerSettings(temperature=1.0), seed=1, include_prompt=False))
    assert len(frames) == 40


def test_no_start_token_anywhere_is_one_clear_line(checkpoint_dir, tmp_path):
    folder = variant(checkpoint_dir("llama"), tmp_path / "m", config_drop=("bos_token_id", "eos_token_id"),
                     remove=("generation_config.json", "tokenizer_config.json"))  # fmt: skip
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    for token in tokenizer["added_tokens"]:
        token["content"] = "<|odd|>"
    tokenizer["model"]["vocab"] = {("<|odd|>" if k == "<|endoftext|>" else k): v for k, v in tokenizer["model"]["vocab"].items()}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    model = load_model(folder)
    with pytest.raises(SonifyError, match="no start or end-of-text token is known"):
        model.start_token()
