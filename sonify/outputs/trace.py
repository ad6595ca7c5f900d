"""The Trace file: JSON Lines, a header line then one Frame per line.

The header names the model (and a SHA-256 of its weights), the backend, the sampler
settings, the seed and the prompt or text, so a trace says exactly how it was made.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import SonifyError
from ..model.frame import Frame
from .files import OutputSet, atomic_write
from .trace_frames import Descriptor, TraceFrames

FORMAT = "sonify-trace"
VERSION = 1


@dataclass
class Trace:
    """A header and the frames of one run."""

    header: dict[str, Any]
    frames: Sequence[Frame] = field(default_factory=list)

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
        """The trace in ``path``, every line checked. From a regular file its frames are read
        again when used (``TraceFrames``), so a long trace does not sit in memory; from a
        pipe they are kept."""
        path = Path(path)
        try:
            file = Descriptor(path)
            with open(file.fd, "rb", closefd=False) as f:
                header, lines = _check_lines(path, f, keep=not file.seekable)
        except FileNotFoundError:
            raise SonifyError(f"trace file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SonifyError(f"cannot read trace file {path} ({exc})") from None
        if isinstance(lines, list):
            return cls(header, lines)
        return cls(header, TraceFrames(file, *lines))

    def text(self) -> str:
        return "".join(f.text for f in self.frames)


def _check_lines(path: Path, f: IO[bytes], keep: bool) -> tuple[dict[str, Any], list[Frame] | tuple[array, array]]:
    """Read the header of the open trace file ``f`` and check each frame's line; returns the
    header and the frames (``keep``) or where each frame's line starts and ends."""
    first = f.readline()
    if not first:
        raise SonifyError(f"{path} is empty, not a sonify trace")
    try:
        header = json.loads(first.decode("utf-8"))
    except (ValueError, RecursionError):
        raise SonifyError(f"{path}:1 is not JSON; is this a sonify trace (.jsonl)?") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SonifyError(f'{path} is not a sonify trace (its first line has no "format": "{FORMAT}")')
    if header.get("version") != VERSION:
        raise SonifyError(f"{path} is trace version {header.get('version')}; this sonify reads version {VERSION}")
    header = {k: v for k, v in header.items() if k not in ("format", "version")}
    frames: list[Frame] = []
    starts, ends = array("q"), array("q")
    at = len(first)
    for number, line in enumerate(f, start=2):
        start, at = at, at + len(line)
        text = line.decode("utf-8")
        if not text.strip():
            continue
        try:
            frame = Frame.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
            detail = "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {exc}"
            raise SonifyError(f"{path}:{number} is not a valid frame ({detail})") from None
        if keep:
            frames.append(frame)
        starts.append(start)
        ends.append(start + len(line.rstrip(b"\r\n")))
    return header, frames if keep else (starts, ends)


def trace_name(path: str | os.PathLike) -> str:
    """``renders/the-sea.trace.jsonl`` → ``the-sea``: the name a re-render's files take."""
    return Path(path).name.removesuffix(".jsonl").removesuffix(".trace")
