"""Loading a checkpoint into a ready-to-run language model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SonifyError
from .backends import create_decoder, resolve_backend
from .checkpoint import DEFAULT_MODEL_DIR, CheckpointTensors, open_tensors, read_config, resolve_model_dir
from .families import Architecture, build_architecture, load_decoder_weights
from .quantized import quantization_settings
from .remote import RemoteSettings
from .tokenizer import TextTokenizer

DEFAULT_WINDOW = 2048
# Special tokens that begin or separate documents, tried when no file names one.
START_CANDIDATES = ("<|endoftext|>", "<s>", "<|begin_of_text|>", "</s>", "<|im_end|>")
# Families whose texts begin without a BOS token (their tokenizer adds none).
NO_BOS_FAMILIES = ("qwen2",)


def _json_object(path: Path) -> dict:
    """``path`` as a JSON object; {} when absent or unreadable (these files are optional)."""
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def special_tokens(folder: Path, arch: Architecture, tokenizer: TextTokenizer) -> tuple[Architecture, bool]:
    """``arch`` with its BOS and end-of-text ids completed as transformers finds them:
    config.json, else generation_config.json, else the tokenizer's named special tokens;
    and whether texts begin with BOS (tokenizer_config.json's add_bos_token, else the family)."""
    from dataclasses import replace

    generation = _json_object(folder / "generation_config.json")
    tokenizer_config = _json_object(folder / "tokenizer_config.json")

    def named(key: str) -> int | None:
        token = tokenizer_config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        return tokenizer.token_to_id(token) if isinstance(token, str) else None

    def valid(value) -> tuple[int, ...]:
        ids = value if isinstance(value, list) else [value]
        ok = all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < arch.vocab_size for i in ids)
        return tuple(ids) if value is not None and ok else ()

    bos = arch.bos_token_id
    if bos is None:
        found = valid(generation.get("bos_token_id")) or valid(named("bos_token"))
        bos = found[0] if found else None
    eos = arch.eos_token_ids or valid(generation.get("eos_token_id")) or valid(named("eos_token"))
    add_bos = tokenizer_config.get("add_bos_token")
    uses_bos = add_bos if isinstance(add_bos, bool) else arch.model_type not in NO_BOS_FAMILIES
    return replace(arch, bos_token_id=bos, eos_token_ids=tuple(eos)), uses_bos


@dataclass
class LanguageModel:
    """A checkpoint's architecture, tokenizer and a decoder on one backend."""

    name: str
    folder: Path
    config: dict
    arch: Architecture
    tokenizer: TextTokenizer
    decoder: object
    tensors: CheckpointTensors
    _digest: str | None = field(default=None, repr=False)

    @property
    def backend(self) -> str:
        return self.decoder.name

    @property
    def window(self) -> int:
        return self.decoder.window

    def weights_digest(self) -> str:
        """SHA-256 of the weight files (computed once, on first use)."""
        if self._digest is None:
            self._digest = self.tensors.digest()
        return self._digest

    uses_bos: bool = True

    def start_token(self) -> int:
        """The token every context begins with: BOS where the family starts a text with one,
        else the end-of-text token (the boundary before a new document, as Qwen2 reads)."""
        order = (self.arch.bos_token_id, *self.arch.eos_token_ids)
        if not self.uses_bos:
            order = (*self.arch.eos_token_ids, self.arch.bos_token_id)
        for token in order:
            if token is not None:
                return token
        for candidate in START_CANDIDATES:
            token = self.tokenizer.token_to_id(candidate)
            if token is not None:
                return token
        raise SonifyError(
            f"{self.folder}: no start or end-of-text token is known (config.json, generation_config.json and "
            "tokenizer_config.json name none); add bos_token_id to config.json"
        )


def _model_name(folder: Path) -> str:
    if folder.resolve() == DEFAULT_MODEL_DIR.resolve():
        return "sonify-default"
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    return folder.name


@dataclass(frozen=True)
class ModelSettings:
    """Which model runs and how: what the command line's model flags set.

    ``path`` is a checkpoint folder, a Hugging Face cache folder or a cached hub id
    (``None``: the shipped model); ``alternatives`` is how many likeliest tokens each
    Frame keeps beside the chosen one. ``server`` set: the model runs behind that inference
    server instead (``sources.open_stream`` reads it), and nothing is loaded here."""

    path: str | os.PathLike | None = None
    backend: str = "auto"
    window: int | None = None
    threads: int | None = None
    alternatives: int = 5
    server: RemoteSettings | None = None

    def load(self) -> LanguageModel:
        """The model these settings name, loaded."""
        if self.server is not None:
            raise SonifyError(f"the model runs behind {self.server.url}; it is not loaded in-process")
        return load_model(self.path, backend=self.backend, window=self.window, threads=self.threads)


def load_model(
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    window: int | None = None,
    threads: int | None = None,
) -> LanguageModel:
    """Load a checkpoint (``None``: the default model shipped with sonify).

    ``window`` caps the context the model sees (default: the model's own, at most
    2048 tokens); longer texts slide through it. ``threads`` limits BLAS threads (default:
    the library's count, and one thread for the NumPy backend's single-token steps).
    """
    if window is not None and window < 8:
        raise SonifyError(f"window has to be at least 8 tokens, but is {window}")
    if threads is not None and threads < 1:
        raise SonifyError(f"threads has to be >= 1, but is {threads}")
    backend = resolve_backend(backend)
    folder = resolve_model_dir(model)
    config = read_config(folder)
    arch = build_architecture(config, where=str(folder / "config.json"))
    tokenizer = TextTokenizer(folder)
    arch, uses_bos = special_tokens(folder, arch, tokenizer)
    if tokenizer.vocab_size > arch.vocab_size:
        raise SonifyError(
            f"{folder}: tokenizer.json has {tokenizer.vocab_size} tokens but the model only {arch.vocab_size}; they do not belong together"
        )
    # Everything cheap is checked; now the weights.
    tensors = open_tensors(folder, quantization_settings(config), keep_quantized=backend == "mlx")
    weights = load_decoder_weights(arch, tensors, config)
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    decoder = create_decoder(backend, arch, weights, min(arch.max_positions, window or DEFAULT_WINDOW), threads)
    return LanguageModel(_model_name(folder), folder, config, arch, tokenizer, decoder, tensors, uses_bos=uses_bos)
