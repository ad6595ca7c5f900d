"""Find a checkpoint folder in Hugging Face layout and read its files.

A folder holds ``config.json``, ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``) and ``tokenizer.json``. A Hugging Face cache
(``models--org--name/snapshots/<rev>/``) is searched too, so ``~/.cache/huggingface``
or a model id such as ``HuggingFaceTB/SmolLM-135M`` found in it works as well.
Weights are only ever read from safetensors: pickled files are refused.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from .quantized import QuantizedLinear, module_settings
from .safetensors_io import SafetensorsFile


def _shipped_model_dir() -> Path:
    """The shipped model's folder, package data found as the presets are. A folder on disk:
    its weights are read from their files (pip installs a package as files, never as a zip)."""
    folder = importlib.resources.files(__package__) / "default_model"
    return folder if isinstance(folder, Path) else Path(str(folder))


DEFAULT_MODEL_DIR = _shipped_model_dir()
TRANSPOSE_BLOCK_BYTES = 8 << 20  # rows converted at a time by CheckpointTensors.transposed
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_CONVERT_HINT = (
    'convert it once with: python -c "from transformers import AutoModelForCausalLM as M; '
    "M.from_pretrained('{d}').save_pretrained('{d}', safe_serialization=True)\""
)


def hf_cache_dirs() -> list[Path]:
    """Where a Hugging Face hub cache may live on this machine."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def _snapshot_of(repo_dir: Path) -> Path | None:
    """The snapshot of a ``models--org--name`` folder: the one ``refs/main`` names, else the newest."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if (candidate / "config.json").is_file():
            return candidate
    found = [s for s in snapshots.glob("*") if (s / "config.json").is_file()]
    return max(found, key=lambda s: s.stat().st_mtime) if found else None


def _cached_models(root: Path) -> Iterator[Path]:
    for base in (root, root / "hub"):
        for repo_dir in sorted(base.glob("models--*")):
            snap = _snapshot_of(repo_dir)
            if snap is not None:
                yield snap


def resolve_model_dir(spec: str | os.PathLike | None) -> Path:
    """Turn what the user named (a folder, a cache, a hub id, or nothing) into a checkpoint folder."""
    if spec is None:
        return DEFAULT_MODEL_DIR
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        if path.name.startswith("models--") and (snap := _snapshot_of(path)):
            return snap
        found = list(_cached_models(path))
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(str(f) for f in found[:5])
            raise SonifyError(f"{path} holds {len(found)} models ({names}{', ...' if len(found) > 5 else ''}); name one of them")
        raise SonifyError(f"{path} holds no config.json; point at a checkpoint folder in Hugging Face layout")
    if not path.exists() and str(spec).count("/") == 1 and not str(spec).startswith(("/", ".", "~")):
        repo = "models--" + str(spec).replace("/", "--")
        for cache in hf_cache_dirs():
            if (cache / repo).is_dir() and (snap := _snapshot_of(cache / repo)):
                return snap
        raise SonifyError(
            f"model {spec} is not in the local Hugging Face cache ({hf_cache_dirs()[-1]}); sonify never downloads: pass a local folder"
        )
    raise SonifyError(f"model folder {path} does not exist")


def list_local_models() -> list[tuple[str, Path]]:
    """The default model and every model found in the local Hugging Face caches."""
    models = [("default", DEFAULT_MODEL_DIR)]
    seen = set()
    for cache in hf_cache_dirs():
        for snap in _cached_models(cache) if cache.is_dir() else ():
            name = snap.parent.parent.name.removeprefix("models--").replace("--", "/")
            if name not in seen:
                seen.add(name)
                models.append((name, snap))
    return models


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SonifyError(f"{path} is missing; a checkpoint folder needs config.json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SonifyError(f"{path} is not valid JSON ({exc}); re-download or fix it") from None
    if not isinstance(config, dict):
        raise SonifyError(f"{path} does not hold a JSON object; re-download or fix it")
    return config


@dataclass
class CheckpointTensors:
    """Every tensor of a checkpoint, across shards, read lazily by name.

    MLX-quantized weights are dequantized by :meth:`get`; with ``keep_quantized`` (a
    backend that computes on them natively), :meth:`linear` and :meth:`embedding` return
    them as :class:`QuantizedLinear` instead.
    """

    folder: Path
    files: list[SafetensorsFile]
    quantization: dict | None = None
    keep_quantized: bool = False
    _where: dict[str, SafetensorsFile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in self.files:
            for name in f.keys():
                self._where[name] = f

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def keys(self) -> list[str]:
        return list(self._where)

    def is_quantized(self, name: str) -> bool:
        return name.endswith(".weight") and name.removesuffix(".weight") + ".scales" in self._where

    def quantized(self, name: str) -> QuantizedLinear:
        module = name.removesuffix(".weight")
        if self.quantization is None:
            raise SonifyError(f"{self.folder}: {module} is quantized but config.json has no 'quantization' block")
        group_size, bits = module_settings(self.quantization, module)
        return QuantizedLinear(
            self.raw(name).view(np.uint32), self.get(module + ".scales"), self.get(module + ".biases"), group_size, bits
        )

    def linear(self, name: str, contiguous: bool = False) -> np.ndarray | QuantizedLinear:
        """A linear layer's (out, in) weight: dense as (in, out) float32, a transposed view
        of the stored order or, with ``contiguous``, C-contiguous (see :meth:`transposed`);
        or kept quantized."""
        if self.is_quantized(name) and self.keep_quantized:
            return self.quantized(name)
        return self.transposed(name) if contiguous else self.get(name).T

    def transposed(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """A 2-D tensor's transpose as float32: a new C-contiguous array, or written into
        ``out`` (e.g. a column block of a fused matrix).

        Read a block of rows at a time, so that converting never holds a second full copy
        of a large tensor (an output head is 100-500 MB)."""
        if self.is_quantized(name):
            dense = self.quantized(name).dequantize().T
            if out is None:
                return np.ascontiguousarray(dense)
            out[...] = dense
            return out
        f = self._file(name)
        rows, cols = f.shape(name)
        if out is None:
            out = np.empty((cols, rows), dtype=np.float32)
        step = max(1, TRANSPOSE_BLOCK_BYTES // max(1, 4 * cols))
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            out[:, start:stop] = f.float32(name, (start, stop)).T
        return out

    def embedding(self, name: str) -> np.ndarray | QuantizedLinear:
        """An embedding table (vocab, hidden): dense float32, or kept quantized."""
        if self.is_quantized(name) and self.keep_quantized:
            return self.quantized(name)
        return self.get(name)

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32 (dequantized if stored quantized); a clear error when missing."""
        if self.is_quantized(name):
            return self.quantized(name).dequantize()
        return self._file(name).float32(name)

    def raw(self, name: str) -> np.ndarray:
        return self._file(name).raw(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape a tensor is stored with."""
        return self._file(name).shape(name)

    def _file(self, name: str) -> SafetensorsFile:
        if name not in self._where:
            raise SonifyError(f"{self.folder}: weight {name!r} is missing from the safetensors files; the checkpoint is incomplete")
        return self._where[name]

    def digest(self) -> str:
        """A SHA-256 over the weight files, the identity of this checkpoint's weights."""
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.path.name):
            with open(f.path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
        return h.hexdigest()


def open_tensors(folder: Path, quantization: dict | None = None, keep_quantized: bool = False) -> CheckpointTensors:
    """Open the checkpoint's safetensors files (single, sharded by index, or several)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SonifyError(f"{index} is not a valid shard index ({exc}); re-download it") from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise SonifyError(f"{folder}: shard {missing[0]} named in {index.name} is missing; re-download it")
        paths = [folder / n for n in names]
    elif (folder / "model.safetensors").is_file():
        paths = [folder / "model.safetensors"]
    else:
        paths = sorted(folder.glob("*.safetensors"))
    if not paths:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickled:
            raise SonifyError(
                f"{folder} holds only pickled weights ({pickled[0]}), which sonify never loads for safety; "
                + _CONVERT_HINT.format(d=folder)
            )
        raise SonifyError(f"{folder} holds no model.safetensors; a checkpoint folder needs its weights in safetensors format")
    return CheckpointTensors(folder, [SafetensorsFile(p) for p in paths], quantization, keep_quantized)
