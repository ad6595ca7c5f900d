"""The model that ships inside the package: loads by default, meets its loss, and
transformers reads the same folder as-is."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sonify import Engine, SamplerSettings, load_model
from sonify.model.checkpoint import DEFAULT_MODEL_DIR
from sonify.model.evaluation import text_nats
from sonify.model.safetensors_io import SafetensorsFile
from sonify.model.train import CORPUS_FILES, split_text

CORPUS = Path(os.environ.get("SONIFY_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
PASSAGE = "From fairest creatures we desire increase,\nThat thereby beauty's rose might never die,\n"


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def corpus():
    if not all((CORPUS / name).is_file() for name in CORPUS_FILES):
        if os.environ.get("CI") == "true":
            pytest.fail(f"the training corpus is missing at {CORPUS} (set SONIFY_CORPUS)")
        pytest.skip(f"training corpus not found at {CORPUS}")
    return {name: (CORPUS / name).read_text(encoding="utf-8") for name in CORPUS_FILES}


def test_loads_when_no_model_is_named(model):
    assert model.name == "sonify-default" and model.folder == DEFAULT_MODEL_DIR
    assert model.arch.family == "llama" and model.backend == "numpy"
    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.stat().st_size <= 30 * 1000 * 1000
    f = SafetensorsFile(weights)
    assert {f.dtype_name(k) for k in f.keys()} == {"F16"}


def test_held_out_loss_is_at_most_1_50_nats_per_char(model, corpus):
    """Re-evaluates the shipped weights with our engine on the held-out last 10 % of each file."""
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    nats, chars = 0.0, 0
    for name, text in corpus.items():
        _, held_out = split_text(text)
        file_nats = text_nats(model, held_out)
        assert abs(file_nats / len(held_out) - card["val_nats_per_char_by_file"][name]) < 2e-3
        nats, chars = nats + file_nats, chars + len(held_out)
    assert nats / chars <= 1.50
    assert abs(nats / chars - card["val_nats_per_char"]) < 2e-3


def test_model_card_names_the_corpus(corpus):
    import hashlib

    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    for name, text in corpus.items():
        assert card["corpus"][name]["md5"] == hashlib.md5(text.encode("utf-8")).hexdigest()
    for key in ("architecture", "parameters", "steps", "wall_time_s", "val_nats_per_char", "sample"):
        assert key in card
    assert (DEFAULT_MODEL_DIR / "README.md").read_text().startswith("# sonify default model")


def test_transformers_loads_the_folder_as_is_and_agrees(model):
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    assert isinstance(tokenizer, tf.PreTrainedTokenizerFast)
    ids = tokenizer(PASSAGE, add_special_tokens=False)["input_ids"]
    assert ids == model.tokenizer.encode(PASSAGE)
    reference = tf.AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_DIR, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reference(torch.tensor([[model.start_token(), *ids[:-1]]])).logits[0].double()
    theirs = torch.log_softmax(logits, -1).numpy()[np.arange(len(ids)), ids]
    ours = np.array([f.logprob for f in Engine(model).read(PASSAGE)])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_a_sample_reads_as_english_verse(model, corpus):
    """At the default temperature most words of a sample are words of the corpus, in lines."""
    words = set(re.findall(r"[a-z]+", " ".join(corpus.values()).lower()))
    frames = list(Engine(model).generate("", max_tokens=300, sampler=SamplerSettings(), seed=0))
    text = "".join(f.text for f in frames)
    sample = re.findall(r"[a-z]+", text.lower())
    assert len(sample) > 100
    assert np.mean([w in words for w in sample]) >= 0.9
    assert text.count("\n") >= 5
