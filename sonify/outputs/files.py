"""Output files: where they go, what they are called, and writing them so that a reader
never sees half of one."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import SonifyError


def slug(text: str, words: int = 5) -> str:
    """A file name from the start of ``text``: ``Shall I compare thee`` → ``shall-i-compare-thee``."""
    parts = re.findall(r"[^\W_]+", text.lower())[:words]
    return "-".join(parts) or "generated"


def prepare_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check it can be written, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SonifyError(f"output folder {folder} is a file; choose another --out") from None
    except OSError as exc:
        raise SonifyError(f"cannot create output folder {folder}: {exc.strerror}; choose another --out") from None
    if not folder.is_dir():
        raise SonifyError(f"output folder {folder} is not a folder; choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SonifyError(f"cannot write to {folder}: permission denied; choose another --out")
    return folder


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    On any exception, Ctrl-C included, the temporary file is removed and ``path`` keeps
    whatever it held before.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise SonifyError(f"cannot write {path}: {exc.strerror}; choose another output folder") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
