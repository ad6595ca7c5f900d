import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import checkpoints  # noqa: E402


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """A function building (once per session) a random checkpoint of a family, with options."""
    built: dict[tuple, Path] = {}

    def make(kind: str, **overrides) -> Path:
        key = (kind, tuple(sorted((k, repr(v)) for k, v in overrides.items())))
        if key not in built:
            folder = tmp_path_factory.mktemp(kind)
            built[key] = checkpoints.build(kind, folder, **overrides)
        return built[key]

    return make


@pytest.fixture(scope="session")
def tokenizer_model(checkpoint_dir):
    from sonify import load_model

    return load_model(checkpoint_dir("llama"))
