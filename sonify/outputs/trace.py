"""The Trace file: JSON Lines, a header line then one Frame per line.

The header names the model (and a SHA-256 of its weights), the backend, the sampler
settings, the seed and the prompt or text, so a trace says exactly how it was made.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SonifyError
from ..model.frame import Frame
from .files import OutputSet, atomic_write

FORMAT = "sonify-trace"
VERSION = 1


@dataclass
class Trace:
    """A header and the frames of one run."""

    header: dict[str, Any]
    frames: list[Frame] = field(default_factory=list)

    def write(self, path: str | os.PathLike, outputs: OutputSet | None = None) -> Path:
        """Write the trace atomically (with ``outputs``: staged there, to appear with the set); returns the path."""
        path = Path(path)
        with atomic_write(path) if outputs is None else outputs.open(path) as f:
            f.write(json.dumps({"format": FORMAT, "version": VERSION, **self.header}, ensure_ascii=False) + "\n")
            for frame in self.frames:
                f.write(json.dumps(frame.to_dict(), ensure_ascii=False) + "\n")
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> Trace:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise SonifyError(f"trace file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SonifyError(f"cannot read trace file {path} ({exc})") from None
        if not lines:
            raise SonifyError(f"{path} is empty, not a sonify trace")
        try:
            header = json.loads(lines[0])
        except (ValueError, RecursionError):
            raise SonifyError(f"{path}:1 is not JSON; is this a sonify trace (.jsonl)?") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SonifyError(f'{path} is not a sonify trace (its first line has no "format": "{FORMAT}")')
        if header.get("version") != VERSION:
            raise SonifyError(f"{path} is trace version {header.get('version')}; this sonify reads version {VERSION}")
        header = {k: v for k, v in header.items() if k not in ("format", "version")}
        frames = []
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                frames.append(Frame.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
                detail = "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {exc}"
                raise SonifyError(f"{path}:{number} is not a valid frame ({detail})") from None
        return cls(header, frames)

    def text(self) -> str:
        return "".join(f.text for f in self.frames)


def trace_name(path: str | os.PathLike) -> str:
    """``renders/the-sea.trace.jsonl`` → ``the-sea``: the name a re-render's files take."""
    return Path(path).name.removesuffix(".jsonl").removesuffix(".trace")
